"""What notifications cost (issue 15, migration 0020): the trigger makes a delivery row only
for a channel that can deliver it, one NOTIFY per transaction wakes the notifiers, a batch of
outcomes is settled in one statement, and the LISTEN connection comes back when lost."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from cluster.config import Settings
from models.notifications import kind_rows, open_channels
from services.container import open_notifier
from services.notifier import WAKE_CHANNEL
from store import notifications_store as st
from store.admin_store import inbox_event
from store.listen import Listener
from tests.integration import market_kit as mk
from tests.integration.client import Api
from tests.integration.notify_kit import MailSink

pytestmark = pytest.mark.integration


async def _channels(conn: asyncpg.Connection, user_id: str, ev: str, data: Any) -> list[str]:
    """Write one inbox event (committed) and the delivery channels it made."""
    async with conn.transaction():
        event = await inbox_event(conn, user_id, ev, data)
    source = f"{event.stream}@{event.offset}"
    rows = await conn.fetch(
        "SELECT channel FROM notification_deliveries WHERE source = $1 ORDER BY channel", source
    )
    return [r["channel"] for r in rows]


async def _set(conn: asyncpg.Connection, user_id: str, settings: str) -> None:
    await conn.execute(
        "INSERT INTO notification_settings (user_id, settings) VALUES ($1, $2::text::jsonb)"
        " ON CONFLICT (user_id) DO UPDATE SET settings = EXCLUDED.settings",
        user_id,
        settings,
    )


async def test_the_trigger_makes_only_deliverable_rows(api: Api, settings: Settings) -> None:
    user = await api.signup("costly")
    order = {"order": {"id": "o1", "status": "paid", "buyer_id": user.id}}
    follow = {"kind": "user.followed", "by": "someone"}
    conn = await mk.db(settings)
    try:
        # defaults, no device: an order's status by email only; a follow (push by default) none
        assert await _channels(conn, user.id, "order.updated", order) == ["email"]
        assert await _channels(conn, user.id, "notification", follow) == []
        await conn.execute(
            "INSERT INTO push_subscriptions (endpoint, user_id, p256dh, auth)"
            " VALUES ($1, $2, 'k', 'a')",
            f"https://push.invalid/{user.id}",
            user.id,
        )
        assert await _channels(conn, user.id, "order.updated", order) == ["email", "push"]
        assert await _channels(conn, user.id, "notification", follow) == ["push"]
        # moderation.* falls under "moderation": email on, push off by default
        moderation = {"kind": "moderation.removed", "reason": "spam"}
        assert await _channels(conn, user.id, "notification", moderation) == ["email"]
        # a kind's channel off, a global switch off, a daily digest taking the social emails
        await _set(conn, user.id, '{"kinds": {"order.status": {"push": false}}}')
        assert await _channels(conn, user.id, "order.updated", order) == ["email"]
        await _set(conn, user.id, '{"email": false}')
        assert await _channels(conn, user.id, "order.updated", order) == ["push"]
        digest = '{"digest": "daily", "kinds": {"user.followed": {"email": true}}}'
        await _set(conn, user.id, digest)
        assert await _channels(conn, user.id, "notification", follow) == ["push"]
        # a direct message: pushed (decided online or not at delivery), never the sender's copy
        message = {"message": {"sender_id": "someone", "text": "hi"}}
        assert await _channels(conn, user.id, "chat.message", message) == ["push"]
        own = {"message": {"sender_id": user.id, "text": "hi"}}
        assert await _channels(conn, user.id, "chat.message", own) == []
        # a disabled account: listed in the centre, delivered nowhere
        await conn.execute("UPDATE users SET disabled_at = now() WHERE id = $1", user.id)
        assert await _channels(conn, user.id, "order.updated", order) == []
        listed = await conn.fetchval(
            "SELECT count(*) FROM notifications WHERE user_id = $1 AND kind = 'order.status'",
            user.id,
        )
        assert listed == 5
    finally:
        await conn.close()


async def test_an_order_waiting_for_its_payment_notifies_no_one(
    api: Api, settings: Settings
) -> None:
    """A reserved order (``pending_payment``) is on both inboxes but makes no notification row
    and no delivery (migration 0025); the same order paid does."""
    user = await api.signup("waiting")
    waiting = {"order": {"id": "o2", "status": "pending_payment", "buyer_id": user.id}}
    paid = {"order": {"id": "o2", "status": "paid", "buyer_id": user.id}}
    conn = await mk.db(settings)
    try:
        assert await _channels(conn, user.id, "order.updated", waiting) == []
        assert await _channels(conn, user.id, "order.updated", paid) == ["email"]
        rows = await conn.fetch(
            "SELECT data -> 'order' ->> 'status' AS status FROM notifications WHERE user_id = $1",
            user.id,
        )
        assert [r["status"] for r in rows] == ["paid"]
        events = await conn.fetchval(
            "SELECT count(*) FROM stream_events WHERE stream = $1 AND ev = 'order.updated'",
            f"user:{user.id}",
        )
        assert events == 2  # both are on the inbox: live clients and replays see them
    finally:
        await conn.close()


async def test_promotions_in_app_default_is_off_unless_turned_on(
    api: Api, settings: Settings
) -> None:
    user = await api.signup("promoread")
    promo = {"kind": "promotion", "vendor_id": "v", "title": "t", "text": "x"}
    conn = await mk.db(settings)
    try:
        await _set(conn, user.id, '{"kinds": {"promotion": {"email": true}}}')
        assert await _channels(conn, user.id, "notification", promo) == ["email"]
        await _set(conn, user.id, '{"kinds": {"promotion": {"inapp": true}}}')
        await _channels(conn, user.id, "notification", promo)
        read = await conn.fetch(
            "SELECT read_at IS NOT NULL AS read FROM notifications"
            " WHERE user_id = $1 AND kind = 'promotion' ORDER BY id",
            user.id,
        )
    finally:
        await conn.close()
    assert [r["read"] for r in read] == [True, False]  # in-app off by default: listed read


async def test_every_gateway_wrote_the_kinds_the_trigger_reads(settings: Settings) -> None:
    conn = await mk.db(settings)
    try:
        rows = await conn.fetch("SELECT kind, inapp, email, push, digest FROM notification_kinds")
    finally:
        await conn.close()
    assert sorted(tuple(r) for r in rows) == sorted(kind_rows())


async def _open_channels(settings: Settings) -> dict[str, bool]:
    rows = await mk.fetch(settings, "SELECT channel, open FROM notification_channels")
    return {r["channel"]: r["open"] for r in rows}


async def _opened(settings: Settings) -> None:
    """A notifier of ``settings`` opened and closed (what it writes when it opens stays)."""
    async with open_notifier(settings):
        pass


async def test_the_notifier_writes_the_channels_it_can_deliver_on(settings: Settings) -> None:
    """Email is open only where the notifier has an SMTP server: one without closes it when it
    opens (migration 0034), one with it (the session's) opens it again."""
    assert settings.smtp_url  # the session's SMTP sink
    assert await _open_channels(settings) == {"email": True, "push": True}
    try:
        await _opened(settings.model_copy(update={"smtp_url": None}))
        closed = await _open_channels(settings)
        await _opened(settings)
        reopened = await _open_channels(settings)
    finally:  # the session's deployment has SMTP, whatever failed above
        conn = await mk.db(settings)
        try:
            await st.sync_channels(conn, open_channels(True))
        finally:
            await conn.close()
    assert closed == {"email": False, "push": True}
    assert reopened == {"email": True, "push": True}


async def test_without_smtp_no_email_is_queued_and_push_still_is(
    api: Api, settings: Settings
) -> None:
    """A deployment without an SMTP server (its notifier writes ``email`` closed when it opens,
    migration 0034): the trigger queues no email, so a paid order of a user without a device
    queues nothing (and wakes no notifier: nothing queued, no NOTIFY); a device still gets its
    push, and the centre lists every notification as before. Closed inside a transaction here,
    rolled back: the session's deployment has SMTP."""
    user = await api.signup("nosmtp")
    order = {"order": {"id": "o3", "status": "paid", "buyer_id": user.id}}
    follow = {"kind": "user.followed", "by": "someone"}
    conn = await mk.db(settings)
    try:
        tx = conn.transaction()
        await tx.start()
        try:
            await st.sync_channels(conn, open_channels(False))
            assert await _channels(conn, user.id, "order.updated", order) == []
            await _set(conn, user.id, '{"kinds": {"user.followed": {"email": true}}}')
            assert await _channels(conn, user.id, "notification", follow) == []  # a fold too
            await conn.execute(
                "INSERT INTO push_subscriptions (endpoint, user_id, p256dh, auth)"
                " VALUES ($1, $2, 'k', 'a')",
                f"https://push.invalid/{user.id}",
                user.id,
            )
            assert await _channels(conn, user.id, "order.updated", order) == ["push"]
            assert await _channels(conn, user.id, "notification", follow) == ["push"]
            listed = await conn.fetchval(
                "SELECT count(*) FROM notifications WHERE user_id = $1", user.id
            )
            assert listed == 4
        finally:
            await tx.rollback()
        # the session's channels again (open): the same order queues its email
        assert await _channels(conn, user.id, "order.updated", order) == ["email"]
    finally:
        await conn.close()


async def test_one_notify_per_transaction_and_none_for_nothing_queued(
    api: Api, settings: Settings
) -> None:
    user = await api.signup("wakeme")
    order = {"order": {"id": "o2", "status": "paid", "buyer_id": user.id}}
    like = {"kind": "post.liked", "by": "x", "post_id": "p"}  # in-app only by default
    got: list[str] = []  # payloads: the id of the transaction that sent each
    listener = await mk.db(settings)
    conn = await mk.db(settings)

    async def events(ev: str, data: Any, n: int, abort: bool = False) -> str:
        """``n`` inbox events in one transaction; its id."""
        tx = conn.transaction()
        await tx.start()
        xid = str(await conn.fetchval("SELECT pg_current_xact_id()"))
        for _ in range(n):
            await inbox_event(conn, user.id, ev, data)
        await (tx.rollback() if abort else tx.commit())
        return xid

    try:
        await listener.add_listener(WAKE_CHANNEL, lambda *args: got.append(args[3]))
        queued = await events("order.updated", order, 3)  # three emails queued: one wake-up
        rolled_back = await events("order.updated", order, 2, abort=True)
        nothing = await events("notification", like, 2)
        await asyncio.sleep(1.0)  # (other tests' wake-ups may arrive too: told apart by id)
    finally:
        await listener.close()
        await conn.close()
    assert got.count(queued) == 1
    assert rolled_back not in got and nothing not in got


async def test_a_batch_is_settled_in_one_statement(api: Api, settings: Settings) -> None:
    user = await api.signup("settled")
    conn = await mk.db(settings)
    try:
        ids = [
            await conn.fetchval(
                "INSERT INTO notification_deliveries (user_id, kind, channel, source, payload,"
                " next_at) VALUES ($1, 'order.status', 'push', $2, '{}', now() + interval '1 h')"
                " RETURNING id",  # not due: the session's notifiers leave it alone
                user.id,
                f"cost-test:{user.id}:{i}",
            )
            for i in range(3)
        ]
        await st.settle(
            conn,
            [
                st.Outcome(ids[0], "sent", None, True, 0.0, ["https://a", "https://b"]),
                st.Outcome(ids[1], "pending", "HTTP 503", True, 3600.0, ["https://a"]),
                st.Outcome(ids[2], "skipped", "online", False),
            ],
        )
        rows = await conn.fetch(
            "SELECT status, last_error, attempts, done, finished_at IS NOT NULL AS finished,"
            " next_at > now() + interval '50 min' AS later FROM notification_deliveries"
            " WHERE id = ANY($1::bigint[]) ORDER BY id",
            ids,
        )
        await st.settle(conn, [])  # nothing: no statement
    finally:
        await conn.close()
    assert [tuple(r) for r in rows] == [
        ("sent", None, 1, ["https://a", "https://b"], True, False),
        ("pending", "HTTP 503", 1, ["https://a"], False, True),
        ("skipped", "online", 0, [], True, False),
    ]


async def test_the_listener_comes_back_after_losing_its_connection(settings: Settings) -> None:
    assert settings.database_url
    wake = Listener(settings.database_url, "hl_test_wake")
    conn = await mk.db(settings)
    try:
        assert await wake.wait(1.0)  # connecting: look at once (what was queued meanwhile)
        wake.clear()
        assert not await wake.wait(0.2)
        await conn.execute("NOTIFY hl_test_wake")
        assert await wake.wait(2.0)
        wake.clear()
        assert wake._conn is not None
        pid = wake._conn.get_server_pid()
        await conn.execute("SELECT pg_terminate_backend($1)", pid)
        assert await wake.wait(2.0)  # the loss wakes the waiter: it looks (what was missed)
        wake.clear()
        await wake.wait(0.5)  # reconnects (and asks for a look again)
        assert wake.listening and wake._conn is not None
        assert wake._conn.get_server_pid() != pid
        wake.clear()
        assert not await wake.wait(0.2)
        await conn.execute("NOTIFY hl_test_wake")
        assert await wake.wait(2.0)
    finally:
        await wake.close()
        await conn.close()


async def test_a_delivery_sent_again_carries_the_same_message_id(
    api: Api, settings: Settings, mail_sink: MailSink
) -> None:
    """At-least-once: a gateway that sent and died before settling leaves the row to be sent
    again when its lease ends; the receiver dedupes by the delivery's stable Message-ID."""
    user = await api.signup("twice")
    await mail_sink.wait_for(user.email)  # the verification email
    order = {"order": {"id": "o3", "status": "paid", "buyer_id": user.id}}
    conn = await mk.db(settings)
    try:
        async with conn.transaction():
            event = await inbox_event(conn, user.id, "order.updated", order)
        first = (await mail_sink.wait_for(user.email, 2))[-1]
        # as if the sender had died before settling: the row is due again once its lease ends
        await conn.execute(
            "UPDATE notification_deliveries SET status = 'pending', next_at = now(),"
            " finished_at = NULL WHERE source = $1 AND channel = 'email'",
            f"{event.stream}@{event.offset}",
        )
        await conn.execute("NOTIFY hl_outbox")  # what the safety poll would find, sooner
        again = (await mail_sink.wait_for(user.email, 3))[-1]
    finally:
        await conn.close()
    assert again["Message-ID"] == first["Message-ID"] and first["Message-ID"].startswith("<n")
    assert again["Subject"] == first["Subject"] == "Your order was updated"
