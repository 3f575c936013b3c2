"""Stock moved by sales reaches followers conflated (``HL_LISTING_UPDATE_MS``): fewer
``listing.updated`` events than sales, the last one carrying the final stock; a vendor's own
change still goes out at once, and nothing older overtakes it."""

from __future__ import annotations

import asyncio
import time

import pytest

from cluster.config import Settings
from tests.integration import market_kit as mk
from tests.integration.client import Api, Ws

pytestmark = pytest.mark.integration


async def _updates(ws: Ws, listing_id: str, quiet_s: float) -> list[dict[str, object]]:
    """``listing.updated`` of ``listing_id`` until none came for ``quiet_s``."""
    out: list[dict[str, object]] = []
    while True:
        try:
            event = await ws.next_event("listing.updated", timeout=quiet_s)
        except TimeoutError:
            return out
        listing = event["data"]["listing"]
        if listing["id"] == listing_id:
            out.append(listing)


async def test_a_sale_burst_is_conflated_to_the_latest_state(
    api: Api, settings: Settings
) -> None:
    assert settings.listing_update_ms > 0
    where = mk.spot(settings, 60)
    seller, _ = await mk.vendor(api, where, "flash")
    item = await mk.listing(api, seller.access_token, title="Hot buns", stock=40, price=100)
    watcher = await api.connect(await api.signup("flash-watcher"))
    await watcher.ok("locate", {"lat": where[0], "lng": where[1]})
    buyers = [await api.connect(await api.signup(f"flash-buyer{i}")) for i in range(20)]
    replies = await asyncio.gather(*(mk.buy(ws, item["id"], 1, mk.APPROVE) for ws in buyers))
    assert all(r["ok"] for r in replies), [r for r in replies if not r["ok"]][:1]
    seen = await _updates(watcher, item["id"], quiet_s=1.5)
    assert seen, "no listing.updated at all"
    assert len(seen) < 20, f"{len(seen)} events for 20 sales: not conflated"
    assert seen[-1]["stock"] == 20 == await mk.stock_of(settings, item["id"])
    stocks = [int(str(x["stock"])) for x in seen]
    assert stocks == sorted(stocks, reverse=True), "an older state came after a newer one"

    started = time.monotonic()
    path = f"/api/v1/vendor/listings/{item['id']}/stock"
    status, _ = await mk.rest(api, "POST", path, {"set": 99}, seller.access_token)
    assert status == 200
    vendor_change = await _updates(watcher, item["id"], quiet_s=1.0)
    assert [x["stock"] for x in vendor_change] == [99]  # at once, and nothing stale after it
    assert time.monotonic() - started < 1.0 + settings.listing_update_ms / 1000 + 0.5
    for ws in (watcher, *buyers):
        await ws.close()
