"""The rules of moderation, reports, appeals and disputes. Pure: no I/O.

- report reasons carry a severity; the review queue orders by (severity, distinct reporters);
- a dispute moves through ``DISPUTE_STEPS`` only (``dispute_step``: ``conflict`` otherwise);
- list cursors are opaque (``SeqCursor`` for the audit log, newest first).
"""

from __future__ import annotations

import base64
import binascii
from typing import Literal

from models.errors import BadRequest, Conflict

TargetKind = Literal["post", "comment", "listing", "message", "user"]
TARGET_KINDS: tuple[str, ...] = ("post", "comment", "listing", "message", "user")
CONTENT_KINDS: tuple[str, ...] = ("post", "comment", "listing", "message")

ReportReason = Literal["spam", "scam", "harassment", "illegal", "other"]
SEVERITY: dict[str, int] = {"illegal": 4, "scam": 3, "harassment": 3, "spam": 2, "other": 1}
"""How urgent a report of each reason is; the queue shows the most severe first."""

ResolveAction = Literal["dismiss", "remove", "suspend"]

DisputeReason = Literal["not_received", "not_as_described", "other"]
OPEN, RESPONDED, REFUNDED, REJECTED = "open", "responded", "refunded", "rejected"
DISPUTE_STATES = (OPEN, RESPONDED, REFUNDED, REJECTED)

# (state, action) -> (next state, who may take it)
DISPUTE_STEPS: dict[tuple[str, str], tuple[str, frozenset[str]]] = {
    (OPEN, "respond"): (RESPONDED, frozenset({"vendor"})),
    (OPEN, "refund"): (REFUNDED, frozenset({"vendor", "admin"})),
    (OPEN, "reject"): (REJECTED, frozenset({"admin"})),
    (RESPONDED, "refund"): (REFUNDED, frozenset({"vendor", "admin"})),
    (RESPONDED, "reject"): (REJECTED, frozenset({"admin"})),
}
DISPUTE_ACTIONS = frozenset(action for _, action in DISPUTE_STEPS)
DISPUTABLE_ORDERS = frozenset({"paid", "accepted", "fulfilled", "completed"})
"""Order states a buyer may dispute: money was captured and not yet given back."""


def dispute_step(state: str, action: str, actor: str) -> str:
    """The state a dispute in ``state`` moves to when ``actor`` takes ``action``."""
    if action not in DISPUTE_ACTIONS:
        raise BadRequest(f"unknown dispute action {action!r}")
    found = DISPUTE_STEPS.get((state, action))
    if found is None or actor not in found[1]:
        raise Conflict(f"a dispute that is {state} cannot be {action} by the {actor}")
    return found[0]


def target_ref(kind: str, ident: str) -> str:
    """How an audit entry names its target: ``<kind>:<id>``."""
    return f"{kind}:{ident}"


class SeqCursor:
    """Position in a newest-first list keyed by a growing sequence number."""

    @staticmethod
    def encode(seq: int) -> str:
        return base64.urlsafe_b64encode(str(seq).encode()).decode().rstrip("=")

    @staticmethod
    def decode(text: str | None) -> int | None:
        if not text:
            return None
        try:
            value = int(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode())
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise BadRequest("cursor is not valid") from None
        if value <= 0:
            raise BadRequest("cursor is not valid")
        return value
