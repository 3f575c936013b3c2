"""The gateway serves the web client (gateway/webapp.py): the page, modules, service worker,
manifest, with the strict CSP, ETags, and typed 404s for anything else."""

from __future__ import annotations

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from gateway.headers import WEB_CSP

pytestmark = pytest.mark.integration


async def test_page_modules_and_worker_are_served(server: TestServer, http: ClientSession) -> None:
    base = str(server.make_url("")).rstrip("/")
    async with http.get(base + "/") as resp:
        assert resp.status == 200 and resp.content_type == "text/html"
        assert resp.headers["Content-Security-Policy"] == WEB_CSP
        assert '<script type="module" src="/static/js/app.js">' in await resp.text()
        etag = resp.headers["ETag"]
    async with http.get(base + "/", headers={"If-None-Match": etag}) as resp:
        assert resp.status == 304
    async with http.get(base + "/static/js/client.js") as resp:
        assert resp.status == 200 and resp.content_type == "text/javascript"
        assert "export class Session" in await resp.text()
    async with http.get(base + "/sw.js") as resp:
        body = await resp.text()
        assert resp.status == 200 and "__SHELL_VERSION__" not in body and "hl-shell-" in body
        assert resp.headers["Service-Worker-Allowed"] == "/"
    async with http.get(base + "/manifest.webmanifest") as resp:
        assert resp.status == 200 and (await resp.json(content_type=None))["name"] == "Hyperlocal"


@pytest.mark.parametrize(
    "path",
    [
        "/static/nope.js",
        "/static/index.html",
        "/static/../pyproject.toml",
        "/static/__init__.py",
        "/static/js/",
    ],
)
async def test_anything_else_is_a_typed_not_found(
    server: TestServer, http: ClientSession, path: str
) -> None:
    async with http.get(str(server.make_url("")).rstrip("/") + path) as resp:
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "not_found"
