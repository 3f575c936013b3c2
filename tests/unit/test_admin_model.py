"""Dispute state machine (every legal and illegal step), report severities and cursors."""

from __future__ import annotations

import itertools

import pytest

from models.admin import (
    DISPUTE_ACTIONS,
    DISPUTE_STATES,
    DISPUTE_STEPS,
    SEVERITY,
    SeqCursor,
    dispute_step,
)
from models.errors import BadRequest, Conflict

ACTORS = ("buyer", "vendor", "admin", "user")


@pytest.mark.parametrize(
    ("state", "action", "actor"),
    list(itertools.product(DISPUTE_STATES, sorted(DISPUTE_ACTIONS), ACTORS)),
)
def test_every_dispute_step(state: str, action: str, actor: str) -> None:
    found = DISPUTE_STEPS.get((state, action))
    if found is not None and actor in found[1]:
        assert dispute_step(state, action, actor) == found[0]
    else:
        with pytest.raises(Conflict):
            dispute_step(state, action, actor)


def test_terminal_states_have_no_way_out_and_unknown_actions_are_bad_requests() -> None:
    for state in ("refunded", "rejected"):
        assert not [k for k in DISPUTE_STEPS if k[0] == state]
    with pytest.raises(BadRequest):
        dispute_step("open", "escalate", "admin")


def test_severity_orders_reasons() -> None:
    assert SEVERITY["illegal"] > SEVERITY["scam"] > SEVERITY["spam"] > SEVERITY["other"]


def test_seq_cursor_round_trip_and_garbage() -> None:
    assert SeqCursor.decode(SeqCursor.encode(42)) == 42
    assert SeqCursor.decode(None) is None and SeqCursor.decode("") is None
    for bad in ("%%%", "LTE", SeqCursor.encode(0)):
        with pytest.raises(BadRequest):
            SeqCursor.decode(bad)
