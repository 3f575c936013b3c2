"""Security headers on every HTTP response (issue 14, item 8), set in one place:
``on_response_prepare``, so error answers, 405s and websocket handshakes get them too.

- ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``, ``Referrer-Policy:
  no-referrer``, ``Cross-Origin-Opener-Policy`` and ``-Resource-Policy: same-origin``: always.
- ``Content-Security-Policy``: the API's answers are data, never a document, so they get
  ``default-src 'none'``; the web app's routes (everything outside the API, probes and the
  websocket) get a strict same-origin policy: scripts, styles and connections to this origin
  only (the websocket included), images also from ``data:``/``blob:``, no framing, no plugins.
- ``Strict-Transport-Security`` when ``HL_PUBLIC_URL`` is https (TLS is terminated in front
  of the gateway: docs/security.md).
- ``Cache-Control: no-store`` on the auth endpoints' answers (they carry tokens).
A header a handler set itself is left as it is.
"""

from __future__ import annotations

from aiohttp import web

from gateway.context import SETTINGS

API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
WEB_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:;"
    " font-src 'self'; connect-src 'self'; manifest-src 'self'; worker-src 'self';"
    " frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)
HSTS = "max-age=63072000; includeSubDomains"
_NOT_WEB = ("/api/", "/ws", "/healthz", "/readyz", "/metrics")
_ALWAYS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def security_headers(path: str, https: bool) -> dict[str, str]:
    """The headers a response to ``path`` gets."""
    headers = dict(_ALWAYS)
    headers["Content-Security-Policy"] = API_CSP if path.startswith(_NOT_WEB) else WEB_CSP
    if https:
        headers["Strict-Transport-Security"] = HSTS
    if path.startswith(("/api/v1/auth/", "/api/v1/oauth/token")):
        headers["Cache-Control"] = "no-store"
    return headers


async def _add_headers(request: web.Request, response: web.StreamResponse) -> None:
    public_url = request.app[SETTINGS].public_url or ""
    for name, value in security_headers(request.path, public_url.startswith("https://")).items():
        response.headers.setdefault(name, value)


def install(app: web.Application) -> None:
    app.on_response_prepare.append(_add_headers)
