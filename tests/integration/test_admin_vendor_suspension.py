"""A suspended vendor's listings, over real sockets, REST, the control actor, owner shards,
Postgres and Redis: they leave nearby browsing and listing.get, the neighbourhood hears
``listing.updated`` (inactive), cart additions and checkout are refused with a typed error,
payouts are blocked; when the suspension ends everything comes back, live. The 403 of a
suspended user names the suspension to appeal."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from cluster.config import Settings
from services.payout_holds import payout_blocked
from tests.integration import market_kit as mk
from tests.integration.admin_kit import staff
from tests.integration.client import Api, Ws

pytestmark = pytest.mark.integration


async def _listing_event(ws: Ws, listing_id: str, active: bool) -> dict[str, Any]:
    while True:
        event = await ws.next_event("listing.updated", timeout=10)
        listing = event["data"]["listing"]
        if listing["id"] == listing_id and listing["active"] is active:
            assert event["stream"].startswith("feed:")
            return dict(listing)


async def _nearby_ids(ws: Ws, where: tuple[float, float]) -> list[str]:
    data = await ws.ok("listings.nearby", {"lat": where[0], "lng": where[1], "sort": "distance"})
    return [x["id"] for x in data["items"]]


async def _blocked(settings: Settings, vendor_id: str) -> list[dict[str, Any]]:
    conn = await mk.db(settings)
    try:
        return await payout_blocked(conn, vendor_id)
    finally:
        await conn.close()


async def test_a_suspended_vendors_listings_leave_reads_and_checkout_until_it_ends(
    api: Api, settings: Settings
) -> None:
    mod = await staff(api, settings, "moderator", "vendor-mod")
    where = mk.spot(settings, 90)
    seller, vendor = await mk.vendor(api, where, "shady")
    item = await mk.listing(api, seller.access_token, stock=5)
    other_seller, _ = await mk.vendor(api, mk.neighbour(settings, where), "honest")
    other = await mk.listing(api, other_seller.access_token, stock=5)
    buyer = await api.signup("vs-buyer")
    ws = await api.connect(buyer)
    await ws.ok("locate", {"lat": where[0], "lng": where[1]})
    await ws.mutate("cart.add", {"listing_id": item["id"], "qty": 1})
    assert item["id"] in await _nearby_ids(ws, where)
    seller_ws = await api.connect(seller)

    status, reply = await api.post(
        f"/api/v1/admin/users/{seller.id}/suspend", {"reason": "fake goods"},
        token=mod.access_token,
    )  # fmt: skip
    assert status == 200, reply
    action_id = reply["action_id"]
    hidden = await _listing_event(ws, item["id"], False)
    assert hidden["vendor_suspended"] is True
    await seller_ws.closed.wait()
    assert seller_ws.close_code == 4003
    status, err = await api.get("/api/v1/me", token=seller.access_token)
    assert status == 403 and err["error"]["details"]["action_id"] == action_id, err

    ids = await _nearby_ids(ws, where)
    assert item["id"] not in ids and other["id"] in ids
    reply = await ws.request("listing.get", {"listing_id": item["id"]})
    assert reply["error"]["code"] == "not_found", reply
    reply = await ws.request("cart.add", {"listing_id": item["id"], "qty": 1}, key="k1")
    assert reply["error"]["code"] == "conflict", reply
    assert reply["error"]["details"]["reason"] == "vendor_suspended"
    cart = await ws.ok("cart.get", {})
    assert [(x["listing_id"], x["listing"]["active"]) for x in cart["items"]] == [
        (item["id"], False)
    ]  # kept, shown inactive
    reply = await mk.buy(ws, other["id"], 1, mk.APPROVE)  # the cart holds both vendors' lines
    assert reply["error"]["code"] == "conflict", reply
    assert reply["error"]["details"]["reason"] == "vendor_suspended"
    assert reply["error"]["details"]["listing_id"] == item["id"]
    assert await mk.stock_of(settings, item["id"]) == 5
    assert await mk.stock_of(settings, other["id"]) == 5  # nothing reserved of the other
    assert {"reason": "vendor_suspended"} in await _blocked(settings, vendor["id"])

    status, reply = await api.post(
        f"/api/v1/admin/users/{seller.id}/unsuspend", {}, token=mod.access_token
    )
    assert status == 200, reply
    back = await _listing_event(ws, item["id"], True)
    assert "vendor_suspended" not in back
    assert item["id"] in await _nearby_ids(ws, where)
    assert (await ws.ok("listing.get", {"listing_id": item["id"]}))["listing"]["active"]
    reply = await ws.request("checkout", {"payment": mk.APPROVE}, key=uuid.uuid4().hex, timeout=60)
    assert reply["ok"], reply
    assert await mk.stock_of(settings, item["id"]) == 4
    assert await _blocked(settings, vendor["id"]) == []
    await ws.close()
