"""The notification centre, preferences and email (issue 15): real Postgres, Redis, Ray and a
real SMTP server on loopback (tests/integration/notify_kit.py)."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

from cluster.config import Settings
from models.auth import token_digest
from tests.integration import market_kit as mk
from tests.integration.client import Api, User, Ws
from tests.integration.notify_kit import MailSink, eventually, text_of

pytestmark = pytest.mark.integration

SANDBOX = {"provider": "sandbox", "card": "4242424242424242"}


async def _db(settings: Settings) -> asyncpg.Connection:
    return await mk.db(settings)


async def _settings(api: Api, user: User, body: dict[str, Any]) -> tuple[int, Any]:
    return await mk.rest(api, "PUT", "/api/v1/me/notification-settings", body, user.access_token)


async def _unread(ws: Ws) -> int:
    return int((await ws.ok("notifications.list", {"limit": 1}))["unread"])


async def test_a_burst_folds_into_one_item_and_read_marks_the_group(
    api: Api, settings: Settings
) -> None:
    author = await api.signup("ana")
    fans = [await api.signup(f"fan{i}") for i in range(4)]
    a = await api.connect(author)
    here = mk.spot(settings, 41)
    await a.ok("locate", {"lat": here[0], "lng": here[1]})
    post = (await a.mutate("post.create", {"text": "like me"}))["post"]
    for fan in fans:
        f = await api.connect(fan)
        await f.mutate("post.like", {"post_id": post["id"]})
        await f.close()
        note = await a.next_event("notification")  # live on the socket, and durably listed
        assert note["data"]["kind"] == "post.liked"

    page = await a.ok("notifications.list", {})
    assert page["unread"] == 1 and page["next_cursor"] is None
    [item] = page["items"]
    assert item["kind"] == "post.liked" and item["count"] == 4 and not item["read"]
    assert item["actors"] == [fans[3].id, fans[2].id, fans[1].id]  # newest first, three
    conn = await _db(settings)
    try:  # the rows it folds are all kept
        rows = await conn.fetchval(
            "SELECT count(*) FROM notifications WHERE user_id = $1 AND kind = 'post.liked'",
            author.id,
        )
        assert rows == 4
    finally:
        await conn.close()

    done = await a.mutate("notifications.read", {"ids": [item["id"]]})
    assert done == {"marked": 4, "unread": 0}
    again = await a.mutate("notifications.read", {"ids": [item["id"]]})
    assert again == {"marked": 0, "unread": 0}
    # a like after the read starts a new group
    late = await api.connect(await api.signup("late"))
    await late.mutate("post.like", {"post_id": post["id"]})
    await eventually(lambda: _unread(a))
    items = (await a.ok("notifications.list", {}))["items"]
    assert [(i["count"], i["read"]) for i in items] == [(1, False), (4, True)]
    await late.close()
    await a.close()


async def test_list_pages_by_cursor_and_bad_input_changes_nothing(api: Api) -> None:
    target = await api.signup("popular")
    t = await api.connect(target)
    for i in range(3):
        other = await api.connect(await api.signup(f"opener{i}"))
        await other.ok("chat.open", {"user_id": target.id})  # room.opened: never folded
        await other.close()
    await eventually(lambda: _count(t, 3))
    first = await t.ok("notifications.list", {"limit": 2})
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = await t.ok("notifications.list", {"limit": 2, "cursor": first["next_cursor"]})
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    ids = [i["id"] for i in first["items"] + rest["items"]]
    assert len(set(ids)) == 3 and ids == sorted(ids, key=int, reverse=True)

    for bad in ({"ids": ["x"]}, {}, {"ids": ["1"], "all": True}, {"ids": ["-4"]}):
        reply = await t.request("notifications.read", bad, key=f"k-{bad}")
        assert not reply["ok"] and reply["error"]["code"] == "bad_request", reply
    reply = await t.request("notifications.list", {"cursor": "nope"})
    assert reply["error"]["code"] == "bad_request"
    assert await _unread(t) == 3
    unread = await t.ok("notifications.list", {"unread_only": True})
    assert len(unread["items"]) == 3
    assert (await t.mutate("notifications.read", {"all": True}))["unread"] == 0
    assert (await t.ok("notifications.list", {"unread_only": True}))["items"] == []
    await t.close()


async def _count(ws: Ws, n: int) -> bool:
    return len((await ws.ok("notifications.list", {}))["items"]) >= n


async def test_settings_defaults_changes_and_refusals(api: Api) -> None:
    user = await api.signup("prefs")
    path = "/api/v1/me/notification-settings"
    status, body = await api.get(path, user.access_token)
    assert status == 200 and body["email"] is True and body["push"] is True
    assert body["kinds"]["order.status"] == {"inapp": True, "email": True, "push": True}
    assert body["kinds"]["promotion"] == {"inapp": False, "email": False, "push": False}
    assert "quiet_hours" not in body

    change = {"push": False, "kinds": {"post.liked": {"email": True}},
              "quiet_hours": {"start": "22:00", "end": "07:30", "tz": "Europe/Lisbon"}}  # fmt: skip
    status, body = await _settings(api, user, change)
    assert status == 200, body
    assert body["push"] is False and body["kinds"]["post.liked"]["email"] is True
    assert body["kinds"]["post.liked"]["inapp"] is True  # untouched parts keep their value
    assert body["quiet_hours"] == change["quiet_hours"]

    for bad in (
        {"kinds": {"no.such.kind": {"email": True}}},
        {"quiet_hours": {"start": "25:00", "end": "07:00", "tz": "UTC"}},
        {"quiet_hours": {"start": "22:00", "end": "07:00", "tz": "Mars/Olympus"}},
        {"email": 1},
        {"kinds": {"post.liked": {"sms": True}}},
    ):
        status, err = await _settings(api, user, bad)
        assert status == 400 and err["error"]["code"] == "bad_request", (bad, err)
    status, now = await api.get(path, user.access_token)
    assert now == body  # nothing changed
    status, body = await _settings(api, user, {"clear_quiet_hours": True})
    assert status == 200 and "quiet_hours" not in body
    assert (await api.get(path))[0] == 401


async def test_inapp_off_lists_the_notification_already_read(api: Api) -> None:
    quiet = await api.signup("quiet")
    status, _ = await _settings(api, quiet, {"kinds": {"user.followed": {"inapp": False}}})
    assert status == 200
    q = await api.connect(quiet)
    fan = await api.connect(await api.signup("fan"))
    await fan.mutate("user.follow", {"user_id": quiet.id})
    await q.next_event("notification")
    page = await eventually(lambda: _listed(q))
    assert page["unread"] == 0 and page["items"][0]["read"] is True
    await q.close()
    await fan.close()


async def _listed(ws: Ws) -> dict[str, Any] | None:
    page = await ws.ok("notifications.list", {})
    return page if page["items"] else None


async def _status(settings: Settings, user_id: str, channel: str) -> list[asyncpg.Record]:
    conn = await _db(settings)
    try:
        return await conn.fetch(
            "SELECT kind, status, attempts, last_error FROM notification_deliveries"
            " WHERE user_id = $1 AND channel = $2 ORDER BY id",
            user_id,
            channel,
        )
    finally:
        await conn.close()


async def test_order_emails_to_buyer_and_vendor_with_one_click_unsubscribe(
    api: Api, settings: Settings, mail_sink: MailSink
) -> None:
    seller, _ = await mk.vendor(api, mk.spot(settings, 43), "mailshop")
    item = await mk.listing(api, seller.access_token)
    buyer = await api.signup("mailbuyer")
    ws = await api.connect(buyer)
    here = mk.spot(settings, 43)
    await ws.ok("locate", {"lat": here[0], "lng": here[1]})
    reply = await mk.buy(ws, item["id"], 1, SANDBOX)
    assert reply["ok"], reply
    order = reply["data"]["orders"][0]

    msg = (await mail_sink.wait_for(buyer.email, subject="Your order was updated"))[0]
    assert order["id"] in text_of(msg)
    assert msg.get_body(("html",)) is not None
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = msg["List-Unsubscribe"].strip("<>")
    await mail_sink.wait_for(seller.email, subject="An order of your shop was updated")

    query = parse_qs(urlsplit(link).query)
    path = urlsplit(link).path
    args = f"?u={query['u'][0]}&s={query['s'][0]}&t={query['t'][0]}"
    forged = f"?u={query['u'][0]}&s={query['s'][0]}&t=AAAA{query['t'][0][4:]}"
    async with api.http.post(api.base + path + forged, data="List-Unsubscribe=One-Click") as r:
        assert r.status == 400
    other = f"?u={seller.id}&s={query['s'][0]}&t={query['t'][0]}"  # another user's: refused
    async with api.http.post(api.base + path + other, data="List-Unsubscribe=One-Click") as r:
        assert r.status == 400
    async with api.http.get(api.base + path + args) as r:  # the page changes nothing
        assert r.status == 200 and "Unsubscribe" in await r.text()
    _, prefs = await api.get("/api/v1/me/notification-settings", buyer.access_token)
    assert prefs["kinds"]["order.status"]["email"] is True
    async with api.http.post(api.base + path + args, data="List-Unsubscribe=One-Click") as r:
        assert r.status == 200 and (await r.json()) == {"unsubscribed": "order.status"}
    _, prefs = await api.get("/api/v1/me/notification-settings", buyer.access_token)
    assert prefs["kinds"]["order.status"]["email"] is False and prefs["email"] is True

    async def settled() -> bool:  # what was queued before the unsubscribe is sent or skipped
        return all(r["status"] != "pending" for r in await _status(settings, buyer.id, "email"))

    await eventually(settled)
    before = len(mail_sink.to(buyer.email))
    emails = [r for r in await _status(settings, buyer.id, "email") if r["kind"] == "order.status"]
    top = (await ws.ok("notifications.list", {"limit": 1}))["items"][0]["id"]
    cancel = await ws.request("order.cancel", {"order_id": order["id"]}, key="cancel-1")
    assert cancel["ok"], cancel
    # the cancellation is in the centre (written with the order's change, before the reply),
    # and with that kind's emails off no email delivery was made for it
    newest = (await ws.ok("notifications.list", {"limit": 1}))["items"][0]
    assert newest["kind"] == "order.status" and int(newest["id"]) > int(top)
    after = [r for r in await _status(settings, buyer.id, "email") if r["kind"] == "order.status"]
    assert after == emails
    await asyncio.sleep(0.5)
    assert len(mail_sink.to(buyer.email)) == before
    await ws.close()


async def _settled(settings: Settings, user_id: str, channel: str, n: int) -> bool:
    rows = await _status(settings, user_id, channel)
    return len([r for r in rows if r["status"] != "pending"]) >= n


async def _follow_mail_on(api: Api) -> User:
    user = await api.signup("mailme")
    status, _ = await _settings(api, user, {"kinds": {"user.followed": {"email": True}}})
    assert status == 200
    return user


async def _followed_by(api: Api, user: User) -> None:
    fan = await api.connect(await api.signup("follower"))
    await fan.mutate("user.follow", {"user_id": user.id})
    await fan.close()


async def test_a_transient_smtp_failure_is_retried_a_permanent_one_dead_lettered(
    api: Api, settings: Settings, mail_sink: MailSink
) -> None:
    user = await _follow_mail_on(api)
    await mail_sink.wait_for(user.email)  # the verification email
    mail_sink.fail_next(user.email, 1, 451)
    await _followed_by(api, user)
    mails = await mail_sink.wait_for(user.email, 2)
    assert "started following you" in text_of(mails[-1])
    await eventually(lambda: _settled(settings, user.id, "email", 2))  # settled after the send
    rows = [r for r in await _status(settings, user.id, "email") if r["kind"] == "user.followed"]
    assert [(r["status"], r["attempts"]) for r in rows] == [("sent", 2)]

    gone = await _follow_mail_on(api)
    mail_sink.refuse(gone.email)
    await _followed_by(api, gone)
    await eventually(lambda: _settled(settings, gone.id, "email", 2))
    rows = [r for r in await _status(settings, gone.id, "email") if r["kind"] == "user.followed"]
    assert [(r["status"], r["attempts"]) for r in rows] == [("dead", 1)]
    assert "550" in (rows[0]["last_error"] or "")

    stuck = await _follow_mail_on(api)
    await mail_sink.wait_for(stuck.email)
    mail_sink.fail_next(stuck.email, settings.notify_max_attempts, 421)
    await _followed_by(api, stuck)
    await eventually(lambda: _settled(settings, stuck.id, "email", 2))
    rows = [r for r in await _status(settings, stuck.id, "email") if r["kind"] == "user.followed"]
    assert [(r["status"], r["attempts"]) for r in rows] == [("dead", settings.notify_max_attempts)]


async def test_quiet_hours_hold_email_back(api: Api, settings: Settings) -> None:
    user = await _follow_mail_on(api)
    always = {"start": "00:00", "end": "23:59", "tz": "UTC"}
    status, _ = await _settings(api, user, {"quiet_hours": always})
    assert status == 200
    await _followed_by(api, user)

    async def held() -> bool:
        rows = await _status(settings, user.id, "email")
        return any(r["kind"] == "user.followed" and r["last_error"] == "quiet hours" for r in rows)

    await eventually(held)
    rows = [r for r in await _status(settings, user.id, "email") if r["kind"] == "user.followed"]
    assert rows[0]["status"] == "pending" and rows[0]["attempts"] == 0


async def test_password_reset_and_email_verification(
    api: Api, settings: Settings, mail_sink: MailSink
) -> None:
    user = await api.signup("forgetful")
    ws = await api.connect(user)
    verify = await mail_sink.wait_for(user.email)
    token = text_of(verify[0]).split("#token=", 1)[1].split()[0]
    status, _ = await api.post("/api/v1/auth/email/verify", {"token": token})
    assert status == 204
    status, _ = await api.post("/api/v1/auth/email/verify", {"token": token})
    assert status == 400  # single use

    status, _ = await api.post("/api/v1/auth/password/forgot", {"email": "nobody@example.test"})
    assert status == 202
    status, _ = await api.post("/api/v1/auth/password/forgot", {"email": user.email.upper()})
    assert status == 202
    reset = (await mail_sink.wait_for(user.email, subject="Reset your password"))[0]
    assert reset["List-Unsubscribe"] is None
    token = text_of(reset).split("#token=", 1)[1].split()[0]
    conn = await _db(settings)
    try:  # neither the token nor its email's payload is kept in the clear
        assert (
            await conn.fetchval("SELECT count(*) FROM account_tokens WHERE digest = $1", token) == 0
        )
        kept = await conn.fetch(
            "SELECT payload::text AS p FROM notification_deliveries WHERE user_id = $1", user.id
        )
        assert all(token not in r["p"] for r in kept)
        assert await conn.fetchval(
            "SELECT email_verified_at IS NOT NULL FROM users WHERE id = $1", user.id
        )
    finally:
        await conn.close()

    status, _ = await api.post("/api/v1/auth/password/reset", {"token": token, "password": "x"})
    assert status == 400  # too short: nothing changed, the token still works
    new = "a brand new passphrase"
    status, _ = await api.post("/api/v1/auth/password/reset", {"token": token, "password": new})
    assert status == 204
    await asyncio.wait_for(ws.closed.wait(), 5)  # the socket of the old sign-in closes
    assert ws.close_code == 4004
    status, _ = await api.post("/api/v1/auth/refresh", {"refresh_token": user.refresh_token})
    assert status == 401
    status, _ = await api.post("/api/v1/auth/password/reset", {"token": token, "password": new})
    assert status == 400
    status, _ = await api.post("/api/v1/auth/login", {"email": user.email, "password": new})
    assert status == 200


async def test_an_expired_reset_link_changes_nothing(
    api: Api, settings: Settings, mail_sink: MailSink
) -> None:
    user = await api.signup("late")
    status, _ = await api.post("/api/v1/auth/password/forgot", {"email": user.email})
    assert status == 202
    reset = (await mail_sink.wait_for(user.email, subject="Reset your password"))[0]
    token = text_of(reset).split("#token=", 1)[1].split()[0]
    conn = await _db(settings)
    try:  # its HL_ACCOUNT_TOKEN_TTL_S has passed
        moved = await conn.execute(
            "UPDATE account_tokens SET expires_at = now() - interval '1 second' WHERE digest = $1",
            token_digest(token),
        )
        assert moved == "UPDATE 1"
    finally:
        await conn.close()
    body = {"token": token, "password": "a brand new passphrase"}
    status, err = await api.post("/api/v1/auth/password/reset", body)
    assert status == 400 and err["error"]["code"] == "bad_request", err
    status, _ = await api.post("/api/v1/auth/refresh", {"refresh_token": user.refresh_token})
    assert status == 200  # the sign-in was not ended
    login = {"email": user.email, "password": "correct horse battery"}
    assert (await api.post("/api/v1/auth/login", login))[0] == 200  # the old password stands


async def test_promotions_reach_opted_in_followers_capped_per_day(
    api: Api, settings: Settings
) -> None:
    seller, vendor = await mk.vendor(api, mk.spot(settings, 44), "promoshop")
    keen, indifferent = await api.signup("keen"), await api.signup("meh")
    status, _ = await _settings(api, keen, {"kinds": {"promotion": {"inapp": True}}})
    assert status == 200
    for fan in (keen, indifferent):
        ws = await api.connect(fan)
        await ws.mutate("user.follow", {"user_id": seller.id})
        await ws.close()
    k = await api.connect(keen)
    body = {"title": "Half price", "text": "All loaves today"}
    path = "/api/v1/vendor/promotions"
    status, out = await mk.rest(
        api, "POST", path, body, seller.access_token, {"Idempotency-Key": "p1"}
    )
    assert status == 201 and out["promotion"]["recipients"] == 1, out
    status, again = await mk.rest(
        api, "POST", path, body, seller.access_token, {"Idempotency-Key": "p1"}
    )
    assert again == out  # a retry sends nothing
    note = await k.next_event("notification")
    assert (
        note["data"]["kind"] == "promotion"
        and note["data"]["title"] == "Half price"
        and note["data"]["vendor_id"] == vendor["id"]
    )
    item = (await eventually(lambda: _listed(k)))["items"][0]
    assert item["kind"] == "promotion"
    for i in range(settings.promotion_daily_cap - 1):
        status, _ = await mk.rest(
            api, "POST", path, body, seller.access_token, {"Idempotency-Key": f"x{i}"}
        )
        assert status == 201
    status, err = await mk.rest(api, "POST", path, body, seller.access_token)
    assert status == 429 and err["error"]["code"] == "rate_limited"
    status, _ = await mk.rest(api, "POST", path, body, keen.access_token)
    assert status == 403  # not a vendor
    await k.close()


async def test_a_daily_digest_gathers_the_social_emails(
    api: Api, settings: Settings, mail_sink: MailSink
) -> None:
    user = await api.signup("digest")
    await mail_sink.wait_for(user.email)  # the verification email
    change = {"digest": "daily", "kinds": {"user.followed": {"email": True}}}
    status, body = await _settings(api, user, change)
    assert status == 200 and body["digest"] == "daily"
    await _followed_by(api, user)
    await _followed_by(api, user)
    digests = await mail_sink.wait_for(user.email, subject="Your Hyperlocal digest", timeout=15)
    text = text_of(digests[0])
    assert "started following you" in text
    assert digests[0]["List-Unsubscribe"] is not None  # scope "all": the digest itself
    # the digest takes the kind's emails: no email delivery of their own was ever made
    assert [
        r for r in await _status(settings, user.id, "email") if r["kind"] == "user.followed"
    ] == []
    assert not [m for m in mail_sink.to(user.email) if "started following" in m["Subject"]]
    # read everything: no new digest comes with nothing new
    ws = await api.connect(user)
    await ws.mutate("notifications.read", {"all": True})
    await ws.close()
    await asyncio.sleep(settings.notify_digest_period_s + 1)  # what was queued before has gone
    seen = len(await mail_sink.wait_for(user.email, subject="Your Hyperlocal digest"))
    await asyncio.sleep(2 * settings.notify_digest_period_s + 1)
    later = mail_sink.to(user.email)
    assert len([m for m in later if m["Subject"] == "Your Hyperlocal digest"]) == seen


async def _promotions(settings: Settings, user_id: str) -> list[str]:
    """The reach (``follower`` / ``nearby``) of every promotion in ``user_id``'s centre."""
    conn = await _db(settings)
    try:
        rows = await conn.fetch(
            "SELECT data ->> 'reach' AS reach FROM notifications"
            " WHERE user_id = $1 AND kind = 'promotion' ORDER BY id",
            user_id,
        )
    finally:
        await conn.close()
    return [r["reach"] for r in rows]


async def test_promotions_reach_nearby_users_who_opted_in_capped_per_user(
    api: Api, settings: Settings
) -> None:
    here, far = mk.spot(settings, 47), mk.spot(settings, 48)
    seller, vendor = await mk.vendor(api, here, "nearshop")
    other_seller, _ = await mk.vendor(api, mk.neighbour(settings, here), "nextshop")
    on = {"kinds": {"promotion": {"inapp": True}}}

    async def person(name: str, where: tuple[float, float] | None, opted: bool) -> User:
        user = await api.signup(name)
        body: dict[str, Any] = dict(on) if opted else {}
        if where is not None:
            body["nearby"] = {"lat": where[0], "lng": where[1]}
        status, out = await _settings(api, user, body)
        assert status == 200, out
        return user

    near = await person("near", here, True)
    beside = await person("beside", mk.neighbour(settings, here), True)
    away = await person("away", far, True)
    unwilling = await person("unwilling", here, False)
    fan = await person("nearfan", here, True)
    await _settings(api, seller, {**on, "nearby": {"lat": here[0], "lng": here[1]}})
    ws = await api.connect(fan)
    await ws.mutate("user.follow", {"user_id": seller.id})
    await ws.close()
    _, shown = await api.get("/api/v1/me/notification-settings", near.access_token)
    assert shown["nearby"] == {"cell": vendor["cell"]}  # only the cell is kept, not the point

    path = "/api/v1/vendor/promotions"
    body = {"title": "Fresh bread", "text": "Out of the oven"}
    status, out = await mk.rest(api, "POST", path, body, seller.access_token)
    assert status == 201 and out["promotion"]["recipients"] == 3, out
    assert await _promotions(settings, near.id) == ["nearby"]
    assert await _promotions(settings, beside.id) == ["nearby"]
    assert await _promotions(settings, fan.id) == ["follower"]  # once, as a follower
    for nobody in (away, unwilling, seller):
        assert await _promotions(settings, nobody.id) == []

    # a nearby user gets at most promotion_nearby_daily_cap a day from vendors not followed;
    # a follower's count only against the vendor's own cap
    cap = settings.promotion_nearby_daily_cap
    assert settings.promotion_daily_cap >= cap
    for _ in range(cap - 1):
        status, _ = await mk.rest(api, "POST", path, body, seller.access_token)
        assert status == 201
    status, out = await mk.rest(api, "POST", path, body, other_seller.access_token)
    assert status == 201 and out["promotion"]["recipients"] == 2, out
    assert await _promotions(settings, seller.id) == ["nearby"]  # another shop's: nearby too
    assert await _promotions(settings, near.id) == ["nearby"] * cap  # capped: not the 4th
    assert await _promotions(settings, beside.id) == ["nearby"] * cap
    assert await _promotions(settings, fan.id) == ["follower"] * cap + ["nearby"]

    # bad input changes nothing; clear_nearby forgets the cell
    for bad in (
        {"nearby": {"lat": 91.0, "lng": 0.0}},
        {"nearby": {"lat": "52.5", "lng": 13.4}},
        {"nearby": {"lat": 52.5}},
        {"nearby": {"lat": here[0], "lng": here[1]}, "clear_nearby": True},
    ):
        status, err = await _settings(api, near, bad)
        assert status == 400 and err["error"]["code"] == "bad_request", (bad, err)
    _, again = await api.get("/api/v1/me/notification-settings", near.access_token)
    assert again == shown
    status, cleared = await _settings(api, near, {"clear_nearby": True})
    assert status == 200 and "nearby" not in cleared
