"""Typed shard commands: what the services send to the owner of a placement key.

Every shard op has one frozen command type (in ``models/<feature>.py``), built by the services
and received as it is by its actor handler; ``actors/registry.py`` maps each type to its handler
(one table, read by the shard and by the in-memory transport). A command carries who asks
(``user_id``: the idempotency namespace), the client's idempotency ``key`` and the op's own
fields; its ``route`` (the placement key of the owner) is derived from those fields, so the
shard checks ownership of exactly what the command touches. Nothing that decides access is a
field the caller picks: the shard derives it (a room's kind from its id, an order's owner from
its row).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, TypeVar, dataclass_transform

from models.errors import NotFound
from models.ids import cell_of
from models.placement import cell_key

T = TypeVar("T")


@dataclass_transform(frozen_default=True, kw_only_default=True)
def command(cls: type[T]) -> type[T]:
    """Declare a command (or read) type: a frozen, slotted dataclass of keyword fields."""
    return dataclass(frozen=True, slots=True, kw_only=True)(cls)


@dataclass(frozen=True, slots=True)
class RoutedBy:
    """Where a command (or read) type goes: the placement key made from one of its fields."""

    field: str
    key: Callable[[str], str]

    def of(self, command: object) -> str:
        return self.key(getattr(command, self.field))


@command
class ShardCommand:
    """A mutation for the owner of ``route``; idempotent by ``(user_id, key, op)``. Each op's
    type names its op and how it is routed (``route_by``)."""

    op: ClassVar[str] = ""
    route_by: ClassVar[RoutedBy]
    user_id: str
    key: str

    @property
    def route(self) -> str:
        return self.route_by.of(self)

    def recorded(self) -> bool:
        """Does its owner keep its first result under ``(user_id, key, op)`` (an idempotency
        record, written with it) for a retry to answer? Yes, unless a repeat is answered by the
        state the command left (a system step of an order: models/market.py ``OrderAct``)."""
        return True


@command
class ShardRead:
    """A read answered by the owner of ``route`` (state only the owner holds)."""

    op: ClassVar[str] = ""
    route_by: ClassVar[RoutedBy]

    @property
    def route(self) -> str:
        return self.route_by.of(self)


def entity(what: str) -> Callable[[str], str]:
    """Routing by a cell-scoped entity id (``<cell>.<id>``): ``not_found`` names ``what``."""

    def key(entity_id: str) -> str:
        return route_of(entity_id, what)

    return key


def route_of(entity_id: str, what: str) -> str:
    """The placement key of a cell-scoped entity (post, room, listing, order); ``not_found``
    for an id that names no cell, so a made-up id never reaches a shard."""
    cell = cell_of(entity_id)
    if cell is None:
        raise NotFound(f"no such {what}")
    return cell_key(cell)
