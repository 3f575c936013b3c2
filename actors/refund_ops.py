"""Refund rows, run by the shard that owns their order's cell (rule 2).

A ``refunds`` row belongs to its order, so only the order's owner writes it: ``record_refund``
(called by ``order.act`` for a step into ``refunded`` and by ``order.refund`` for a whole or
partial refund, in their transaction) adds one row per refund and the order's ``refunded``
amount with it (``CHECK (refunded <= total)`` backs up ``models.market.refund_amount``);
``refund.record`` records the one owed for a payment captured after its order ended;
``refund.settle`` what the provider answered (the services call the provider, outside any
transaction, then send the outcome here). Idempotent: all by the caller's (user, key) record.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from actors import order_memory
from models import market
from models.commands import ShardCommand
from models.errors import BadRequest, Conflict, NotFound
from models.ids import new_id
from models.placement import cell_key
from store import market_store as ms

if TYPE_CHECKING:
    import asyncpg

    from actors.cell_host import CellHost, Emitted, Handler
    from actors.group_commit import Tx


async def record_refund(
    tx: Tx, row: asyncpg.Record, amount: int, *, external: bool, provider_ref: str | None = None
) -> str | None:
    """A new refund row of ``amount`` for the order ``row`` (its ``refunded`` amount moves
    with it: the caller writes the order); None without a captured payment. ``provider_ref``:
    the provider's id of a refund made at the provider (an ``external`` one)."""
    payment_id = await tx.conn.fetchval(
        "SELECT id FROM payments WHERE group_id = $1 AND status = 'captured'", row["group_id"]
    )
    if payment_id is None:
        return None
    refund_id = await tx.conn.fetchval(
        "INSERT INTO refunds (id, order_id, payment_id, amount, status, provider_ref)"
        " VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        new_id(),
        row["id"],
        payment_id,
        amount,
        "external" if external else "pending",
        provider_ref,
    )
    return str(refund_id)


def _in_route(cmd: ShardCommand, cell: str) -> bool:
    """The row's cell is the one this command was routed (and ownership checked) by."""
    return cmd.route == cell_key(cell)


async def refund_record(
    host: CellHost, tx: Tx, cmd: market.RefundRecord, out: Emitted
) -> dict[str, Any]:
    """A pending refund for an order whose payment was captured after the order ended (an
    orphaned capture), or the order's refund already recorded; the services then run it."""
    order_memory.from_sql(host, tx, cmd.order_id)
    row = await ms.order_row(tx.conn, cmd.order_id, lock=True)
    if row is None or not _in_route(cmd, row["cell"]):
        raise NotFound("no such order")
    refund_id = await tx.conn.fetchval(
        "SELECT id FROM refunds WHERE order_id = $1 ORDER BY created_at LIMIT 1", row["id"]
    )
    if refund_id is None:
        refund_id = await record_refund(tx, row, row["total"] - row["refunded"], external=False)
        if refund_id is None:  # an error: nothing recorded under the key, a later call may
            raise Conflict("the order's payment is not captured", order_id=row["id"])
        await ms.set_order_status(
            tx.conn, row["id"], row["status"], None, row["total"] - row["refunded"]
        )
    return {"refund_id": refund_id}


_SETTLED = {"succeeded": "succeeded", "failed": "failed", "retry": "pending"}


async def refund_settle(
    host: CellHost, tx: Tx, cmd: market.RefundSettle, out: Emitted
) -> dict[str, Any]:
    """Record what the provider answered to a pending refund: ``succeeded`` (with its
    ``provider_ref``), ``failed`` for good (with ``reason``), or ``retry`` (a temporary
    failure: one more attempt counted, the sweeper tries again). A refund no longer pending
    is left as it is; the reply says its status and payment either way."""
    outcome = cmd.outcome
    if outcome not in _SETTLED:
        raise BadRequest(f"outcome: {outcome!r} is not one of {', '.join(_SETTLED)}")
    row = await tx.conn.fetchrow(
        "SELECT r.id, r.status, r.payment_id, o.cell FROM refunds r"
        " JOIN orders o ON o.id = r.order_id WHERE r.id = $1 FOR UPDATE OF r",
        cmd.refund_id,
    )
    if row is None or not _in_route(cmd, row["cell"]):
        raise NotFound("no such refund")
    status = row["status"]
    if status == "pending":
        status = _SETTLED[outcome]
        await tx.conn.execute(
            "UPDATE refunds SET status = $2, provider_ref = COALESCE($3, provider_ref),"
            " error = COALESCE($4, error), attempts = attempts + $5, updated_at = now()"
            " WHERE id = $1",
            row["id"],
            status,
            cmd.provider_ref,
            cmd.reason if outcome != "succeeded" else None,
            0 if outcome == "succeeded" else 1,
        )
    return {"refund_id": row["id"], "status": status, "payment_id": row["payment_id"]}


HANDLERS: dict[type[ShardCommand], Handler] = {
    market.RefundRecord: refund_record,
    market.RefundSettle: refund_settle,
}
