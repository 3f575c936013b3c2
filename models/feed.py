"""A cell's feed: the newest posts of one cell, kept in its shard's memory, and the feed cursor.

``CellFeed`` is a cache of Postgres (the truth): loaded when the cell activates, updated only
after a write has committed. It answers a page from memory when it can and says when the caller
must read older posts from Postgres. Pure data, no I/O.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any, ClassVar

from models.commands import RoutedBy, ShardCommand, command, entity
from models.errors import BadRequest
from models.placement import cell_key, user_key

Post = dict[str, Any]
"""Wire shape: id, cell, author_id, text, lat, lng, media, like_count, comment_count,
created_at (ISO 8601), created_ms (int), shared_from (a repost's ``{post_id, author_id,
cell}``, else null)."""


@dataclass(frozen=True, order=True)
class FeedCursor:
    """Position in a newest-first feed: strictly older than (created_ms, id)."""

    created_ms: int
    post_id: str

    def encode(self) -> str:
        raw = f"{self.created_ms}:{self.post_id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> FeedCursor:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            ms, post_id = raw.split(":", 1)
            return cls(int(ms), post_id)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise BadRequest("cursor is not valid") from None

    @classmethod
    def after(cls, post: Post) -> FeedCursor:
        return cls(int(post["created_ms"]), str(post["id"]))


def sort_key(post: Post) -> tuple[int, str]:
    return (int(post["created_ms"]), str(post["id"]))


@dataclass
class CellFeed:
    """The newest ``capacity`` visible posts of one cell, newest first.

    ``complete`` is True when memory holds every visible post of the cell (it had fewer than
    ``capacity`` when loaded and nothing has been evicted since).
    """

    cell: str
    capacity: int
    posts: list[Post] = field(default_factory=list)
    complete: bool = True

    @classmethod
    def loaded(cls, cell: str, capacity: int, newest_first: list[Post]) -> CellFeed:
        feed = cls(cell, capacity, list(newest_first[:capacity]))
        feed.complete = len(newest_first) < capacity
        return feed

    def add(self, post: Post) -> None:
        """Insert a committed post in order, evicting the oldest beyond capacity."""
        key = sort_key(post)
        index = 0
        while index < len(self.posts) and sort_key(self.posts[index]) > key:
            index += 1
        self.posts.insert(index, post)
        if len(self.posts) > self.capacity:
            self.posts.pop()
            self.complete = False

    def get(self, post_id: str) -> Post | None:
        for post in self.posts:
            if post["id"] == post_id:
                return post
        return None

    def update(self, post_id: str, **changes: Any) -> Post | None:
        post = self.get(post_id)
        if post is not None:
            post.update(changes)
        return post

    def remove(self, post_id: str) -> None:
        self.posts = [p for p in self.posts if p["id"] != post_id]

    def page(self, before: FeedCursor | None, limit: int) -> tuple[list[Post], bool]:
        """Up to ``limit`` posts older than ``before``; True if the answer is final.

        Not final means memory ran out before ``limit`` and older posts may exist in Postgres.
        """
        items = [p for p in self.posts if before is None or sort_key(p) < _key(before)]
        if len(items) >= limit:
            return items[:limit], True
        return items, self.complete


def _key(cursor: FeedCursor) -> tuple[int, str]:
    return (cursor.created_ms, cursor.post_id)


def merge_pages(pages: list[list[Post]], limit: int) -> tuple[list[Post], str | None]:
    """Merge newest-first pages from several cells into one page and its next cursor."""
    merged = sorted((p for page in pages for p in page), key=sort_key, reverse=True)[:limit]
    next_cursor = FeedCursor.after(merged[-1]).encode() if len(merged) == limit else None
    return merged, next_cursor


# -- shard commands (models/commands.py) --------------------------------------------------------
@command
class PostCreate(ShardCommand):
    op: ClassVar[str] = "post.create"
    cell: str
    lat: float
    lng: float
    text: str
    media: tuple[str, ...] = ()

    route_by: ClassVar[RoutedBy] = RoutedBy("cell", cell_key)


@command
class PostCommand(ShardCommand):
    """A command on one post, routed to the post's cell (from its id)."""

    post_id: str

    route_by: ClassVar[RoutedBy] = RoutedBy("post_id", entity("post"))


@command
class CommentCreate(PostCommand):
    op: ClassVar[str] = "comment.create"
    text: str


@command
class PostLike(PostCommand):
    op: ClassVar[str] = "post.like"


@command
class PostUnlike(PostCommand):
    op: ClassVar[str] = "post.unlike"


@command
class FollowCommand(ShardCommand):
    """A change to the caller's follows, routed to the caller's user key."""

    target_id: str

    route_by: ClassVar[RoutedBy] = RoutedBy("user_id", user_key)


@command
class UserFollow(FollowCommand):
    op: ClassVar[str] = "user.follow"


@command
class UserUnfollow(FollowCommand):
    op: ClassVar[str] = "user.unfollow"
