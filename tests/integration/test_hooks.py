"""REST hooks end to end: a two-vendor checkout, signed deliveries to a local receiver, retries,
410 unsubscribes, dead letters and replay."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from standardwebhooks.webhooks import Webhook
from yarl import URL

from cluster.config import Settings
from models.errors import BadRequest
from services.hooks import check_target
from store import hooks_store
from store.db import _init_connection
from tests.integration import market_kit as mk
from tests.integration.client import Api

pytestmark = pytest.mark.integration


class Receiver:
    """A local HTTP receiver; each path answers from a script of statuses (the last repeats)."""

    def __init__(self) -> None:
        self.script: dict[str, list[int]] = {}
        self.got: dict[str, list[tuple[dict[str, str], str]]] = defaultdict(list)
        self.release = asyncio.Event()  # "/slow" answers only once this is set
        self.waiting = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["name"]
        self.got[path].append((dict(request.headers), await request.text()))
        if path == "slow":
            self.waiting += 1
            try:
                await self.release.wait()
            finally:
                self.waiting -= 1
        if path == "endless":  # 200, then a body that never ends
            resp = web.StreamResponse(status=200)
            await resp.prepare(request)
            with contextlib.suppress(ConnectionError, RuntimeError):
                for _ in range(4096):
                    await resp.write(b"x" * 65536)
            return resp
        if path == "redirect":
            raise web.HTTPTemporaryRedirect("/sink")
        script = self.script.get(path, [200])
        status = script[min(len(self.got[path]), len(script)) - 1]
        return web.Response(status=status)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/{name}", rec.handle)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    yield rec, str(server.make_url("")).rstrip("/")
    await server.close()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def fast_gets_through(conn: Any, rec: Receiver, fast_vendor_id: str) -> None:
    """Once a slow target holds a request, a fast vendor's hook is still delivered."""

    async def slow_in_flight() -> bool:
        return rec.waiting >= 1

    await eventually(slow_in_flight)
    await hooks_store.enqueue(conn, fast_vendor_id, "order.created", {"i": 0})

    async def fast_done() -> bool:
        return bool(rec.got["fast"])

    await eventually(fast_done)


async def subscribe(api: Api, token: str, url: str, events: list[str]) -> dict[str, Any]:
    status, hook = await mk.rest(
        api, "POST", "/api/v1/vendor/hooks", {"target_url": url, "events": events}, token
    )
    assert status == 201, hook
    assert hook["secret"].startswith("whsec_")
    return dict(hook)


def verified(secret: str, delivery: tuple[dict[str, str], str]) -> dict[str, Any]:
    headers, body = delivery
    return dict(Webhook(secret).verify(body, headers))


async def test_two_vendor_checkout_signed_hooks_retry_and_gone(
    api: Api, settings: Settings, receiver: tuple[Receiver, str]
) -> None:
    rec, base = receiver
    rec.script = {"b": [500, 500, 200], "gone": [410]}
    here = mk.spot(settings, 4)
    there = mk.neighbour(settings, here)
    seller_a, vendor_a = await mk.vendor(api, here, "hook-a")
    seller_b, vendor_b = await mk.vendor(api, there, "hook-b")
    assert vendor_a["cell"] != vendor_b["cell"]
    hook_a = await subscribe(api, seller_a.access_token, f"{base}/a", ["order.created"])
    hook_b = await subscribe(api, seller_b.access_token, f"{base}/b", ["order.created"])
    hook_gone = await subscribe(api, seller_b.access_token, f"{base}/gone", ["order.updated"])
    item_a = await mk.listing(api, seller_a.access_token, title="Jam", price=300)
    item_b = await mk.listing(api, seller_b.access_token, title="Honey", price=800)

    buyer = await api.signup("two-vendors")
    ws = await api.connect(buyer)
    await ws.mutate("cart.add", {"listing_id": item_a["id"], "qty": 2})
    await ws.mutate("cart.add", {"listing_id": item_b["id"], "qty": 1})
    cart = await ws.ok("cart.get")
    assert cart["totals"] == {"usd": 1400}
    out = await ws.ok("checkout", {"payment": mk.APPROVE}, key=uuid.uuid4().hex)
    orders = {o["vendor_id"]: o for o in out["orders"]}
    assert set(orders) == {vendor_a["id"], vendor_b["id"]}
    assert len({o["group_id"] for o in orders.values()}) == 1
    assert out["payment"]["amount"] == 1400 and out["payment"]["status"] == "captured"

    async def delivered() -> bool:
        return len(rec.got["a"]) >= 1 and len(rec.got["b"]) >= 3 and len(rec.got["gone"]) >= 1

    await eventually(delivered)
    got_a = verified(hook_a["secret"], rec.got["a"][0])
    assert got_a["type"] == "order.created"
    assert got_a["data"]["id"] == orders[vendor_a["id"]]["id"]
    b_bodies = [verified(hook_b["secret"], d) for d in rec.got["b"]]
    assert {b["data"]["id"] for b in b_bodies} == {orders[vendor_b["id"]]["id"]}
    assert len({d[0]["webhook-id"] for d in rec.got["b"]}) == 1  # one message, retried
    with pytest.raises(Exception, match="signature"):
        Webhook(hook_a["secret"]).verify(rec.got["b"][0][1], rec.got["b"][0][0])

    async def unsubscribed() -> bool:
        status, hooks = await mk.rest(api, "GET", "/api/v1/vendor/hooks", None,
                                      seller_b.access_token)  # fmt: skip
        gone = next(h for h in hooks["items"] if h["id"] == hook_gone["id"])
        return status == 200 and gone["active"] is False

    await eventually(unsubscribed)
    path = f"/api/v1/vendor/hooks/{hook_b['id']}/deliveries?status=delivered"
    status, deliveries = await mk.rest(api, "GET", path, None, seller_b.access_token)
    assert status == 200 and deliveries["items"][0]["attempts"] == 3
    await ws.close()


async def test_dead_letter_and_replay(
    api: Api, settings: Settings, receiver: tuple[Receiver, str]
) -> None:
    rec, base = receiver
    rec.script = {"down": [500]}
    seller, _ = await mk.vendor(api, mk.spot(settings, 5), "dead-letter")
    tok = seller.access_token
    hook = await subscribe(api, tok, f"{base}/down", ["listing.low_stock"])
    item = await mk.listing(api, tok, stock=10)
    status, _ = await mk.rest(api, "POST", f"/api/v1/vendor/listings/{item['id']}/stock",
                              {"set": 1}, tok)  # fmt: skip
    assert status == 200
    dead_path = f"/api/v1/vendor/hooks/{hook['id']}/deliveries?status=dead"

    async def dead() -> bool:
        _, body = await mk.rest(api, "GET", dead_path, None, tok)
        return len(body["items"]) == 1

    await eventually(dead)
    assert len(rec.got["down"]) == settings.hook_max_attempts
    rec.script["down"] = [200]
    status, body = await mk.rest(api, "POST", f"/api/v1/vendor/hooks/{hook['id']}/replay",
                                 {}, tok)  # fmt: skip
    assert status == 200 and body["replayed"] == 1

    async def redelivered() -> bool:
        return len(rec.got["down"]) == settings.hook_max_attempts + 1

    await eventually(redelivered)
    payload = verified(hook["secret"], rec.got["down"][-1])
    assert payload["type"] == "listing.low_stock" and payload["data"]["stock"] == 1


async def test_bad_hook_requests_are_refused(api: Api, settings: Settings) -> None:
    seller, _ = await mk.vendor(api, mk.spot(settings, 6), "bad-hooks")
    tok = seller.access_token
    for body in (
        {"target_url": "ftp://example.com/x", "events": ["order.created"]},
        {"target_url": "http://example.com/x", "events": ["order.exploded"]},
        {"target_url": "http://example.com/x", "events": []},
        {"target_url": "http://example.com/x"},
    ):
        status, out = await mk.rest(api, "POST", "/api/v1/vendor/hooks", body, tok)
        assert status == 400 and out["error"]["code"] == "bad_request", body


async def test_slow_hostile_and_redirecting_targets(
    api: Api, settings: Settings, receiver: tuple[Receiver, str]
) -> None:
    """A slow target holds only its own deliveries; an endless body is not read; a redirect is
    not followed."""
    rec, base = receiver
    slow_seller, slow_vendor = await mk.vendor(api, mk.spot(settings, 7), "slow-target")
    fast_seller, fast_vendor = await mk.vendor(api, mk.spot(settings, 8), "fast-target")
    await subscribe(api, slow_seller.access_token, f"{base}/slow", ["order.created"])
    fast_tok = fast_seller.access_token
    hooks = [await subscribe(api, fast_tok, f"{base}/{name}", ["order.created"])
             for name in ("fast", "endless", "redirect")]  # fmt: skip
    conn = await mk.db(settings)
    await _init_connection(conn)  # jsonb as Python objects, like the app's pool
    try:
        for i in range(8):
            await hooks_store.enqueue(conn, slow_vendor["id"], "order.created", {"i": i})

        await fast_gets_through(conn, rec, fast_vendor["id"])
    finally:
        rec.release.set()
        await conn.close()

    async def settled(hook: dict[str, Any]) -> dict[str, Any] | None:
        path = f"/api/v1/vendor/hooks/{hook['id']}/deliveries"
        _, body = await mk.rest(api, "GET", path, None, fast_tok)
        items = [d for d in body["items"] if d["attempts"] > 0]
        return items[0] if items else None

    async def all_settled() -> bool:
        return all([await settled(h) for h in hooks[1:]])

    await eventually(all_settled)
    endless, redirect = [await settled(h) for h in hooks[1:]]
    assert endless and endless["status"] == "delivered" and endless["last_status"] == 200
    assert redirect and redirect["last_status"] == 307 and redirect["status"] != "delivered"
    assert not rec.got["sink"]


HOSTILE_TARGETS = [
    "http://exa\x00mple.com/x",  # NUL
    "http://example.com/\x00",
    "http://example.com/\ud800",  # a lone surrogate
    "http://exa\udfffmple.com/",
    "http://example.com/a\x07b",  # a control character
    "http://example.com/a\x7fb",
    "http://exam ple.com/",  # a space inside
    "http://example.com/a\u2028b",  # a line separator
    "http://[::1/",  # an unclosed IPv6 bracket
    "http://a..b/",  # an empty label: IDNA refuses it
    "http://" + "a" * 70 + ".com/",  # a label too long for IDNA
]
HOSTILE_IDS = ["%00", "a%00b", "%ED%A0%80", "%C0%80", "%07", "a%20b", "%E2%80%A8", "x" * 65]


async def test_hostile_text_in_hook_requests_is_a_typed_4xx(api: Api, settings: Settings) -> None:
    """NUL, lone surrogates, control characters and malformed hosts in ``target_url``, hook ids
    and ``delivery_ids`` are typed 400/404s: nothing reaches Postgres or the resolver to fail
    there as a 503 (the resolver check, off in tests, is run directly too)."""
    seller, _ = await mk.vendor(api, mk.spot(settings, 43), "hostile-hooks")
    tok = seller.access_token
    for url in HOSTILE_TARGETS:
        body = {"target_url": url, "events": ["order.created"]}
        status, out = await mk.rest(api, "POST", "/api/v1/vendor/hooks", body, tok)
        assert status == 400 and out["error"]["code"] == "bad_request", (url, out)
        with pytest.raises(BadRequest):
            await check_target(url, allow_private=False)
    hook = await subscribe(api, tok, "http://127.0.0.1:9/never", ["order.created"])
    base = "/api/v1/vendor/hooks/"
    for raw in HOSTILE_IDS:
        for method, path in (
            ("DELETE", f"{base}{raw}"),
            ("GET", f"{base}{raw}/deliveries"),
            ("POST", f"{base}{raw}/replay"),
        ):
            url = URL(api.base + path, encoded=True)
            async with api.http.request(
                method, url, headers={"Authorization": f"Bearer {tok}"}
            ) as resp:
                out = await resp.json()
                assert resp.status == 404 and out["error"]["code"] == "not_found", (path, out)
    replay = f"{base}{hook['id']}/replay"
    for bad in ("a\x00b", "\ud800", "msg_\x07", "a b", "\u2028", "x" * 65, ""):
        status, out = await mk.rest(api, "POST", replay, {"delivery_ids": [bad]}, tok)
        assert status == 400 and out["error"]["code"] == "bad_request", (repr(bad), out)
    status, out = await mk.rest(api, "POST", replay, {"delivery_ids": ["msg_unknown"]}, tok)
    assert status == 200 and out == {"replayed": 0}


async def test_slow_backlogs_never_fill_a_gateway_so_a_fast_hook_is_not_starved(
    api: Api, settings: Settings, receiver: tuple[Receiver, str]
) -> None:
    """Three slow hooks with 40 due deliveries each (more than every gateway's 32 slots
    together), held by the target until the test releases them: a claim takes at most 4 of one
    hook, so a fast hook's delivery queued behind them all arrives while every slow request is
    still held (none has finished, not even by timing out)."""
    rec, base = receiver
    fast_seller, fast_vendor = await mk.vendor(api, mk.spot(settings, 45), "unstarved-fast")
    await subscribe(api, fast_seller.access_token, f"{base}/fast", ["order.created"])
    slow_vendors = []
    for i in range(3):
        seller, vendor = await mk.vendor(api, mk.spot(settings, 46 + i), f"backlog-{i}")
        await subscribe(api, seller.access_token, f"{base}/slow", ["order.created"])
        slow_vendors.append(vendor["id"])
    conn = await mk.db(settings)
    await _init_connection(conn)
    try:
        for vendor_id in slow_vendors:
            async with conn.transaction():
                for i in range(40):
                    await hooks_store.enqueue(conn, vendor_id, "order.created", {"i": i})

        await fast_gets_through(conn, rec, fast_vendor["id"])
        finished = await conn.fetchval(
            "SELECT count(*) FROM hook_deliveries d JOIN hooks h ON h.id = d.hook_id"
            " WHERE h.vendor_id = ANY($1::text[]) AND d.attempts > 0",
            slow_vendors,
        )
        held = rec.waiting
    finally:
        rec.release.set()
        await conn.close()
    assert finished == 0  # the fast hook waited for no slow attempt to end
    assert 1 <= held < 3 * 40
