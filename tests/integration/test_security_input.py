"""Regression tests for the wrong answers an attacker found (issue 14): each hostile input gets
a typed 4xx or a typed error reply carrying the frame's id, and the session lives on."""

from __future__ import annotations

import json
import time

import aiohttp
import jwt
import msgpack
import pytest
from aiohttp.test_utils import TestServer

from cluster.config import Settings
from gateway.app import build_app
from store.keyfiles import jwt_ring
from tests.integration.client import Api, Ws

pytestmark = pytest.mark.integration

LONDON = (51.5072, -0.1276)


async def _reply(ws: Ws, raw: str | bytes, timeout: float = 5) -> dict:
    await ws.send_raw(raw)
    frame = await ws.next_event(None, timeout=timeout)
    assert frame.get("ok") is False, frame
    return frame


async def _alive(ws: Ws) -> None:
    assert (await ws.ok("ping"))["pong"] is True


async def test_deep_nesting_and_lone_surrogates_get_typed_errors(api: Api) -> None:
    ws = await api.connect(await api.signup())
    deep = '{"id": 5, "op": "ping", "data": {"x": ' + "[" * 980 + "]" * 980 + "}}"
    frame = await _reply(ws, deep)
    assert frame["re"] == 5 and frame["error"]["code"] == "bad_request"
    deeper = '{"id": 6, "op": "ping", "data": {"x": ' + "[" * 5000 + "]" * 5000 + "}}"
    frame = await _reply(ws, deeper)  # beyond the parser's own recursion limit
    assert frame["re"] == 6 and frame["error"]["code"] == "bad_request"
    frame = await _reply(ws, '{"id": "\\ud800", "op": "ping"}')
    assert frame["re"] is None and frame["error"]["code"] == "bad_request"
    frame = await _reply(ws, '{"id": 7, "op": "ping", "data": {"q": "\\udfff"}}')
    assert frame["re"] == 7 and frame["error"]["code"] == "bad_request"
    await _alive(ws)
    await ws.close()


async def test_nul_bytes_are_bad_requests_not_503(api: Api) -> None:
    status, body = await api.get("/api/v1/vendor/listings/abc%00def")
    assert status == 404 and body["error"]["code"] == "not_found", body  # names nothing
    status, body = await api.get("/api/v1/vendor/listings?cursor=a%00b")
    assert status == 400, body
    login = {"email": "a\u0000@example.test", "password": "correct horse battery"}
    status, body = await api.post("/api/v1/auth/login", login)
    assert status == 400 and body["error"]["code"] == "bad_request", body
    signup = {**login, "display_name": "x"}
    status, body = await api.post("/api/v1/auth/signup", signup)
    assert status == 400 and body["error"]["code"] == "bad_request", body
    deep = b'{"email": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    status, body = await api.post("/api/v1/auth/login", raw=deep)
    assert status == 400 and body["error"]["code"] == "bad_request", body
    for raw in (b'{"email": NaN}', b'{"email": "x", "n": 1e999999}'):
        status, body = await api.post("/api/v1/auth/login", raw=raw)
        assert status == 400, (raw, body)

    ws = await api.connect(await api.signup())
    lat, lng = LONDON
    for data in (
        {"lat": lat, "lng": lng, "q": "a\u0000b"},
        {"lat": lat, "lng": lng, "category": "\u0000"},
    ):
        reply = await ws.request("listings.nearby", data)
        assert reply["error"]["code"] == "bad_request", reply
    reply = await ws.request("listing.get", {"listing_id": "abc\u0000def"})
    assert reply["error"]["code"] == "bad_request", reply
    await _alive(ws)
    await ws.close()


async def test_int64_overflow_is_refused(api: Api) -> None:
    ws = await api.connect(await api.signup())
    lat, lng = LONDON
    for value in (2**70, 1e30, -(2**64)):
        reply = await ws.request("listings.nearby", {"lat": lat, "lng": lng, "max_price": value})
        assert reply["error"]["code"] == "bad_request", (value, reply)
    reply = await ws.request(
        "subscribe", {"stream": "user:x", "since": {"epoch": "e", "offset": 1e30}}
    )
    assert reply["error"]["code"] == "bad_request", reply
    await _alive(ws)
    await ws.close()


async def test_msgpack_ids_out_of_range_and_garbage_are_answered(api: Api) -> None:
    ws = await api.connect(await api.signup(), protocol="hl.msgpack")
    # a JSON text frame on hl.msgpack with an id no msgpack integer holds
    frame = await _reply(ws, json.dumps({"id": 2**70, "op": "ping"}))
    assert frame["re"] is None and frame["error"]["code"] == "bad_request"
    frame = await _reply(ws, json.dumps({"id": 2**63, "op": "nope"}))
    assert frame["re"] is None
    frame = await _reply(ws, msgpack.packb({"id": 2**64 - 1, "op": "ping"}))
    assert frame["re"] is None and frame["error"]["code"] == "bad_request"
    for garbage in (b"\xc1", b"\x81\x91\x01\x02", b"\xd4\x05\x00", msgpack.packb([1, 2])):
        frame = await _reply(ws, garbage)
        assert frame["re"] is None and frame["error"]["code"] == "bad_request", garbage
    frame = await _reply(ws, msgpack.packb({"id": 3, "op": "ping", "data": {"b": b"\x00"}}))
    assert frame["re"] == 3 and frame["error"]["code"] == "bad_request"
    await _alive(ws)
    await ws.close()


async def test_every_error_reply_carries_a_readable_id(api: Api, settings: Settings) -> None:
    ws = await api.connect(await api.signup())
    big = json.dumps({"id": 11, "op": "ping", "data": {"x": "y" * settings.max_frame_bytes}})
    frame = await _reply(ws, big)
    assert frame["re"] == 11 and frame["error"]["code"] == "too_large"
    frame = await _reply(ws, json.dumps({"id": "s-12", "op": "teleport"}))
    assert frame["re"] == "s-12"
    frame = await _reply(ws, json.dumps({"id": 13, "op": "ping", "data": []}))
    assert frame["re"] == 13 and frame["error"]["code"] == "bad_request"
    frame = await _reply(ws, json.dumps({"id": True, "op": "ping"}))
    assert frame["re"] is None and frame["error"]["code"] == "bad_request"
    frame = await _reply(ws, json.dumps({"id": 14, "op": "ping", "data": {"x": "a\u0000"}}))
    assert frame["re"] == 14
    await _alive(ws)
    await ws.close()


async def test_unknown_data_fields_are_refused_on_both_transports(api: Api) -> None:
    user = await api.signup()
    ws = await api.connect(user)
    lat, lng = LONDON
    reply = await ws.request("locate", {"lat": lat, "lng": lng, "role": "admin"})
    assert reply["error"]["code"] == "bad_request" and "role" in reply["error"]["message"]
    status, body = await api.post(
        "/api/v1/auth/login", {"email": user.email, "password": "x" * 8, "role": "admin"}
    )
    assert status == 400 and "role" in body["error"]["message"]
    await _alive(ws)
    await ws.close()


async def test_invalid_utf8_closes_with_1007(api: Api) -> None:
    ws = await api.connect(await api.signup())
    # a text frame (opcode 1) whose payload is not UTF-8
    writer = ws.ws._writer
    await writer.send_frame(b"\xff\xfe", aiohttp.WSMsgType.TEXT)
    await ws.closed.wait()
    assert ws.close_code == 1007


async def test_origin_must_be_configured_not_the_host(
    api: Api, http: aiohttp.ClientSession
) -> None:
    user = await api.signup()
    auth = {"Authorization": f"Bearer {user.access_token}"}
    for origin, host in (("http://evil.com", "evil.com"), ("http://evil.com:80", "evil.com:80")):
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(
                api.base + "/ws", headers={**auth, "Origin": origin, "Host": host}
            )
        assert info.value.status == 403
    port = api.base.rsplit(":", 1)[1]
    ws = await http.ws_connect(
        api.base + "/ws", headers={**auth, "Origin": f"http://localhost:{port}"}
    )
    await ws.close()


async def test_a_token_beyond_the_maximum_lifetime_is_refused(api: Api, settings: Settings) -> None:
    user = await api.signup()
    claims = jwt.decode(user.access_token, options={"verify_signature": False})
    header = jwt.get_unverified_header(user.access_token)
    key = api_key(settings, header)
    now = int(time.time())
    forever = jwt.encode(
        {**claims, "iat": now, "exp": now + 30 * 365 * 86400},
        key,
        algorithm="HS256",
        headers=header,
    )
    status, body = await api.get("/api/v1/me", token=forever)
    assert status == 401 and body["error"]["code"] == "unauthorized"
    future = jwt.encode(
        {**claims, "iat": now + 3600, "exp": now + 3900}, key, algorithm="HS256", headers=header
    )
    assert (await api.get("/api/v1/me", token=future))[0] == 401
    assert (await api.get("/api/v1/me", token=user.access_token))[0] == 200


def api_key(settings: Settings, header: dict) -> str:
    """The signing key the gateway used for a token of this header (its kid)."""
    ring = jwt_ring(settings.data_dir, settings.jwt_secret, settings.jwt_previous_secrets)
    key = ring.get(header["kid"])
    assert key is not None
    return key.secret


async def test_405_answers_carry_allow(api: Api, http: aiohttp.ClientSession) -> None:
    async with http.delete(api.base + "/api/v1/auth/login") as resp:
        assert resp.status == 405
        assert "POST" in resp.headers["Allow"]
        assert (await resp.json())["error"]["code"] == "bad_request"


async def test_the_socket_endpoint_answers_typed_errors_before_the_upgrade(
    api: Api, http: aiohttp.ClientSession
) -> None:
    """/ws skips the middlewares (its handler makes their checks): still typed JSON answers."""
    user = await api.signup()
    auth = {"Authorization": f"Bearer {user.access_token}"}
    async with http.get(api.base + "/ws", headers=auth) as resp:  # a plain GET, no upgrade
        assert resp.status == 400 and (await resp.json())["error"]["code"] == "bad_request"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
    async with http.get(api.base + "/ws?ticket=a%00b") as resp:
        assert resp.status == 400 and (await resp.json())["error"]["code"] == "bad_request"
    async with http.get(api.base + "/ws") as resp:
        assert resp.status == 401 and (await resp.json())["error"]["code"] == "unauthorized"
    ws = await http.ws_connect(api.base + "/ws", headers=auth)  # the upgrade still carries them
    assert ws._response.headers["X-Frame-Options"] == "DENY"
    await ws.close()


async def test_security_headers_on_every_response(api: Api, http: aiohttp.ClientSession) -> None:
    for method, path in (("GET", "/healthz"), ("GET", "/api/v1/nowhere"), ("DELETE", "/ws")):
        async with http.request(method, api.base + path) as resp:
            assert resp.headers["X-Content-Type-Options"] == "nosniff", path
            assert resp.headers["X-Frame-Options"] == "DENY"
            assert resp.headers["Content-Security-Policy"].startswith("default-src 'none'")
            assert "Strict-Transport-Security" not in resp.headers  # HL_PUBLIC_URL is not https
    async with http.post(api.base + "/api/v1/auth/login", json={}) as resp:
        assert resp.headers["Cache-Control"] == "no-store"


async def test_hsts_on_every_answer_behind_an_https_public_url(
    settings: Settings, http: aiohttp.ClientSession
) -> None:
    """A gateway whose HL_PUBLIC_URL is https (TLS terminated in front) sends HSTS on every
    answer: successes, typed errors, 405s and the web app's routes alike."""
    public = settings.model_copy(update={"public_url": "https://hl.example.test"})
    srv = TestServer(build_app(public), host="127.0.0.1", port=0)
    await srv.start_server()
    try:
        for method, path in (
            ("GET", "/healthz"),
            ("GET", "/api/v1/me"),  # 401
            ("GET", "/no/such/route"),  # 404
            ("DELETE", "/api/v1/auth/login"),  # 405
            ("POST", "/api/v1/auth/login"),  # 400
            ("GET", "/"),
        ):
            async with http.request(method, str(srv.make_url(path))) as resp:
                hsts = resp.headers.get("Strict-Transport-Security", "")
                assert hsts == "max-age=63072000; includeSubDomains", (method, path, hsts)
                assert resp.headers["X-Content-Type-Options"] == "nosniff"
    finally:
        await srv.close()


def test_hsts_and_the_web_apps_csp() -> None:
    from gateway.headers import security_headers

    web_app = security_headers("/", https=True)
    assert web_app["Strict-Transport-Security"].startswith("max-age=")
    assert "script-src 'self'" in web_app["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in web_app["Content-Security-Policy"]


async def test_the_spec_documents_what_the_server_answers(api: Api) -> None:
    status, spec = await api.get("/api/v1/openapi.json")
    assert status == 200
    assert {"400", "401", "403"} <= set(spec["paths"]["/ws"]["get"]["responses"])
    user = await api.signup("spec")
    assert (await api.get("/ws", token=user.access_token))[0] == 400  # not an upgrade
    refresh = spec["paths"]["/api/v1/auth/refresh"]["post"]["requestBody"]
    assert refresh["required"] is True
    body = refresh["content"]["application/json"]["schema"]
    assert body["additionalProperties"] is False
    assert body["properties"]["refresh_token"]["minLength"] == 1
    stock = spec["paths"]["/api/v1/vendor/listings/{listing_id}/stock"]["post"]
    assert "oneOf" in stock["requestBody"]["content"]["application/json"]["schema"]
    assert "400" in stock["responses"] and "409" in stock["responses"]  # Idempotency-Key
    assert "/api/v1/auth/2fa/setup" in spec["paths"]
