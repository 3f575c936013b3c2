"""Who hears of a listing's stock, and how often (docs/protocol.md, "listing.updated").

Stock moved by sales reaches the listing's watchers (``listing:<id>``) conflated
(``HL_LISTING_UPDATE_MS``): fewer ``listing.updated`` events than sales, the last one carrying
the final stock, newest last. Its neighbourhood (``feed:<cell>``) hears of a sale only when the
listing sells out or comes back in stock; a vendor's own change goes out at once on both, and
nothing older overtakes it."""

from __future__ import annotations

import asyncio
import time

import pytest

from cluster.config import Settings
from tests.integration import market_kit as mk
from tests.integration.client import Api, Ws

pytestmark = pytest.mark.integration


async def _updates(ws: Ws, listing_id: str, quiet_s: float) -> list[tuple[str, dict[str, object]]]:
    """(stream, listing) of every ``listing.updated`` of ``listing_id`` until none came for
    ``quiet_s``."""
    out: list[tuple[str, dict[str, object]]] = []
    while True:
        try:
            event = await ws.next_event("listing.updated", timeout=quiet_s)
        except TimeoutError:
            return out
        listing = event["data"]["listing"]
        if listing["id"] == listing_id:
            out.append((event["stream"], listing))


async def test_a_sale_burst_reaches_watchers_conflated_and_neighbours_at_sell_out(
    api: Api, settings: Settings
) -> None:
    assert settings.listing_update_ms > 0
    where = mk.spot(settings, 60)
    seller, _ = await mk.vendor(api, where, "flash")
    item = await mk.listing(api, seller.access_token, title="Hot buns", stock=40, price=100)
    feed, own = f"feed:{item['cell']}", f"listing:{item['id']}"
    watcher = await api.connect(await api.signup("flash-watcher"))
    await watcher.ok("locate", {"lat": where[0], "lng": where[1]})
    await watcher.ok("subscribe", {"stream": own})
    neighbour = await api.connect(await api.signup("flash-neighbour"))
    await neighbour.ok("locate", {"lat": where[0], "lng": where[1]})

    buyers = [await api.connect(await api.signup(f"flash-buyer{i}")) for i in range(20)]
    replies = await asyncio.gather(*(mk.buy(ws, item["id"], 1, mk.APPROVE) for ws in buyers))
    assert all(r["ok"] for r in replies), [r for r in replies if not r["ok"]][:1]
    seen = await _updates(watcher, item["id"], quiet_s=1.5)
    assert seen and {stream for stream, _ in seen} == {own}, seen[:3]
    assert len(seen) < 20, f"{len(seen)} events for 20 sales: not conflated"
    stocks = [int(str(x["stock"])) for _, x in seen]
    assert stocks[-1] == 20 == await mk.stock_of(settings, item["id"])
    assert stocks == sorted(stocks, reverse=True), "an older state came after a newer one"
    assert await _updates(neighbour, item["id"], quiet_s=0.2) == []  # still in stock

    # The last 20 units go: the neighbourhood hears that it sold out, once, with stock 0.
    more = [await api.connect(await api.signup(f"flash-late{i}")) for i in range(20)]
    replies = await asyncio.gather(*(mk.buy(ws, item["id"], 1, mk.APPROVE) for ws in more))
    assert all(r["ok"] for r in replies), [r for r in replies if not r["ok"]][:1]
    near = await _updates(neighbour, item["id"], quiet_s=1.5)
    assert [(s, x["stock"]) for s, x in near] == [(feed, 0)], near
    watched = await _updates(watcher, item["id"], quiet_s=0.2)
    assert watched[-1][1]["stock"] == 0 and {s for s, _ in watched} <= {own, feed}

    started = time.monotonic()
    path = f"/api/v1/vendor/listings/{item['id']}/stock"
    status, _ = await mk.rest(api, "POST", path, {"set": 99}, seller.access_token)
    assert status == 200
    for ws, streams in ((watcher, {own, feed}), (neighbour, {feed})):
        vendor_change = await _updates(ws, item["id"], quiet_s=1.0)
        # at once, on every stream the session follows, and nothing stale after it
        assert sorted(s for s, _ in vendor_change) == sorted(streams), vendor_change
        assert {x["stock"] for _, x in vendor_change} == {99}
    assert time.monotonic() - started < 2.0 + settings.listing_update_ms / 1000 + 0.5
    for ws in (watcher, neighbour, *buyers, *more):
        await ws.close()


async def test_watching_a_listing_needs_one_on_sale(api: Api, settings: Settings) -> None:
    seller, _ = await mk.vendor(api, mk.spot(settings, 61), "watched")
    item = await mk.listing(api, seller.access_token, title="Jam", stock=3, price=100)
    ws = await api.connect(await api.signup("watcher-of-jam"))
    for stream in ("listing:nope", f"listing:{item['cell']}.0000000000000000"):
        reply = await ws.request("subscribe", {"stream": stream})
        assert reply["error"]["code"] == "not_found", reply
    status, _ = await mk.rest(
        api, "DELETE", f"/api/v1/vendor/listings/{item['id']}", None, seller.access_token
    )
    assert status in (200, 204)
    reply = await ws.request("subscribe", {"stream": f"listing:{item['id']}"})
    assert reply["error"]["code"] == "not_found", reply
    await ws.close()
