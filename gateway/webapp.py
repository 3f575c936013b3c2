"""The web client's files (the ``web`` package, docs/web.md), served by the gateway.

``/`` is the app's one page (views are hash routes), ``/sw.js`` the service worker (at the root
so its scope is the whole origin) and ``/manifest.webmanifest`` the install manifest; every
other file under ``web/`` is ``/static/<path>``. The files are read once when the app is built
and answered from memory: only files of a known type are served (no directory walk, no path
from the request ever touches the disk), each with a strong ETag and ``Cache-Control:
no-cache`` (the browser revalidates, a 304 costs nothing; the service worker keeps the shell
for offline use). The service worker's ``__SHELL_VERSION__`` is the digest of every file, so
a deployment with any changed file installs a fresh shell cache. The strict CSP of these
routes is gateway/headers.py's (no inline script or style), and they are not rate-limited
(gateway/ratelimit.py): they are static bytes from memory.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from models.errors import NotFound
from web import ROOT

TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".webmanifest": "application/manifest+json",
}
ROOT_FILES = {"/": "index.html", "/sw.js": "sw.js", "/manifest.webmanifest": "manifest.webmanifest"}
STATIC_PREFIX = "/static/"
_WEB = web.AppKey("web_bundle", dict)


@dataclass(frozen=True)
class Asset:
    """One servable file: its bytes, type and ETag."""

    body: bytes
    content_type: str
    etag: str


def load_bundle(root: Path = ROOT) -> dict[str, Asset]:
    """Every servable file under ``root`` by its relative path (``js/client.js``)."""
    files = sorted(
        p for p in root.rglob("*") if p.is_file() and p.suffix in TYPES and "__" not in p.name
    )
    raw = {p.relative_to(root).as_posix(): p.read_bytes() for p in files}
    digest = hashlib.sha256()
    for name, body in raw.items():
        digest.update(name.encode() + b"\0" + body)
    version = digest.hexdigest()[:16]
    if "sw.js" in raw:
        raw["sw.js"] = raw["sw.js"].replace(b"__SHELL_VERSION__", version.encode())
    return {name: _asset(name, body) for name, body in raw.items()}


def _asset(name: str, body: bytes) -> Asset:
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return Asset(body, TYPES[Path(name).suffix], etag)


def _answer(request: web.Request, name: str) -> web.Response:
    asset = request.app[_WEB].get(name)
    if asset is None:
        raise NotFound("no such file")
    headers = {"ETag": asset.etag, "Cache-Control": "no-cache"}
    if name == "sw.js":
        headers["Service-Worker-Allowed"] = "/"
    if request.headers.get("If-None-Match") == asset.etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=asset.body, content_type=asset.content_type, headers=headers)


async def page_view(request: web.Request) -> web.Response:
    return _answer(request, ROOT_FILES[request.path])


async def static_view(request: web.Request) -> web.Response:
    name = request.match_info["path"]
    if name in ROOT_FILES.values():  # those have their own URLs
        raise NotFound("no such file")
    return _answer(request, name)


def add_routes(app: web.Application) -> None:
    app[_WEB] = load_bundle()
    for path in ROOT_FILES:
        app.router.add_get(path, page_view)
    app.router.add_get(STATIC_PREFIX + "{path:[A-Za-z0-9_./-]+}", static_view)


def _file(summary: str, types: tuple[str, ...]) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "responses": {
                "200": {"description": "the file", "content": {t: {} for t in types}},
                "304": {"description": "not modified (If-None-Match)"},
                "404": {"description": "no such file", "content": {"application/json": {}}},
            },
        }
    }


OPENAPI_PATHS: dict[str, Any] = {
    "/": _file("The web app (docs/web.md)", ("text/html",)),
    "/sw.js": _file("The web app's service worker (offline shell)", ("text/javascript",)),
    "/manifest.webmanifest": _file("The web app manifest", ("application/manifest+json",)),
    STATIC_PREFIX + "{path}": {
        "get": {
            **_file("A file of the web app: ES modules, styles, icons", tuple(TYPES.values()))[
                "get"
            ],
            "parameters": [
                {
                    "name": "path",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_./-]+$"},
                }
            ],
        }
    },
}
