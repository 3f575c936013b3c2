"""Web Push (issue 15): subscriptions, RFC 8291 payloads and VAPID checked by a push-service
stand-in on loopback that decrypts with the subscription's private key; 410 removes a device,
a 5xx is retried; direct messages are pushed only to a recipient who is offline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from cluster.config import Settings
from tests.integration import market_kit as mk
from tests.integration.client import Api, User
from tests.integration.notify_kit import Device, MailSink, PushService, eventually

pytestmark = pytest.mark.integration

SUBS = "/api/v1/me/push-subscriptions"


@pytest.fixture
async def push(api: Api) -> AsyncIterator[PushService]:
    service = PushService()
    await service.start()
    status, body = await api.get("/api/v1/push/vapid-public-key")
    assert status == 200 and len(body["key"]) == 87  # a base64url P-256 point
    service.vapid_key = body["key"]
    try:
        yield service
    finally:
        await service.close()


async def _device(api: Api, push: PushService, user: User) -> Device:
    dev = push.device()
    status, body = await api.post(SUBS, dev.subscription(), user.access_token)
    assert status == 201, body
    return dev


async def _rows(settings: Settings, user_id: str) -> list[asyncpg.Record]:
    conn = await mk.db(settings)
    try:
        return await conn.fetch(
            "SELECT kind, status, attempts, last_error FROM notification_deliveries"
            " WHERE user_id = $1 AND channel = 'push' ORDER BY id",
            user_id,
        )
    finally:
        await conn.close()


async def _follow(api: Api, target: User) -> User:
    fan = await api.signup("pushfan")
    ws = await api.connect(fan)
    await ws.mutate("user.follow", {"user_id": target.id})
    await ws.close()
    return fan


async def test_a_follow_is_pushed_encrypted_to_every_device(
    api: Api, push: PushService, settings: Settings
) -> None:
    user = await api.signup("pushed")
    phone, laptop = await _device(api, push, user), await _device(api, push, user)
    status, _ = await api.post(SUBS, phone.subscription(), user.access_token)  # again: one row
    assert status == 201
    fan = await _follow(api, user)

    async def both() -> bool:
        return bool(phone.received and laptop.received)

    await eventually(both)
    message: dict[str, Any] = phone.received[0]
    assert message["kind"] == "user.followed" and "pushfan started following you" in message["body"]
    assert laptop.received[0]["id"] == message["id"]  # one delivery, two devices
    assert phone.headers[0]["TTL"] == "86400" and "Topic" in phone.headers[0]
    assert push.rejected == []

    async def settled() -> bool:  # the batch is settled after its sends
        return [r["status"] for r in await _rows(settings, user.id)] == ["sent"]

    await eventually(settled)
    assert [(r["status"], r["attempts"]) for r in await _rows(settings, user.id)] == [("sent", 1)]
    assert fan.id
    # /metrics: what this gateway settled, by channel and outcome, and the outbox's queue
    async with api.http.get(api.base + "/metrics") as resp:
        lines = (await resp.text()).splitlines()
    sent = next(x for x in lines if x.startswith("hl_notify_deliveries_total{"))
    assert any('channel="push"' in x and 'outcome="sent"' in x for x in lines), sent
    assert any(x.startswith("hl_notify_queued_email ") for x in lines)
    assert any(x.startswith("hl_notify_queued_push ") for x in lines)


async def test_gone_devices_are_removed_and_failures_retried(
    api: Api, push: PushService, settings: Settings
) -> None:
    user = await api.signup("flaky")
    gone, flaky = await _device(api, push, user), await _device(api, push, user)
    gone.answers = [410]
    flaky.answers = [503]
    await _follow(api, user)

    async def sent() -> bool:
        rows = await _rows(settings, user.id)
        return bool(rows) and rows[0]["status"] == "sent"

    await eventually(sent)
    [row] = await _rows(settings, user.id)
    assert row["attempts"] == 2 and len(flaky.received) == 1 and gone.received == []
    conn = await mk.db(settings)
    try:
        left = await conn.fetch(
            "SELECT endpoint FROM push_subscriptions WHERE user_id = $1", user.id
        )
    finally:
        await conn.close()
    assert [r["endpoint"] for r in left] == [flaky.endpoint]

    # every device gone: the delivery is dead, nothing left to push to
    flaky.answers = [410]
    await _follow(api, user)

    async def two_settled() -> bool:
        rows = await _rows(settings, user.id)
        return len(rows) == 2 and rows[1]["status"] != "pending"

    await eventually(two_settled)
    assert (await _rows(settings, user.id))[1]["status"] == "dead"
    # no device left: the next follow is in the centre, and no push delivery is made for it
    # (the trigger sees no subscription: a row that could never be delivered costs nothing)
    await _follow(api, user)
    conn = await mk.db(settings)
    try:
        follows = await conn.fetchval(
            "SELECT count(*) FROM notifications WHERE user_id = $1 AND kind = 'user.followed'",
            user.id,
        )
    finally:
        await conn.close()
    assert follows == 3  # the follow committed (and its notification with it) before its reply
    assert len(await _rows(settings, user.id)) == 2


async def test_a_direct_message_is_pushed_only_when_the_recipient_is_offline(
    api: Api, push: PushService, settings: Settings
) -> None:
    alice, bob = await api.signup("alice"), await api.signup("bob")
    dev = await _device(api, push, bob)
    a = await api.connect(alice)
    room = (await a.ok("chat.open", {"user_id": bob.id}))["room"]
    b = await api.connect(bob)
    await a.mutate("chat.send", {"room_id": room["id"], "text": "are you there?"})
    await b.next_event("chat.message")

    async def decided(n: int) -> list[asyncpg.Record] | None:
        rows = [r for r in await _rows(settings, bob.id) if r["kind"] == "chat.message"]
        return rows if len(rows) >= n and rows[n - 1]["status"] != "pending" else None

    rows = await eventually(lambda: decided(1))
    assert (rows[0]["status"], rows[0]["last_error"]) == ("skipped", "online")
    await b.close()

    async def offline() -> bool:  # the socket's end has reached the presence set
        client = aioredis.Redis.from_url(str(settings.redis_url))
        try:
            return not await client.zcard(f"hl:pr:user:{bob.id}")
        finally:
            await client.aclose()

    await eventually(offline)
    await a.mutate("chat.send", {"room_id": room["id"], "text": "ping"})
    rows = await eventually(lambda: decided(2))
    assert rows[1]["status"] == "sent", rows
    pushed = [m for m in dev.received if m["kind"] == "chat.message"]
    assert pushed and pushed[-1]["body"] == "alice: ping"
    # the sender's own copy of the message is never a notification
    assert all(r["kind"] != "chat.message" for r in await _rows(settings, alice.id))
    await a.close()


async def test_a_paid_order_is_emailed_and_pushed_once(
    api: Api, push: PushService, settings: Settings, mail_sink: MailSink
) -> None:
    """A checkout's paid step reaches the buyer once by email and once on their device (the
    trigger's channels, migration 0034: both open in this deployment), each one delivery row
    settled ``sent``; nothing goes out twice."""
    seller, _ = await mk.vendor(api, mk.spot(settings, 142), "once-shop")
    item = await mk.listing(api, seller.access_token, title="Tart", stock=3, price=500)
    buyer = await api.signup("once-buyer")
    phone = await _device(api, push, buyer)
    ws = await api.connect(buyer)
    try:
        reply = await mk.buy(ws, item["id"], 1, mk.APPROVE)
    finally:
        await ws.close()
    assert reply["ok"], reply
    subject = "Your order was updated"
    await mail_sink.wait_for(buyer.email, subject=subject)

    async def settled() -> list[tuple[str, str]]:
        rows = await mk.fetch(
            settings,
            "SELECT channel, status FROM notification_deliveries"
            " WHERE user_id = $1 AND kind = 'order.status' ORDER BY channel",
            buyer.id,
        )
        done = [(r["channel"], r["status"]) for r in rows]
        return done if all(status != "pending" for _, status in done) and phone.received else []

    assert await eventually(settled) == [("email", "sent"), ("push", "sent")]
    await asyncio.sleep(0.5)  # a second send would be here by now
    assert len([m for m in mail_sink.to(buyer.email) if m["Subject"] == subject]) == 1
    assert [m["kind"] for m in phone.received] == ["order.status"]


async def test_subscriptions_refuse_bad_input_and_delete_only_ones_own(
    api: Api, push: PushService
) -> None:
    user, other = await api.signup("subs"), await api.signup("other")
    dev = push.device()
    good = dev.subscription()
    for bad in (
        {**good, "endpoint": "ftp://example.com/x"},
        {**good, "keys": {"p256dh": "A" * 20, "auth": good["keys"]["auth"]}},
        {**good, "keys": {"p256dh": good["keys"]["p256dh"], "auth": "!!!!" * 5}},
        {"endpoint": good["endpoint"]},
    ):
        status, err = await api.post(SUBS, bad, user.access_token)
        assert status == 400 and err["error"]["code"] == "bad_request", (bad, err)
    assert (await api.post(SUBS, good))[0] == 401
    status, _ = await api.post(SUBS, good, user.access_token)
    assert status == 201
    status, _ = await mk.rest(api, "DELETE", SUBS, {"endpoint": dev.endpoint}, other.access_token)
    assert status == 404
    status, _ = await mk.rest(api, "DELETE", SUBS, {"endpoint": dev.endpoint}, user.access_token)
    assert status == 204
