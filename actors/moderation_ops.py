"""Moderation at the owner of the content's cell: removal and its reversal, with live events.

- a post: ``removed_at`` set, out of the cell's memory feed, ``post.removed {post_id}`` on its
  feed stream (restored: back in memory, ``post.restored {post}``);
- a comment: ``comment.removed {post_id, comment_id}`` on its post's feed stream;
- a listing: ``active`` false and ``removed_at`` set (its vendor cannot re-activate it),
  ``listing.updated`` with ``active: false`` on its cell's feed stream;
- a chat message: ``chat.message_removed {room_id, message_id}`` on its room stream (and, for
  a direct room, whose messages also reach its members' inboxes, on theirs).
In the same transaction: the audit entry, the moderation action (an appeal names it; a restore
marks it reversed) and a ``notification`` to the author's inbox with the reason. Removing what
is already removed (or restoring what is visible) is a ``conflict``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from actors import listing_memory
from actors.market_ops import _listing_changed
from models.admin import target_ref
from models.chat import room_stream
from models.commands import ShardCommand
from models.errors import BadRequest, Conflict, NotFound
from models.ids import cell_of
from models.moderation import EntityRemove, MessageRemove
from models.streams import feed_stream, user_stream
from store import admin_store, chat_store, feed_store
from store import market_store as ms

if TYPE_CHECKING:
    from actors.cell_host import CellHost, Emitted, Handler
    from actors.group_commit import Tx


def _flip(restore: bool) -> tuple[str, str]:
    """(the SET expression, the WHERE condition) of a removal or a restore."""
    if restore:
        return "NULL", "removed_at IS NOT NULL"
    return "now()", "removed_at IS NULL"


async def _missing(tx: Tx, table: str, ident: str, what: str) -> Exception:
    exists = await tx.conn.fetchval(f"SELECT 1 FROM {table} WHERE id = $1", ident)
    if exists:
        return Conflict(f"that {what} is already in that state")
    return NotFound(f"no such {what}")


async def _post(host: CellHost, tx: Tx, cmd: EntityRemove, out: Emitted) -> dict[str, Any]:
    value, cond = _flip(cmd.restore)
    row = await tx.conn.fetchrow(
        f"UPDATE posts SET removed_at = {value} WHERE id = $1 AND {cond}"
        " AND deleted_at IS NULL RETURNING author_id, cell",  # an author's deletion stays
        cmd.target_id,
    )
    if row is None:
        raise await _missing(tx, "posts", cmd.target_id, "post")
    cell = row["cell"]
    feed = (await host.cell(cell)).feed
    if cmd.restore:
        post = await feed_store.get_post(tx.conn, cmd.target_id)
        assert post is not None
        out.add(feed_stream(cell), "post.restored", {"post": post})
        tx.then(lambda: feed.add(dict(post)))
    else:
        out.add(feed_stream(cell), "post.removed", {"post_id": cmd.target_id})
        tx.then(lambda: feed.remove(cmd.target_id))
    return {"user_id": row["author_id"]}


async def _comment(host: CellHost, tx: Tx, cmd: EntityRemove, out: Emitted) -> dict[str, Any]:
    value, cond = _flip(cmd.restore)
    row = await tx.conn.fetchrow(
        f"UPDATE comments SET removed_at = {value} WHERE id = $1 AND {cond}"
        " RETURNING author_id, cell, post_id",
        cmd.target_id,
    )
    if row is None:
        raise await _missing(tx, "comments", cmd.target_id, "comment")
    ev = "comment.restored" if cmd.restore else "comment.removed"
    data = {"post_id": row["post_id"], "comment_id": cmd.target_id}
    out.add(feed_stream(row["cell"]), ev, data)
    return {"user_id": row["author_id"]}


async def _listing(host: CellHost, tx: Tx, cmd: EntityRemove, out: Emitted) -> dict[str, Any]:
    value, cond = _flip(cmd.restore)
    active = "true" if cmd.restore else "false"
    listing_memory.from_sql(host, tx, [cmd.target_id])  # its owner's memory of it goes stale
    author = await tx.conn.fetchval(
        f"UPDATE listings l SET removed_at = {value}, active = {active}, updated_at = now()"
        f" FROM vendors v WHERE l.id = $1 AND l.{cond} AND l.deleted_at IS NULL"
        " AND v.id = l.vendor_id RETURNING v.user_id",
        cmd.target_id,
    )
    if author is None:
        raise await _missing(tx, "listings", cmd.target_id, "listing")
    row = await ms.listing_row(tx.conn, cmd.target_id)
    assert row is not None
    _listing_changed(host, tx, out, ms.listing_public(row))  # listing.updated, active: false
    return {"user_id": author}


_KINDS = {"post": _post, "comment": _comment, "listing": _listing}


async def _record(
    tx: Tx, out: Emitted, cmd: EntityRemove | MessageRemove, kind: str, ident: str, author: str
) -> dict[str, Any]:
    """The audit entry, the moderation action and the author's notice of one change."""
    conn = tx.conn
    if cmd.restore:
        action_ids = [
            r["id"]
            for r in await conn.fetch(
                "SELECT id FROM moderation_actions WHERE kind = 'remove' AND target_kind = $1"
                " AND target_id = $2 AND reversed_at IS NULL",
                kind,
                ident,
            )
        ]
        await admin_store.reverse_actions(conn, action_ids, cmd.actor_id)
        action_id = action_ids[0] if action_ids else None
    else:
        row = await admin_store.add_action(
            conn, "remove", kind, ident, author, cmd.actor_id, cmd.reason
        )
        action_id = row["id"]
    result = {"action_id": action_id, "user_id": author}
    await admin_store.audit(
        conn, cmd.actor_id, cmd.action, target_ref(kind, ident), cmd.reason, result
    )
    notice = "moderation.restored" if cmd.restore else "moderation.removed"
    out.add(
        user_stream(author),
        "notification",
        {
            "kind": notice,
            "target": {"kind": kind, "id": ident},
            "reason": cmd.reason,
            "action_id": action_id,
        },
    )
    return {"removed": not cmd.restore, **result}


async def entity_remove(host: CellHost, tx: Tx, cmd: EntityRemove, out: Emitted) -> dict[str, Any]:
    handler = _KINDS.get(cmd.kind)
    if handler is None:
        raise BadRequest(f"cannot remove a {cmd.kind}")
    if cell_of(cmd.target_id) is None:
        raise NotFound(f"no such {cmd.kind}")
    changed = await handler(host, tx, cmd, out)
    return await _record(tx, out, cmd, cmd.kind, cmd.target_id, changed["user_id"])


async def message_remove(
    host: CellHost, tx: Tx, cmd: MessageRemove, out: Emitted
) -> dict[str, Any]:
    value, cond = _flip(cmd.restore)
    sender = await tx.conn.fetchval(
        f"UPDATE messages SET removed_at = {value} WHERE id = $1 AND room_id = $2 AND {cond}"
        " RETURNING sender_id",
        cmd.message_id,
        cmd.room_id,
    )
    if sender is None:
        raise await _missing(tx, "messages", cmd.message_id, "message")
    ev = "chat.message_restored" if cmd.restore else "chat.message_removed"
    data = {"room_id": cmd.room_id, "message_id": cmd.message_id}
    out.add(room_stream(cmd.room_id), ev, data)
    room = await chat_store.get_room(tx.conn, cmd.room_id)
    if room is not None and room["kind"] == "direct":  # its messages reach the inboxes too
        for member in room["members"]:
            out.add(user_stream(member), ev, data)
    return await _record(tx, out, cmd, "message", cmd.message_id, sender)


HANDLERS: dict[type[ShardCommand], Handler] = {
    EntityRemove: entity_remove,
    MessageRemove: message_remove,
}
