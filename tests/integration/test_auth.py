"""REST auth against the real gateway, Postgres and Redis (PROTOCOL.md, REST basics)."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import pytest

from tests.integration.client import Api

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"


async def test_signup_login_me(api: Api) -> None:
    user = await api.signup("ann")
    status, body = await api.get("/api/v1/me", token=user.access_token)
    assert status == 200
    assert body["user"]["id"] == user.id
    assert body["user"]["email"] == user.email
    assert body["user"]["roles"] == ["user"]
    assert "password_hash" not in body["user"]

    status, body = await api.post(
        "/api/v1/auth/login", {"email": user.email.upper(), "password": PASSWORD}
    )
    assert status == 200, body
    assert body["user"]["id"] == user.id
    status, me = await api.get("/api/v1/me", token=body["access_token"])
    assert status == 200 and me["user"]["id"] == user.id


async def test_signup_of_a_taken_email_claims_nothing_and_bad_fields(api: Api) -> None:
    user = await api.signup("dup")
    body = {"email": user.email, "password": "another passphrase", "display_name": "again"}
    status, reply = await api.post("/api/v1/auth/signup", body)
    assert status == 201 and reply["user"]["id"] != user.id, reply  # an account of its own
    status, me = await api.get("/api/v1/me", token=reply["access_token"])
    assert status == 200 and me["user"]["id"] == reply["user"]["id"]
    login = {"email": user.email, "password": PASSWORD}
    status, out = await api.post("/api/v1/auth/login", login)
    assert status == 200 and out["user"]["id"] == user.id  # the address is still the owner's
    status, out = await api.post("/api/v1/auth/login", {**login, "password": body["password"]})
    assert status == 401, out  # ... and the stranger's password is not its
    cases = [
        {"email": "nope", "password": PASSWORD, "display_name": "x"},
        {"email": "a@b.test", "password": "short", "display_name": "x"},
        {"email": "a@b.test", "password": PASSWORD, "display_name": ""},
        {"email": "a@b.test", "password": PASSWORD, "display_name": "x", "admin": True},
        {"email": 5, "password": PASSWORD, "display_name": "x"},
    ]
    for case in cases:
        status, reply = await api.post("/api/v1/auth/signup", case)
        assert status == 400, (case, reply)
        assert reply["error"]["code"] == "bad_request"


async def test_wrong_password_and_unknown_email_look_the_same(api: Api) -> None:
    user = await api.signup("guess")
    wrong = await api.post("/api/v1/auth/login", {"email": user.email, "password": "wrong pass"})
    unknown = await api.post(
        "/api/v1/auth/login", {"email": f"{uuid.uuid4().hex}@x.test", "password": PASSWORD}
    )
    assert wrong == unknown == (401, wrong[1])
    assert wrong[1]["error"]["code"] == "unauthorized"


async def test_refresh_rotates_and_reuse_revokes_the_family(api: Api) -> None:
    user = await api.signup("rot")
    status, first = await api.post("/api/v1/auth/refresh", {"refresh_token": user.refresh_token})
    assert status == 200 and first["refresh_token"] != user.refresh_token
    status, second = await api.post(
        "/api/v1/auth/refresh", {"refresh_token": first["refresh_token"]}
    )
    assert status == 200
    assert (await api.get("/api/v1/me", token=second["access_token"]))[0] == 200

    # The first token again: reuse. The whole family dies, including the newest tokens.
    status, body = await api.post("/api/v1/auth/refresh", {"refresh_token": user.refresh_token})
    assert status == 401 and body["error"]["code"] == "unauthorized"
    status, _ = await api.post("/api/v1/auth/refresh", {"refresh_token": second["refresh_token"]})
    assert status == 401
    assert (await api.get("/api/v1/me", token=second["access_token"]))[0] == 401

    # Another sign-in of the same user is untouched.
    status, other = await api.post(
        "/api/v1/auth/login", {"email": user.email, "password": PASSWORD}
    )
    assert status == 200
    assert (await api.get("/api/v1/me", token=other["access_token"]))[0] == 200


async def test_concurrent_refresh_with_one_token_succeeds_at_most_once(api: Api) -> None:
    user = await api.signup("race")
    results = await asyncio.gather(
        *(api.post("/api/v1/auth/refresh", {"refresh_token": user.refresh_token}) for _ in range(5))
    )
    assert sum(1 for status, _ in results if status == 200) <= 1
    assert all(status in (200, 401) for status, _ in results)


async def test_logout_ends_tokens_and_refresh(api: Api) -> None:
    user = await api.signup("bye")
    status, _ = await api.post("/api/v1/auth/logout", None, token=user.access_token)
    assert status == 204
    assert (await api.get("/api/v1/me", token=user.access_token))[0] == 401
    status, _ = await api.post("/api/v1/auth/refresh", {"refresh_token": user.refresh_token})
    assert status == 401
    status, _ = await api.post("/api/v1/auth/ws-ticket", {}, token=user.access_token)
    assert status == 401


async def test_missing_and_bad_bearer_on_rest(api: Api, http: aiohttp.ClientSession) -> None:
    assert (await api.get("/api/v1/me"))[0] == 401
    for header in ("Basic Zm9vOmJhcg==", "Bearer ", "Bearer a.b.c"):
        async with http.get(api.base + "/api/v1/me", headers={"Authorization": header}) as resp:
            assert resp.status == 401
            assert (await resp.json())["error"]["code"] == "unauthorized"
