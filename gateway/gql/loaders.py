"""Batched loaders of one GraphQL request: every author, vendor or comment page a query
touches is read in one query per kind and tick, however many posts or listings ask (no N+1).

Built per request (a loader's cache must not outlive the caller's access rights) over a
``Db``: the services' pool, or in tests a wrapper that counts the queries.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from strawberry.dataloader import DataLoader

from store import social_store
from store.db import Db

Row = dict[str, Any]
CommentKey = tuple[str, int]
"""(post id, page size): the first page of a post's comments."""
CommentPage = tuple[list[Row], str | None]


@dataclass
class Loaders:
    db: Db
    users: DataLoader[str, Row | None] = field(init=False)
    vendors: DataLoader[str, Row | None] = field(init=False)
    comments: DataLoader[CommentKey, CommentPage] = field(init=False)

    def __post_init__(self) -> None:
        self.users = DataLoader(load_fn=self._users)
        self.vendors = DataLoader(load_fn=self._vendors)
        self.comments = DataLoader(load_fn=self._comments)

    async def _users(self, ids: Sequence[str]) -> list[Row | None]:
        found = await social_store.profiles(self.db, list(ids))
        return [found.get(i) for i in ids]

    async def _vendors(self, ids: Sequence[str]) -> list[Row | None]:
        found = await social_store.vendor_refs(self.db, list(ids))
        return [found.get(i) for i in ids]

    async def _comments(self, keys: Sequence[CommentKey]) -> list[CommentPage]:
        by_size: dict[int, list[str]] = defaultdict(list)
        for post_id, size in keys:
            by_size[size].append(post_id)
        pages: dict[CommentKey, CommentPage] = {}
        for size, post_ids in by_size.items():  # one query per page size asked (usually one)
            for post_id, page in (await social_store.comments_of(self.db, post_ids, size)).items():
                pages[(post_id, size)] = page
        return [pages[k] for k in keys]
