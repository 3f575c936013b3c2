"""Rule 7 on every marketplace endpoint and op: vendor A never reaches vendor B's listings,
orders or hooks; a buyer never reaches another buyer's orders or cart; app tokens are scoped."""

from __future__ import annotations

import base64
import uuid

import aiohttp
import pytest

from cluster.config import Settings
from tests.integration import market_kit as mk
from tests.integration.client import Api

pytestmark = pytest.mark.integration


async def test_vendors_and_buyers_reach_only_their_own(api: Api, settings: Settings) -> None:
    seller_a, _ = await mk.vendor(api, mk.spot(settings, 9), "owner-a")
    seller_b, _ = await mk.vendor(api, mk.spot(settings, 10), "owner-b")
    a_tok = seller_a.access_token
    b_item = await mk.listing(api, seller_b.access_token, stock=5)
    hook_body = {"target_url": "http://127.0.0.1:9/x", "events": ["order.created"]}
    status, b_hook = await mk.rest(
        api, "POST", "/api/v1/vendor/hooks", hook_body, seller_b.access_token
    )
    assert status == 201
    alice, bob = await api.signup("alice"), await api.signup("bob")
    a_ws, b_ws = await api.connect(alice), await api.connect(bob)
    bob_order = (await mk.buy(b_ws, b_item["id"], 1, mk.APPROVE))["data"]["orders"][0]
    await b_ws.mutate("cart.add", {"listing_id": b_item["id"], "qty": 1})

    listing, order, hook = b_item["id"], bob_order["id"], b_hook["id"]
    foreign = [
        ("GET", f"/api/v1/vendor/listings/{listing}", None),
        ("PATCH", f"/api/v1/vendor/listings/{listing}", {"price": 1}),
        ("DELETE", f"/api/v1/vendor/listings/{listing}", None),
        ("POST", f"/api/v1/vendor/listings/{listing}/stock", {"set": 0}),
        ("GET", f"/api/v1/vendor/orders/{order}", None),
        ("POST", f"/api/v1/vendor/orders/{order}/accept", None),
        ("POST", f"/api/v1/vendor/orders/{order}/fulfil", None),
        ("POST", f"/api/v1/vendor/orders/{order}/cancel", None),
        ("DELETE", f"/api/v1/vendor/hooks/{hook}", None),
        ("GET", f"/api/v1/vendor/hooks/{hook}/deliveries", None),
        ("POST", f"/api/v1/vendor/hooks/{hook}/replay", {}),
    ]
    for method, path, body in foreign:
        status, out = await mk.rest(api, method, path, body, a_tok)
        assert status == 404 and out["error"]["code"] == "not_found", (method, path, out)
    for path in ("/api/v1/vendor/listings", "/api/v1/vendor/orders", "/api/v1/vendor/hooks"):
        status, out = await mk.rest(api, "GET", path, None, a_tok)
        assert status == 200 and out["items"] == [], path
    status, out = await mk.rest(api, "GET", "/api/v1/vendor/listings", None, alice.access_token)
    assert status == 403  # not a vendor at all
    status, _ = await mk.rest(api, "GET", "/api/v1/vendor/orders", None, None)
    assert status == 401
    assert await mk.stock_of(settings, listing) == 4  # nothing above changed it

    for op in ("order.get", "order.cancel", "order.complete"):
        reply = await a_ws.request(op, {"order_id": order}, key=uuid.uuid4().hex)
        assert reply["error"]["code"] == "not_found", op
    assert (await a_ws.ok("orders.list"))["items"] == []
    assert (await a_ws.ok("cart.get"))["items"] == []
    removed = await a_ws.mutate("cart.remove", {"listing_id": listing})
    assert removed["items"] == []
    assert (await b_ws.ok("cart.get"))["items"][0]["listing_id"] == listing
    inbox = await a_ws.request("subscribe", {"stream": f"user:{bob.id}"})
    assert inbox["error"]["code"] == "forbidden"
    for ws in (a_ws, b_ws):
        await ws.close()


async def test_app_tokens_are_scoped_revocable_and_vendor_bound(
    api: Api, settings: Settings
) -> None:
    seller_a, _ = await mk.vendor(api, mk.spot(settings, 11), "app-a")
    seller_b, _ = await mk.vendor(api, mk.spot(settings, 12), "app-b")
    b_item = await mk.listing(api, seller_b.access_token)
    status, app = await mk.rest(api, "POST", "/api/v1/vendor/apps",
                                {"name": "pos", "scopes": ["listings:read", "orders:read"]},
                                seller_a.access_token)  # fmt: skip
    assert status == 201 and app["client_secret"]
    form = f"grant_type=client_credentials&client_id={app['client_id']}"
    form += f"&client_secret={app['client_secret']}"
    async with api.http.post(
        api.base + "/api/v1/oauth/token",
        data=form,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ) as resp:
        assert resp.status == 200
        token = await resp.json()
    assert token["token_type"] == "Bearer" and token["scope"] == "listings:read orders:read"
    app_tok = token["access_token"]

    status, out = await mk.rest(api, "GET", "/api/v1/vendor/listings", None, app_tok)
    assert status == 200 and out["items"] == []
    status, out = await mk.rest(api, "POST", "/api/v1/vendor/listings",
                                {"title": "x", "category": "y", "price": 1}, app_tok)  # fmt: skip
    assert status == 403 and "scope" in out["error"]["message"]
    status, _ = await mk.rest(api, "GET", f"/api/v1/vendor/listings/{b_item['id']}", None, app_tok)
    assert status == 404
    status, _ = await mk.rest(api, "POST", "/api/v1/vendor/apps", {}, app_tok)
    assert status == 403  # apps cannot mint apps
    status, _ = await mk.rest(api, "GET", "/api/v1/me", None, app_tok)
    assert status == 401  # an app token is not a user token
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await api.http.ws_connect(api.base + "/ws", headers={"Authorization": f"Bearer {app_tok}"})
    assert refused.value.status == 401

    basic = base64.b64encode(f"{app['client_id']}:wrong".encode()).decode()
    async with api.http.post(
        api.base + "/api/v1/oauth/token",
        data="grant_type=client_credentials",
        headers={
            "Authorization": f"Basic {basic}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    ) as resp:
        assert resp.status == 401
    status, out = await mk.rest(
        api, "POST", "/api/v1/oauth/token",
        {"grant_type": "client_credentials", "client_id": app["client_id"],
         "client_secret": app["client_secret"], "scope": "hooks:write"},
    )  # fmt: skip
    assert status == 400
    status, _ = await mk.rest(api, "DELETE", f"/api/v1/vendor/apps/{app['client_id']}", None,
                              seller_b.access_token)  # fmt: skip
    assert status == 404
    status, _ = await mk.rest(api, "DELETE", f"/api/v1/vendor/apps/{app['client_id']}", None,
                              seller_a.access_token)  # fmt: skip
    assert status == 204
    status, out = await mk.rest(api, "GET", "/api/v1/vendor/listings", None, app_tok)
    assert status == 401


async def test_bad_vendor_input_is_a_typed_4xx(api: Api, settings: Settings) -> None:
    seller, _ = await mk.vendor(api, mk.spot(settings, 13), "typed")
    tok = seller.access_token
    item = await mk.listing(api, tok)
    cases = [
        ("POST", "/api/v1/vendor/listings", {"title": "", "category": "x", "price": 1}),
        ("POST", "/api/v1/vendor/listings", {"title": "x", "category": "x", "price": -1}),
        ("POST", "/api/v1/vendor/listings", {"title": "x", "category": "x", "price": 1,
                                             "currency": "dollars"}),
        ("PATCH", f"/api/v1/vendor/listings/{item['id']}", {}),
        ("POST", f"/api/v1/vendor/listings/{item['id']}/stock", {"delta": 1, "set": 2}),
        ("POST", f"/api/v1/vendor/listings/{item['id']}/stock", {}),
        ("POST", "/api/v1/vendors", {"name": "again", "lat": 91, "lng": 0, "category": "x"}),
    ]  # fmt: skip
    for method, path, body in cases:
        status, out = await mk.rest(api, method, path, body, tok)
        assert status == 400 and out["error"]["code"] == "bad_request", (path, body, out)
    status, out = await mk.rest(api, "GET", "/api/v1/vendor/orders?limit=0", None, tok)
    assert status == 400
    status, out = await mk.rest(api, "GET", "/api/v1/vendor/orders?cursor=zzz", None, tok)
    assert status == 400
    status, out = await mk.rest(api, "POST", "/api/v1/vendor/orders/x.y/ship", None, tok)
    assert status == 404
    body = {"name": "again", "lat": 1, "lng": 1, "category": "x"}
    status, out = await mk.rest(api, "POST", "/api/v1/vendors", body, tok)
    assert status == 409
    key = {"Idempotency-Key": uuid.uuid4().hex}
    path = f"/api/v1/vendor/listings/{item['id']}/stock"
    first = await mk.rest(api, "POST", path, {"delta": 5}, tok, key)
    second = await mk.rest(api, "POST", path, {"delta": 5}, tok, key)
    assert first == second and first[1]["listing"]["stock"] == 15
    buyer = await api.signup("typed-buyer")
    ws = await api.connect(buyer)
    for op, data in (
        ("cart.add", {"listing_id": item["id"], "qty": 0}),
        ("checkout", {"payment": {"provider": "sandbox", "card": "1234"}}),
        ("checkout", {"payment": {"provider": "paypal"}}),
        ("checkout", {"payment": mk.APPROVE}),  # empty cart
        ("listings.nearby", {"lat": 100, "lng": 0}),
    ):
        reply = await ws.request(op, data, key=uuid.uuid4().hex)
        assert reply["error"]["code"] == "bad_request", (op, reply)
    reply = await ws.request("cart.add", {"listing_id": item["id"]})
    assert reply["error"]["code"] == "bad_request"  # no idempotency key
    await ws.close()


async def test_hostile_client_credentials_are_a_typed_401(api: Api, settings: Settings) -> None:
    """Rule 5: undecodable credentials are refused as ``unauthorized``, never an internal error."""
    seller, _ = await mk.vendor(api, mk.spot(settings, 14), "hostile-creds")
    token_url = api.base + "/api/v1/oauth/token"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for auth in ("Basic é", "Basic \u00ff\u00fe", "Basic ////", "Bearer é.é.é"):
        async with api.http.post(
            token_url, data="grant_type=client_credentials", headers={**form, "Authorization": auth}
        ) as resp:
            out = await resp.json()
            assert resp.status == 401 and out["error"]["code"] == "unauthorized", (auth, out)
    for body in (
        {"grant_type": "client_credentials", "client_id": "app_x", "client_secret": "\ud800"},
        {"grant_type": "client_credentials", "client_id": "app_\u0000", "client_secret": "s"},
    ):
        status, out = await mk.rest(api, "POST", "/api/v1/oauth/token", body)
        assert status in (400, 401) and out["error"]["code"] != "unavailable", (body, out)
    async with api.http.post(
        token_url, data="grant_type=client_credentials&client_id=a%00&client_secret=b", headers=form
    ) as resp:
        assert resp.status == 401
    for auth in ("Bearer é", "Bearer \u00ff.x.y"):
        async with api.http.get(
            api.base + "/api/v1/vendor/listings", headers={"Authorization": auth}
        ) as resp:
            assert resp.status == 401, auth
    status, out = await mk.rest(
        api, "DELETE", "/api/v1/vendor/apps/app_%00", None, seller.access_token
    )
    assert status == 404, out


async def test_a_disabled_vendor_owner_disables_its_apps(api: Api, settings: Settings) -> None:
    seller, _ = await mk.vendor(api, mk.spot(settings, 15), "banned-owner")
    status, app = await mk.rest(api, "POST", "/api/v1/vendor/apps", {"name": "pos"},
                                seller.access_token)  # fmt: skip
    assert status == 201
    creds = {"grant_type": "client_credentials", "client_id": app["client_id"],
             "client_secret": app["client_secret"]}  # fmt: skip
    status, token = await mk.rest(api, "POST", "/api/v1/oauth/token", creds)
    assert status == 200
    app_tok = token["access_token"]
    status, _ = await mk.rest(api, "GET", "/api/v1/vendor/listings", None, app_tok)
    assert status == 200
    conn = await mk.db(settings)
    try:
        await conn.execute("UPDATE users SET disabled_at = now() WHERE id = $1", seller.id)
    finally:
        await conn.close()
    status, out = await mk.rest(api, "GET", "/api/v1/vendor/listings", None, app_tok)
    assert status == 401 and out["error"]["code"] == "unauthorized", out  # the minted token
    status, out = await mk.rest(api, "POST", "/api/v1/oauth/token", creds)
    assert status == 401 and out["error"]["code"] == "unauthorized", out  # no new token
