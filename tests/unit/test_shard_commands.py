"""Typed shard commands: one handler per type, routes derived from the command's own fields,
and every command crosses a process boundary (pickle, as Ray and LocalTransport copy it)."""

from __future__ import annotations

import pickle
import sys

import pytest

from actors.registry import HANDLERS, OPS, READERS
from models.chat import ChatSend, RoomAdd
from models.commands import ShardCommand, ShardRead
from models.errors import NotFound
from models.feed import CommentCreate, PostCreate, UserFollow
from models.market import CartAdd, OrderAct, RefundSettle
from models.placement import cell_key, user_key
from models.recommend.commands import RankRead

CELL = "88be0e35cbfffff"


def _leaves(base: type) -> set[type]:
    """Concrete command types: the leaves of the class tree, as their modules name them
    (``dataclass(slots=True)`` replaces a class; the replaced one is no command)."""
    out: set[type] = set()
    for sub in base.__subclasses__():
        if getattr(sys.modules[sub.__module__], sub.__name__, None) is not sub:
            continue
        children = _leaves(sub)
        out |= children if children else {sub}
    return out


def test_every_command_and_read_type_has_one_op_and_one_handler() -> None:
    commands, reads = _leaves(ShardCommand), _leaves(ShardRead)
    assert commands == set(HANDLERS), "a command type without a handler, or the reverse"
    assert reads == set(READERS)
    assert {op.command for op in OPS.values()} == commands | reads
    assert all(name == op.command.op for name, op in OPS.items())


def test_routes_come_from_the_command_itself() -> None:
    post = PostCreate(user_id="u", key="k", cell=CELL, lat=0.0, lng=0.0, text="hi")
    assert post.route == cell_key(CELL)
    comment = CommentCreate(user_id="u", key="k", post_id=f"{CELL}.0123456789abcdef", text="x")
    assert comment.route == cell_key(CELL)
    assert UserFollow(user_id="me", key="k", target_id="you").route == user_key("me")
    assert CartAdd(user_id="me", key="k", listing_id="x", qty=1).route == user_key("me")
    room = f"{CELL}.0123456789abcdef"
    assert ChatSend(user_id="u", key="k", room_id=f"cell-{CELL}", text="x").route == cell_key(CELL)
    assert RoomAdd(user_id="u", key="k", room_id=room, member_id="v").route == cell_key(CELL)
    settle = RefundSettle(user_id="s", key="k", refund_id="r", cell=CELL, outcome="failed")
    assert settle.route == cell_key(CELL)


@pytest.mark.parametrize("bad", ["", "nope", "zz.0123456789abcdef", f"{CELL}.short"])
def test_an_id_that_names_no_cell_has_no_route(bad: str) -> None:
    with pytest.raises(NotFound):
        _ = OrderAct(user_id="u", key="k", order_id=bad, action="cancel", actor="buyer").route
    with pytest.raises(NotFound):
        _ = ChatSend(user_id="u", key="k", room_id=bad, text="x").route


def test_commands_are_frozen_and_survive_pickle() -> None:
    command = OrderAct(
        user_id="u", key="k", order_id=f"{CELL}.0123456789abcdef", action="cancel", actor="buyer"
    )
    copy = pickle.loads(pickle.dumps(command))
    assert copy == command and type(copy) is OrderAct and copy.route == command.route
    with pytest.raises(AttributeError):
        command.action = "refund"  # type: ignore[misc]
    read = RankRead(cell=CELL, user_id="u", lat=1.0, lng=2.0, items=({"id": "a"},))
    assert pickle.loads(pickle.dumps(read)) == read
