"""Marketplace rules without Ray, Postgres or sockets: state machine, carts, cursors, scopes,
hook retry schedule, target URL policy, the sandbox provider."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from models import market as m
from models.errors import BadRequest, Conflict
from models.market_hooks import RetryPolicy, check_events, check_target_url, is_public_address
from payments.base import Charge
from payments.sandbox import SandboxProvider
from services.hooks import check_target, sign


def test_happy_path_and_who_may_take_each_step() -> None:
    assert m.transition(m.PENDING, "confirm", "system").target == m.PAID
    assert m.transition(m.PAID, "accept", "vendor").target == m.ACCEPTED
    assert m.transition(m.ACCEPTED, "fulfil", "vendor").target == m.FULFILLED
    assert m.transition(m.FULFILLED, "complete", "buyer").target == m.COMPLETED
    with pytest.raises(Conflict):
        m.transition(m.PAID, "accept", "buyer")
    with pytest.raises(Conflict):
        m.transition(m.PENDING, "confirm", "buyer")
    with pytest.raises(Conflict):
        m.transition(m.ACCEPTED, "cancel", "buyer")  # too late for the buyer
    with pytest.raises(BadRequest):
        m.transition(m.PAID, "teleport", "vendor")


@pytest.mark.parametrize("state", [m.CANCELLED, m.REFUNDED])
def test_terminal_states_refuse_everything(state: str) -> None:
    for action in m.ACTIONS:
        for actor in ("buyer", "vendor", "system", "provider"):
            with pytest.raises(Conflict):
                m.transition(state, action, actor)


def test_cancel_and_refund_effects() -> None:
    unpaid = m.transition(m.PENDING, "cancel", "buyer")
    assert unpaid.target == m.CANCELLED and unpaid.restock and not unpaid.refund_owed
    paid = m.transition(m.PAID, "cancel", "buyer")
    assert paid.target == m.REFUNDED and paid.restock and paid.refund_owed
    shipped = m.transition(m.FULFILLED, "refund", "system")
    assert not shipped.restock and shipped.refund_owed
    at_stripe = m.transition(m.COMPLETED, "refund", "provider")
    assert not at_stripe.refund_owed  # the money already went back at the provider
    with pytest.raises(Conflict):
        m.transition(m.COMPLETED, "refund", "system")


def test_a_completed_order_is_refunded_by_an_admin_or_its_vendors_dispute_only() -> None:
    for actor in ("admin", "vendor", "provider"):
        step = m.transition(m.COMPLETED, "refund", actor)
        assert step.target == m.REFUNDED and not step.restock
        assert step.refund_owed == (actor != "provider")
    for actor in ("system", "buyer"):
        with pytest.raises(Conflict):
            m.transition(m.COMPLETED, "refund", actor)
    assert m.transition(m.PAID, "refund", "admin").restock  # nothing handed over yet


def test_plain_steps_are_the_status_only_moves_of_the_system() -> None:
    """A plain step (one conditional write, store/order_writes.py) is legal from its sources
    only, always to one target, never restocks or owes a refund."""
    assert m.plain_step("confirm", "system") == (frozenset({m.PENDING, m.HELD}), m.PAID)
    assert m.plain_step("confirm", "provider") == (frozenset({m.PENDING, m.HELD}), m.PAID)
    assert m.plain_step("hold", "system") == (frozenset({m.PENDING}), m.HELD)
    for action, actor in [
        ("release", "system"),
        ("expire", "system"),
        ("refund", "system"),
        ("cancel", "buyer"),
        ("confirm", "buyer"),
        ("hold", "provider"),
    ]:
        assert m.plain_step(action, actor) is None, (action, actor)  # fmt: skip
    for action in sorted(m.ACTIONS):
        for actor in ("system", "provider", "buyer", "vendor", "admin"):
            plain = m.plain_step(action, actor)
            if plain is None:
                continue
            sources, target = plain
            for state in m.ORDER_STATES:
                if state in sources:
                    step = m.transition(state, action, actor)
                    assert (step.target, step.restock, step.refund_owed) == (target, False, False)
                else:
                    with pytest.raises(Conflict):
                        m.transition(state, action, actor)


def test_refund_amounts_whole_partial_and_refused() -> None:
    def amount(refunded: int, asked: int | None, currency: str | None = None,
               status: str = m.PAID, actor: m.ActorKind = "admin") -> int:  # fmt: skip
        return m.refund_amount(status, actor, 1000, refunded, "eur", asked, currency)

    assert amount(0, None) == 1000  # none: all that is left
    assert amount(300, None) == 700
    assert amount(300, 700) == 700 and amount(0, 1) == 1
    assert amount(0, 5, "EUR") == 5  # currency case does not matter
    with pytest.raises(Conflict) as over:
        amount(300, 701)
    assert over.value.details == {"reason": "over_refund", "refundable": 700, "currency": "eur"}
    with pytest.raises(Conflict):
        amount(1000, None)  # nothing left: not a refund of 0
    with pytest.raises(BadRequest):
        amount(0, 0)
    with pytest.raises(BadRequest):
        amount(0, 10, "usd")
    for status in (m.PENDING, m.CANCELLED, m.REFUNDED):
        with pytest.raises(Conflict):
            amount(0, 10, status=status)
    with pytest.raises(Conflict):
        amount(0, 10, status=m.COMPLETED, actor="system")
    assert amount(0, 10, status=m.COMPLETED, actor="admin") == 10


def test_no_host_clock_notion_of_a_reservation() -> None:
    """A reservation's deadline and its expiry are both the database clock's (the order row is
    written with ``now() + ttl``, store/market_store.py): no host-clock helper exists."""
    assert not hasattr(m, "is_expired") and not hasattr(m, "reservation_deadline")


def _line(listing: str, vendor: str, qty: int, price: int, cur: str = "usd") -> m.Line:
    return m.Line(listing, vendor, f"cell-{vendor}", listing, qty, price, cur)


def test_split_by_vendor_totals_and_one_currency() -> None:
    parts, total, currency = m.split_by_vendor(
        [_line("l1", "va", 2, 300), _line("l2", "vb", 1, 800), _line("l3", "va", 1, 50)]
    )
    assert total == 1450 and currency == "usd"
    assert [(p["vendor_id"], p["total"], len(p["items"])) for p in parts] == [
        ("va", 650, 2),
        ("vb", 800, 1),
    ]
    with pytest.raises(BadRequest, match="empty"):
        m.split_by_vendor([])
    with pytest.raises(BadRequest, match="currency"):
        m.split_by_vendor([_line("l1", "va", 1, 1), _line("l2", "vb", 1, 1, "eur")])
    items = [{"qty": 2, "listing": {"price": 5, "currency": "usd"}}]
    assert m.cart_totals(items) == {"usd": 10}


def test_parts_holding_a_scarce_listing_are_reserved_first() -> None:
    parts, _, _ = m.split_by_vendor(
        [_line("l1", "va", 1, 300), _line("l2", "vb", 1, 800), _line("l3", "vc", 1, 50)]
    )
    vendors = [[p["vendor_id"] for p in wave] for wave in m.reserve_waves(parts, {"l2"})]
    assert vendors == [["vb"], ["va", "vc"]]
    assert len(m.reserve_waves(parts, set())) == 1  # nothing scarce: all at once
    assert len(m.reserve_waves(parts, {"l1", "l2", "l3"})) == 1  # all scarce: all at once
    assert m.reserve_waves(parts[:1], {"l1"}) == [parts[:1]]


def test_cursors_round_trip_and_refuse_garbage() -> None:
    cur = m.NearbyCursor("price", 450.0, "c.x")
    assert m.NearbyCursor.decode(cur.encode(), "price") == cur
    with pytest.raises(BadRequest):
        m.NearbyCursor.decode(cur.encode(), "newest")
    with pytest.raises(BadRequest):
        m.NearbyCursor.decode("!!!", "price")
    page = m.PageCursor(datetime.now(UTC).isoformat(), "id")
    assert m.PageCursor.decode(page.encode()) == page
    assert m.PageCursor.decode(None) is None
    with pytest.raises(BadRequest):
        m.PageCursor.decode("zzz")


def test_scopes() -> None:
    assert m.parse_scopes(None, ("orders:read",)) == ("orders:read",)
    assert m.parse_scopes("orders:read", m.SCOPES) == ("orders:read",)
    with pytest.raises(BadRequest):
        m.parse_scopes("hooks:write", ("orders:read",))
    with pytest.raises(BadRequest):
        m.parse_scopes("root", m.SCOPES)


def test_retry_schedule_backs_off_with_jitter_and_caps() -> None:
    policy = RetryPolicy(base_s=10, cap_s=300, max_attempts=5)
    rand = random.Random(7)
    delays = [policy.delay_s(n, rand) for n in range(1, 8)]
    for n, delay in enumerate(delays, start=1):
        full = min(300, 10 * 2 ** (n - 1))
        assert full / 2 <= delay <= full
    assert policy.outcome(204, 1) == "delivered"
    assert policy.outcome(410, 1) == "gone"
    assert policy.outcome(500, 4) == "retry" and policy.outcome(None, 4) == "retry"
    assert policy.outcome(500, 5) == "dead"


def test_target_url_policy() -> None:
    assert check_target_url("https://hooks.example.com/x") == ("hooks.example.com", 443)
    for bad in ("ftp://x/y", "http://user:pw@x.com/", "/relative", "http://x.com:99999/"):
        with pytest.raises(BadRequest):
            check_target_url(bad)
    for private in ("127.0.0.1", "10.1.2.3", "192.168.0.1", "169.254.169.254", "::1", "0.0.0.0",
                    "::ffff:127.0.0.1", "fd00::1"):  # fmt: skip
        assert not is_public_address(private), private
    assert is_public_address("93.184.216.34")
    assert check_events(["order.created", "order.created"]) == ["order.created"]
    with pytest.raises(BadRequest):
        check_events(["order.exploded"])


async def test_private_targets_refused_unless_allowed() -> None:
    with pytest.raises(BadRequest, match="private"):
        await check_target("http://127.0.0.1:8080/hook", allow_private=False)
    with pytest.raises(BadRequest, match="private"):
        await check_target("http://[::1]/hook", allow_private=False)
    await check_target("http://127.0.0.1:8080/hook", allow_private=True)


def test_signature_is_standard_webhooks() -> None:
    from standardwebhooks.webhooks import Webhook

    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    headers = sign(secret, "msg_1", datetime.now(UTC), '{"a":1}')
    assert Webhook(secret).verify('{"a":1}', headers) == {"a": 1}


async def test_sandbox_cards() -> None:
    sandbox = SandboxProvider()
    for card, status in (
        ("4242424242424242", "captured"),
        ("4000000000000002", "declined"),
        ("4000000000003220", "requires_action"),
    ):
        sandbox.check({"card": card})
        result = await sandbox.charge(Charge("k", 100, "usd", {"card": card}))
        assert result.status == status
        assert await sandbox.status(result.provider_ref or "") == status
        # cancel says whether it voided: a captured payment is not voidable
        assert await sandbox.cancel(result.provider_ref or "") == (status != "captured")
    assert await sandbox.lookup("p", "g") is None  # no stored ref: it never reached the sandbox
    with pytest.raises(BadRequest):
        sandbox.check({"card": "1111"})
