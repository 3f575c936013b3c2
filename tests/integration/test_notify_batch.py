"""The inbox events of one statement notify set-based (migration 0027, issue 20): one trigger
per statement writes what the row-by-row trigger wrote for each event (the kind, the read mark
of a kind turned off in-app, the channels each user can be reached on, a direct message's
deliveries without a notification, nothing for a pending order or a sender's own copy), and
the folding kinds still fold in order."""

from __future__ import annotations

import json
import uuid

import pytest

from cluster.config import Settings
from tests.integration import market_kit as mk
from tests.integration.client import Api

pytestmark = pytest.mark.integration


async def _user(api: Api, name: str) -> str:
    return (await api.signup(name)).id


async def test_one_statement_of_inbox_events_notifies_each_as_alone(
    api: Api, settings: Settings
) -> None:
    conn = await mk.db(settings)
    try:
        a, b, c, d = [await _user(api, f"batch-{n}") for n in "abcd"]
        await conn.execute(
            "INSERT INTO push_subscriptions (endpoint, user_id, p256dh, auth)"
            " VALUES ($1, $2, 'k', 'a')",
            f"https://push.invalid/{a}",
            a,
        )
        await conn.execute(
            "INSERT INTO notification_settings (user_id, settings) VALUES"
            ' ($1, \'{"email": false}\'), ($2, \'{"kinds": {"order.status": {"inapp": false}}}\')',
            b,
            d,
        )
        await conn.execute("UPDATE users SET disabled_at = now() WHERE id = $1", c)

        def order(buyer: str, status: str = "paid") -> dict[str, object]:
            return {"order": {"id": f"o-{uuid.uuid4().hex[:6]}", "status": status,
                              "buyer_id": buyer}}  # fmt: skip

        events = [
            (a, "order.updated", order(a)),  # 0: the buyer's: email and push
            (b, "order.updated", order(a)),  # 1: the vendor's; email off, no device: none
            (a, "order.updated", order(a, "pending_payment")),  # 2: not news
            (a, "chat.message", {"message": {"sender_id": b, "body": "hi"}}),  # 3: push only
            (b, "chat.message", {"message": {"sender_id": b, "body": "hi"}}),  # 4: own copy
            (c, "order.updated", order(c)),  # 5: a disabled account: listed, never sent
            (d, "order.updated", order(d)),  # 6: off in-app: read at once, still emailed
            (a, "notification", {"kind": "post.liked", "by": "x", "post_id": "p1"}),  # 7
            (a, "notification", {"kind": "post.liked", "by": "y", "post_id": "p1"}),  # 8: folds
            (a, "notification", {"kind": "moderation.removed", "post_id": "p2"}),  # 9: email
        ]
        base = 10**9 + uuid.uuid4().int % 10**6 * 100
        await conn.execute(
            'INSERT INTO stream_events (stream, "offset", ev, data)'
            " SELECT 'user:' || u, o, e, d::jsonb"
            " FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[]) AS x(u, o, e, d)",
            [u for u, _, _ in events],
            [base + i for i in range(len(events))],
            [ev for _, ev, _ in events],
            [json.dumps(data) for _, _, data in events],
        )  # one statement: the statement trigger sees them all at once
        src = [f"user:{u}@{base + i}" for i, (u, _, _) in enumerate(events)]
        rows = await conn.fetch(
            "SELECT source, kind, group_key, read_at IS NOT NULL AS read, head, fold_count,"
            " fold_actors FROM notifications WHERE source = ANY($1::text[])",
            src,
        )
        notes = {r["source"]: r for r in rows}
        deliveries = await conn.fetch(
            "SELECT source, channel, kind, notification_id IS NOT NULL AS noted"
            " FROM notification_deliveries WHERE source = ANY($1::text[])",
            src,
        )
        sent = {(r["source"], r["channel"]): r for r in deliveries}
    finally:
        await conn.close()

    assert set(notes) == {src[i] for i in (0, 1, 5, 6, 7, 8, 9)}
    assert notes[src[0]]["kind"] == "order.status" and not notes[src[0]]["read"]
    assert notes[src[1]]["kind"] == "order.vendor"
    assert notes[src[0]]["group_key"] == src[0]  # its own group: nothing folds into it
    assert notes[src[6]]["read"]
    assert notes[src[9]]["kind"] == "moderation.removed"
    first, second = notes[src[7]], notes[src[8]]
    assert (first["head"], second["head"], second["fold_count"]) == (False, True, 2)
    assert second["fold_actors"] == ["y", "x"]
    assert set(sent) == {
        (src[0], "email"), (src[0], "push"), (src[3], "push"), (src[6], "email"),
        (src[9], "email"),
    }  # fmt: skip
    assert not sent[(src[3], "push")]["noted"] and sent[(src[3], "push")]["kind"] == "chat.message"
    assert sent[(src[0], "email")]["noted"] and sent[(src[0], "email")]["kind"] == "order.status"
