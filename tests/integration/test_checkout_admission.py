"""Checkout admission (docs/marketplace.md, "Overload"): past ``checkout_max_in_flight``
checkouts at once a gateway answers ``unavailable`` at once, having done nothing, and the same
key succeeds when retried."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from cluster.config import Settings
from gateway.app import build_app
from tests.integration import market_kit as mk
from tests.integration.client import Api

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def narrow(settings: Settings) -> AsyncIterator[TestServer]:
    """A gateway that runs one checkout at a time."""
    one = settings.model_copy(update={"checkout_max_in_flight": 1})
    srv = TestServer(build_app(one), host="127.0.0.1", port=0)
    await srv.start_server()
    yield srv
    await srv.close()


async def test_checkouts_past_the_limit_are_refused_untouched_and_retry_fine(
    narrow: TestServer, http: ClientSession, settings: Settings
) -> None:
    api = Api(str(narrow.make_url("")), http)
    where = mk.spot(settings, 71)
    seller, _ = await mk.vendor(api, where, "admission")
    item = await mk.listing(api, seller.access_token, stock=100)
    buyers = []
    for i in range(8):
        user = await api.signup(f"adm{i}")
        ws = await api.connect(user)
        await ws.ok("locate", {"lat": where[0], "lng": where[1]})
        await ws.mutate("cart.add", {"listing_id": item["id"], "qty": 1})
        buyers.append(ws)
    keys = [uuid.uuid4().hex for _ in buyers]

    async def checkout(i: int) -> dict[str, Any]:
        return await buyers[i].request("checkout", {"payment": mk.APPROVE}, key=keys[i], timeout=60)

    replies = await asyncio.gather(*(checkout(i) for i in range(len(buyers))))
    refused = [i for i, r in enumerate(replies) if not r.get("ok")]
    assert refused, "eight at once through a gateway that runs one: some must be refused"
    for i in refused:
        error = replies[i]["error"]
        assert error["code"] == "unavailable" and error["details"]["retry_after_s"] == 1, error
        cart = await buyers[i].ok("cart.get", {})
        assert [line["qty"] for line in cart["items"]] == [1]  # nothing was touched
    conn = await mk.db(settings)
    try:
        groups = await conn.fetchval(
            "SELECT count(*) FROM order_groups WHERE idem_key = ANY($1::text[])",
            [keys[i] for i in refused],
        )
    finally:
        await conn.close()
    assert groups == 0  # refused before the checkout's first write
    for i in refused:  # one at a time, each with its own key again: every one goes through
        reply = await checkout(i)
        assert reply["ok"], reply
    assert await mk.stock_of(settings, item["id"]) == 100 - len(buyers)
    for ws in buyers:
        await ws.close()
