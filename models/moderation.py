"""Shard commands of moderation: content taken out of (or put back into) every read op by the
owner of its cell (rule 2), with its audit entry, its moderation action (what an appeal names)
and the author's notice in the same transaction. Sent by the control actor's services as the
system."""

from __future__ import annotations

from typing import ClassVar

from models.chat import RoomCommand
from models.commands import RoutedBy, ShardCommand, command, entity


@command
class EntityRemove(ShardCommand):
    """Remove (``restore``: put back) a post, comment or listing; routed by its id's cell."""

    op: ClassVar[str] = "moderation.remove"
    kind: str
    target_id: str
    reason: str
    actor_id: str | None = None
    """The moderator (None: the system, e.g. hidden after several reports)."""
    action: str = "content.remove"
    """The audit action: content.remove, content.hide or content.restore."""
    restore: bool = False

    route_by: ClassVar[RoutedBy] = RoutedBy("target_id", entity("content"))


@command
class MessageRemove(RoomCommand):
    """Remove (``restore``: put back) a chat message; routed by its room's home cell."""

    op: ClassVar[str] = "moderation.remove_message"
    message_id: str
    reason: str
    actor_id: str | None = None
    action: str = "content.remove"
    restore: bool = False
