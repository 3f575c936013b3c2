"""Two-factor sign-in, sign-in throttling without enumeration, real 429 / rate_limited answers,
secrets sealed at rest, idempotency fingerprints (issue 14, items 1, 2, 4, 7)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
import jwt as pyjwt
import pyotp
import pytest
from aiohttp.test_utils import TestServer

from cluster.config import Settings
from gateway.app import build_app
from tests.integration import market_kit as mk
from tests.integration.client import Api
from tests.integration.notify_kit import MailSink, text_of

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
_NOTICE = "Someone tried to sign up with your email address"
_ADDRESSES = itertools.count(1)


def new_address() -> str:
    """A client address of its own (the strict gateway trusts one proxy hop)."""
    n = next(_ADDRESSES)
    return f"198.51.{n // 250}.{n % 250 + 1}"


@pytest.fixture(scope="module")
async def strict(settings: Settings) -> AsyncIterator[TestServer]:
    """A second gateway in this process with tight limits and no sandbox payments, behind one
    trusted proxy (so each test picks its client address with X-Forwarded-For)."""
    tight = settings.model_copy(
        update={
            "trusted_proxy_hops": 1,
            "rest_rate_per_min": 30,
            "ws_rate_burst": 5,
            "ws_rate_per_s": 1.0,
            "login_free_failures_account": 3,
            "login_free_failures_address": 6,
            "sandbox_payments": False,  # as a deployment that did not ask for it
        }
    )
    srv = TestServer(build_app(tight), host="127.0.0.1", port=0)
    await srv.start_server()
    yield srv
    await srv.close()


async def call(
    http: aiohttp.ClientSession,
    url: str,
    body: object = None,
    address: str | None = None,
    token: str | None = None,
    method: str = "POST",
) -> tuple[int, dict, aiohttp.typedefs.LooseHeaders]:
    headers = {"X-Forwarded-For": address} if address else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with http.request(method, url, json=body, headers=headers) as resp:
        text = await resp.text()
        return resp.status, (json.loads(text) if text else {}), resp.headers


def code_at(secret: str, offset_steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30 * offset_steps)


# -- two-factor ----------------------------------------------------------------------------------
async def test_two_factor_setup_enable_login_replay_recovery_disable(
    api: Api, settings: Settings
) -> None:
    user = await api.signup("otp")
    login = {"email": user.email, "password": PASSWORD}
    status, out = await api.post("/api/v1/auth/2fa/enable", {"otp": "123456"}, user.access_token)
    assert status == 409, out  # not set up yet
    status, setup = await api.post("/api/v1/auth/2fa/setup", None, user.access_token)
    assert status == 200 and setup["otpauth_uri"].startswith("otpauth://totp/"), setup
    secret = setup["secret"]
    assert (await api.post("/api/v1/auth/login", login))[0] == 200  # not on until enabled

    wrong = f"{(int(code_at(secret)) + 1) % 10**6:06d}"
    status, out = await api.post("/api/v1/auth/2fa/enable", {"otp": wrong}, user.access_token)
    assert status == 401, out
    status, out = await api.post(
        "/api/v1/auth/2fa/enable", {"otp": code_at(secret, -1)}, user.access_token
    )
    assert status == 200, out
    codes = out["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    status, out = await api.post("/api/v1/auth/2fa/setup", None, user.access_token)
    assert status == 409, out

    status, out = await api.post("/api/v1/auth/login", login)
    assert status == 401 and out["error"]["code"] == "otp_required", out
    now_code = code_at(secret)
    status, out = await api.post("/api/v1/auth/login", {**login, "otp": now_code})
    assert status == 200, out
    status, out = await api.post("/api/v1/auth/login", {**login, "otp": now_code})
    assert status == 401 and out["error"]["code"] == "unauthorized", out  # replay refused
    status, out = await api.post("/api/v1/auth/login", {**login, "otp": codes[0].upper()})
    assert status == 200, out
    status, out = await api.post("/api/v1/auth/login", {**login, "otp": codes[0]})
    assert status == 401, out  # a recovery code works once

    conn = await mk.db(settings)
    try:
        stored = await conn.fetchval("SELECT secret FROM user_totp WHERE user_id = $1", user.id)
        digests = await conn.fetch(
            "SELECT code_hash FROM user_recovery_codes WHERE user_id = $1", user.id
        )
    finally:
        await conn.close()
    assert stored.startswith("hlenc:v1:") and secret not in stored
    assert len(digests) == 10 and not {r["code_hash"] for r in digests} & set(codes)

    status, out = await api.post("/api/v1/auth/2fa/disable", {"otp": codes[1]}, user.access_token)
    assert status == 204, out
    assert (await api.post("/api/v1/auth/login", login))[0] == 200


# -- throttling ----------------------------------------------------------------------------------
async def test_failed_logins_per_account_are_throttled_the_right_password_too(
    strict: TestServer, api: Api, http: aiohttp.ClientSession
) -> None:
    user = await api.signup("throttled")
    url = str(strict.make_url("/api/v1/auth/login"))
    wrong = {"email": user.email, "password": "not the password"}
    answers = [await call(http, url, wrong, new_address()) for _ in range(3)]
    assert [a[0] for a in answers] == [401, 401, 401]
    status, out, headers = await call(http, url, wrong, new_address())
    assert status == 429 and out["error"]["code"] == "rate_limited", out
    first_wait = int(headers["Retry-After"])
    assert first_wait >= 1
    right = {"email": user.email, "password": PASSWORD}
    status, out, _ = await call(http, url, right, new_address())
    assert status == 429, out  # the right password waits too: guessing stays slow
    await asyncio.sleep(first_wait + 0.2)
    status, out, _ = await call(http, url, wrong, new_address())
    assert status == 401, out  # one more failure after the wait ...
    status, out, headers = await call(http, url, right, new_address())
    assert status == 429 and int(headers["Retry-After"]) > first_wait, out  # ... waits longer


async def test_unknown_email_and_wrong_password_answer_alike(
    strict: TestServer, api: Api, http: aiohttp.ClientSession
) -> None:
    user = await api.signup("alike")
    url = str(strict.make_url("/api/v1/auth/login"))
    known = {"email": user.email, "password": "not the password"}
    unknown = {"email": f"nobody-{uuid.uuid4().hex[:8]}@example.test", "password": "whatever1"}
    for _ in range(3):
        a = await call(http, url, known, new_address())
        b = await call(http, url, unknown, new_address())
        assert (a[0], a[1]) == (b[0], b[1]) == (401, a[1]), (a, b)
    a = await call(http, url, known, new_address())
    b = await call(http, url, unknown, new_address())
    assert a[0] == b[0] == 429 and a[1]["error"]["code"] == b[1]["error"]["code"]


async def test_failures_per_address_are_throttled_signups_too(
    strict: TestServer, api: Api, http: aiohttp.ClientSession
) -> None:
    taken = await api.signup("taken")
    here, elsewhere = new_address(), new_address()
    signup_url = str(strict.make_url("/api/v1/auth/signup"))
    login_url = str(strict.make_url("/api/v1/auth/login"))
    for i in range(6):  # different accounts, one address
        body = {"email": f"spray-{i}-{uuid.uuid4().hex[:6]}@example.test", "password": "x" * 9}
        assert (await call(http, login_url, body, here))[0] == 401
    right = {"email": taken.email, "password": PASSWORD}
    status, out, headers = await call(http, login_url, right, here)
    assert status == 429 and int(headers["Retry-After"]) >= 1, out
    fresh = {**right, "display_name": "f", "email": f"fresh-{uuid.uuid4().hex[:8]}@example.test"}
    assert (await call(http, signup_url, fresh, here))[0] == 429
    assert (await call(http, signup_url, fresh, elsewhere))[0] == 201


async def test_a_signup_of_a_taken_email_answers_alike_and_tells_the_owner(
    api: Api, mail_sink: MailSink
) -> None:
    owner = await api.signup("owner")
    await mail_sink.wait_for(owner.email, subject="Confirm your email address")
    stranger = {"email": owner.email.upper(), "password": "a stranger's pass", "display_name": "s"}
    free = {**stranger, "email": f"free-{uuid.uuid4().hex[:8]}@example.test"}
    taken_status, taken = await api.post("/api/v1/auth/signup", stranger)
    free_status, fresh = await api.post("/api/v1/auth/signup", free)
    assert taken_status == free_status == 201, (taken, fresh)
    assert taken.keys() == fresh.keys() and taken["user"].keys() == fresh["user"].keys()
    assert taken["user"]["id"] != owner.id and taken["user"]["email"] == stranger["email"]
    status, me = await api.get("/api/v1/me", token=taken["access_token"])
    assert status == 200 and me["user"]["id"] == taken["user"]["id"]  # its own, not the owner's

    notice = await mail_sink.wait_for(owner.email, subject=_NOTICE)
    assert "/reset-password" in text_of(notice[0]) and "#token=" not in text_of(notice[0])
    await mail_sink.wait_for(free["email"], subject="Confirm your email address")
    assert (await api.post("/api/v1/auth/signup", {**stranger, "display_name": "t"}))[0] == 201
    status, _ = await api.post("/api/v1/auth/email/verify-request", None, taken["access_token"])
    assert status == 202  # answered alike, but no link to the owner's inbox verifies a stranger
    await asyncio.sleep(1.5)  # the notifier polls well within this
    assert len(mail_sink.to(owner.email)) == 2  # the link, one notice (an hour's worth)
    assert mail_sink.to(stranger["email"]) == []  # the unclaimed account is never emailed
    login = {"email": stranger["email"], "password": PASSWORD}
    status, out = await api.post("/api/v1/auth/login", login)
    assert status == 200 and out["user"]["id"] == owner.id


async def test_sign_in_waits_for_a_verified_address_where_asked(
    settings: Settings, api: Api, http: aiohttp.ClientSession, mail_sink: MailSink
) -> None:
    """With HL_LOGIN_NEEDS_VERIFIED_EMAIL a signup's follow-up login cannot tell a taken
    address either: the right password of an unverified address answers as a wrong one."""
    gated = settings.model_copy(
        update={"login_needs_verified_email": True, "trusted_proxy_hops": 1}
    )
    srv = TestServer(build_app(gated), host="127.0.0.1", port=0)
    await srv.start_server()
    try:
        owner = await api.signup("verified-owner")
        signup, login = (str(srv.make_url(f"/api/v1/auth/{p}")) for p in ("signup", "login"))
        free = {"email": f"new-{uuid.uuid4().hex[:8]}@example.test", "password": PASSWORD}
        taken = {"email": owner.email, "password": "a stranger's pass"}
        for body in (free, taken):
            assert (await call(http, signup, {**body, "display_name": "n"}, new_address()))[
                0
            ] == 201
        a = await call(http, login, free, new_address())
        b = await call(http, login, taken, new_address())
        assert (a[0], a[1]) == (b[0], b[1]) == (401, a[1]), (a, b)  # alike, wrong or unverified
        owner_login = {"email": owner.email, "password": PASSWORD}
        assert (await call(http, login, owner_login, new_address()))[0] == 401  # nor the owner

        link = await mail_sink.wait_for(free["email"], subject="Confirm your email address")
        token = text_of(link[0]).split("#token=", 1)[1].split()[0]
        verify = str(srv.make_url("/api/v1/auth/email/verify"))
        assert (await call(http, verify, {"token": token}, new_address()))[0] == 204
        status, out, _ = await call(http, login, free, new_address())
        assert status == 200, out
    finally:
        await srv.close()


async def test_basic_credentials_that_are_no_email_are_unauthorized(api: Api) -> None:
    """The appeal routes' HTTP Basic sign-in: a user name that is no email is a wrong
    credential (401), not a bad request (schemathesis' ignored_auth check found the 400)."""
    for user_pass in (b"not-an-email:whatever", b"a@b.test:wrong password"):
        headers = {"Authorization": "Basic " + base64.b64encode(user_pass).decode()}
        async with api.http.get(api.base + "/api/v1/me/moderation", headers=headers) as resp:
            body = await resp.json()
            assert resp.status == 401 and body["error"]["code"] == "unauthorized", body


async def test_rest_rate_limit_answers_429_with_retry_after(
    strict: TestServer, api: Api, http: aiohttp.ClientSession
) -> None:
    address = new_address()
    url = str(strict.make_url("/healthz"))
    assert (await call(http, url, None, address, method="GET"))[0] == 200  # not limited
    url = str(strict.make_url("/api/v1/me"))
    answers = []
    for _ in range(61):  # 30 a minute: a window boundary may restart the count once
        answers.append(await call(http, url, None, address, method="GET"))
        if answers[-1][0] == 429:
            break
    status, out, headers = answers[-1]
    assert status == 429 and out["error"]["code"] == "rate_limited", [a[0] for a in answers]
    assert {a[0] for a in answers[:-1]} == {401} and len(answers) > 30
    assert 1 <= int(headers["Retry-After"]) <= 60


async def test_websocket_handshakes_spend_the_rest_budget(
    strict: TestServer, api: Api, http: aiohttp.ClientSession
) -> None:
    """The middlewares pass the socket's GET straight through (gateway/http.py: is_socket);
    its handler counts the handshake itself, and answers over the budget as REST does."""
    user = await api.signup("ws-handshakes")
    address = new_address()
    headers = {"X-Forwarded-For": address, "Authorization": f"Bearer {user.access_token}"}
    url = str(strict.make_url("/ws"))
    statuses = []
    for _ in range(61):
        try:
            ws = await http.ws_connect(url, headers=headers)
        except aiohttp.WSServerHandshakeError as err:
            statuses.append(err.status)
            break
        statuses.append(101)
        await ws.close()
    assert statuses[-1] == 429 and set(statuses[:-1]) == {101} and len(statuses) > 30, statuses
    async with http.get(url, headers=headers) as resp:  # and the answer is the typed one
        assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
        assert (await resp.json())["error"]["code"] == "rate_limited"


async def test_websocket_rate_limit_answers_rate_limited_with_the_id(
    strict: TestServer, api: Api
) -> None:
    user = await api.signup("ws-limited")
    fast = Api(str(strict.make_url("")), api.http)
    ws = await fast.connect(user, headers={"X-Forwarded-For": new_address()})
    for i in range(8):
        await ws.send_raw(json.dumps({"id": 100 + i, "op": "ping"}))
    replies = [await ws.next_event(None, timeout=5) for _ in range(8)]
    limited = [r for r in replies if r.get("ok") is False]
    assert limited and all(r["error"]["code"] == "rate_limited" for r in limited)
    assert {r["re"] for r in limited} <= set(range(100, 108))
    await asyncio.sleep(1.2)
    assert (await ws.ok("ping"))["pong"] is True  # the session lives on
    await ws.close()


# -- secrets at rest, idempotency ------------------------------------------------------------------
async def test_hook_secrets_are_sealed_at_rest(api: Api, settings: Settings) -> None:
    seller, _ = await mk.vendor(api, mk.spot(settings, 61), "sealed-hooks")
    status, hook = await mk.rest(
        api,
        "POST",
        "/api/v1/vendor/hooks",
        {"target_url": "http://127.0.0.1:9/x", "events": ["order.created"]},
        seller.access_token,
    )
    assert status == 201, hook
    conn = await mk.db(settings)
    try:
        stored = await conn.fetchval("SELECT secret FROM hooks WHERE id = $1", hook["id"])
    finally:
        await conn.close()
    assert stored.startswith("hlenc:v1:") and hook["secret"] not in stored


async def test_an_idempotency_key_reused_with_other_data_is_a_conflict(
    api: Api, settings: Settings
) -> None:
    ws = await api.connect(await api.signup("idem"))
    here = mk.spot(settings, 62)
    await ws.ok("locate", {"lat": here[0], "lng": here[1]})
    first = await ws.ok("post.create", {"text": "first"}, key="same-key")
    again = await ws.ok("post.create", {"text": "first"}, key="same-key")
    assert again["post"]["id"] == first["post"]["id"]  # a true retry: the first result
    other = await ws.request("post.create", {"text": "something else"}, key="same-key")
    assert other["ok"] is False and other["error"]["code"] == "conflict", other
    await ws.close()

    seller, _ = await mk.vendor(api, mk.spot(settings, 63), "idem-vendor")
    headers = {"Idempotency-Key": "listing-1"}
    body = {"title": "Loaf", "category": "bread", "price": 100, "stock": 1}
    path = "/api/v1/vendor/listings"
    status, a = await mk.rest(api, "POST", path, body, seller.access_token, headers)
    assert status == 201, a
    status, b = await mk.rest(api, "POST", path, body, seller.access_token, headers)
    assert status == 201 and b["listing"]["id"] == a["listing"]["id"]
    status, c = await mk.rest(api, "POST", path, {**body, "price": 1}, seller.access_token, headers)
    assert status == 409 and c["error"]["code"] == "conflict", c


# -- payments --------------------------------------------------------------------------------------
async def test_sandbox_payments_only_where_asked_for(
    strict: TestServer, api: Api, settings: Settings
) -> None:
    assert Settings.model_fields["sandbox_payments"].default is False
    seller, _ = await mk.vendor(api, mk.spot(settings, 64), "no-sandbox")
    item = await mk.listing(api, seller.access_token)
    buyer = await api.signup("no-sandbox-buyer")
    ws = await Api(str(strict.make_url("")), api.http).connect(
        buyer, headers={"X-Forwarded-For": new_address()}
    )
    reply = await mk.buy(ws, item["id"], 1, {"provider": "sandbox", "card": "4242424242424242"})
    assert reply["ok"] is False and reply["error"]["code"] == "bad_request", reply
    assert "not offered" in reply["error"]["message"]
    await ws.close()


# -- key rotation ----------------------------------------------------------------------------------
async def test_rotating_keys_keeps_tokens_and_secrets_working(
    api: Api, settings: Settings, server: TestServer
) -> None:
    """The rotation commands' steps against the running gateway (same data dir): tokens signed
    before a JWT rotation still verify, new ones name the new key; a data key rotation
    re-seals every stored secret and the gateway opens them."""
    from models.sealing import kid_of_sealed, new_data_key
    from services.secrets import Keys
    from store import keyfiles
    from store.db import create_pool

    user = await api.signup("rotation")
    assert (await api.get("/api/v1/me", token=user.access_token))[0] == 200
    jwt_ring = keyfiles.rotate(
        keyfiles.jwt_file(settings.data_dir), keyfiles.new_jwt_secret(), keep_retired_s=3600
    )
    assert (await api.get("/api/v1/me", token=user.access_token))[0] == 200  # old key verifies
    await asyncio.sleep(5.2)  # the gateway re-reads its ring every 5 s
    fresh = await api.signup("rotation-after")
    assert pyjwt.get_unverified_header(fresh.access_token)["kid"] == jwt_ring.current.kid
    assert (await api.get("/api/v1/me", token=fresh.access_token))[0] == 200

    seller, _ = await mk.vendor(api, mk.spot(settings, 65), "rotation-hooks")
    status, hook = await mk.rest(
        api,
        "POST",
        "/api/v1/vendor/hooks",
        {"target_url": "http://127.0.0.1:9/rot", "events": ["order.created"]},
        seller.access_token,
    )
    assert status == 201, hook
    data_ring = keyfiles.rotate(keyfiles.data_file(settings.data_dir), new_data_key(), None)
    assert settings.database_url
    pool = await create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        counts = await Keys(settings).reseal(pool)
        stored = await pool.fetchval("SELECT secret FROM hooks WHERE id = $1", hook["id"])
    finally:
        await pool.close()
    assert counts["hooks"] >= 1
    assert kid_of_sealed(stored) == data_ring.current.kid
    from gateway.context import SERVICES

    assert server.app[SERVICES].keys.open(stored, f"hook:{hook['id']}") == hook["secret"]
