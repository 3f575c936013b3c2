"""The web client's files as the gateway serves them (gateway/webapp.py), without a server."""

from __future__ import annotations

import json
import re
from pathlib import Path

from gateway import headers, ratelimit, webapp
from web import ROOT


def test_bundle_holds_every_servable_file_with_its_type() -> None:
    bundle = webapp.load_bundle()
    assert bundle["index.html"].content_type == "text/html"
    assert bundle["js/client.js"].content_type == "text/javascript"
    assert bundle["vendor/h3-js/h3-js.es.js"].content_type == "text/javascript"
    assert bundle["manifest.webmanifest"].content_type == "application/manifest+json"
    assert not any(name.endswith(".py") for name in bundle)  # the package's own code is not served
    assert all(a.etag.startswith('"') and a.etag.endswith('"') for a in bundle.values())


def test_service_worker_version_is_the_digest_of_the_files(tmp_path: Path) -> None:
    (tmp_path / "sw.js").write_text('const VERSION = "__SHELL_VERSION__";')
    (tmp_path / "index.html").write_text("<p>one</p>")
    first = webapp.load_bundle(tmp_path)["sw.js"].body
    assert b"__SHELL_VERSION__" not in first
    (tmp_path / "index.html").write_text("<p>two</p>")
    assert webapp.load_bundle(tmp_path)["sw.js"].body != first  # any change: a new shell cache


def test_service_worker_caches_every_module_and_style() -> None:
    sw = (ROOT / "sw.js").read_text()
    shell = set(re.findall(r'"(/[^"]*)"', sw.split("const SHELL = [", 1)[1].split("];", 1)[0]))
    modules = {
        "/static/" + p.relative_to(ROOT).as_posix()
        for p in ROOT.rglob("*")
        if p.suffix in (".js", ".css") and p.name != "sw.js"
    }
    assert modules <= shell, f"missing from sw.js SHELL: {sorted(modules - shell)}"
    assert "/" in shell


def test_pages_have_no_inline_script_or_style() -> None:
    """The web routes' CSP allows only this origin's files: nothing inline would run."""
    for page in ROOT.rglob("*.html"):
        html = page.read_text()
        assert "<style" not in html and " style=" not in html, page
        for tag in re.findall(r"<script[^>]*>", html):
            assert " src=" in tag, (page, tag)
    for module in ROOT.rglob("*.js"):  # and no markup built from strings, no eval
        text = module.read_text()
        for word in (".innerHTML =", "insertAdjacentHTML", "eval(", "new Function("):
            assert word not in text, (module, word)


def test_web_routes_get_the_strict_policy_and_no_rate_limit() -> None:
    for path in ("/", "/static/js/client.js", "/sw.js", "/manifest.webmanifest"):
        assert headers.security_headers(path, False)["Content-Security-Policy"] == headers.WEB_CSP
        assert ratelimit.scope_of(path) is None
    assert "'unsafe-inline'" not in headers.WEB_CSP and "'unsafe-eval'" not in headers.WEB_CSP
    assert ratelimit.scope_of("/api/v1/me") == "rest"


def test_manifest_is_installable() -> None:
    manifest = json.loads((ROOT / "manifest.webmanifest").read_text())
    assert manifest["start_url"].startswith("/") and manifest["display"] == "standalone"
    sizes = {icon["sizes"] for icon in manifest["icons"]}
    assert {"192x192", "512x512"} <= sizes
    for icon in manifest["icons"]:
        assert (ROOT / icon["src"].removeprefix("/static/")).is_file()


def test_vendored_libraries_keep_their_licences() -> None:
    for lib in (ROOT / "vendor").iterdir():
        assert (lib / "LICENSE").is_file(), lib
