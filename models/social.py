"""Social rules beyond the feed's basics: author deletion, reposts, profile edits, search paging.

Pure data, no I/O. The shard commands here are run by actors/social_ops.py; the rest is what
services/social.py and services/search.py check before they read or write.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import ClassVar, Final

from models.auth import clean_display_name
from models.commands import RoutedBy, ShardCommand, command
from models.errors import BadRequest
from models.feed import PostCommand
from models.placement import cell_key

BIO_MAX_CHARS: Final = 280
SEARCH_KINDS: Final = ("posts", "listings", "vendors", "users")
SEARCH_QUERY_MAX_CHARS: Final = 100
_MEDIA_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


# -- shard commands -----------------------------------------------------------------------------
@command
class PostDelete(PostCommand):
    """The author deletes their post; routed to the post's cell (its id names it)."""

    op: ClassVar[str] = "post.delete"


@command
class PostShare(ShardCommand):
    """A repost into the sharer's cell feed, attributed to the original (``post_id``, which
    may live in any cell: the sharer's cell owner reads it, never writes it)."""

    op: ClassVar[str] = "post.share"
    cell: str
    lat: float
    lng: float
    post_id: str
    text: str = ""

    route_by: ClassVar[RoutedBy] = RoutedBy("cell", cell_key)


# -- profiles -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProfileEdit:
    """A validated ``PATCH /api/v1/me``: None leaves a field as it is; ``clear_avatar`` sets
    the avatar to none (``avatar_media_id: null``)."""

    display_name: str | None = None
    bio: str | None = None
    avatar_media_id: str | None = None
    clear_avatar: bool = False

    @classmethod
    def of(cls, fields: dict[str, object]) -> ProfileEdit:
        """From the fields a client sent (absent: unchanged). Raises ``bad_request``."""
        if not fields:
            raise BadRequest("nothing to change: give display_name, bio or avatar_media_id")
        name = fields.get("display_name")
        bio = fields.get("bio")
        avatar = fields.get("avatar_media_id")
        if name is not None:
            name = clean_display_name(str(name))
        if bio is not None:
            bio = check_bio(str(bio))
        clear = "avatar_media_id" in fields and avatar is None
        if avatar is not None and not _MEDIA_ID.match(str(avatar)):
            raise BadRequest("avatar_media_id: not a media id")
        return cls(name, bio, None if avatar is None else str(avatar), clear)


def check_bio(bio: str) -> str:
    text = bio.strip()
    if len(text) > BIO_MAX_CHARS:
        raise BadRequest(f"bio: at most {BIO_MAX_CHARS} characters")
    if any(ord(ch) < 32 and ch not in "\n\t" for ch in text):
        raise BadRequest("bio: control characters are not allowed")
    return text


# -- search -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SearchQuery:
    """A checked ``search`` request: the text, the kind, where (optional) and the page."""

    q: str
    kind: str
    lat: float | None
    lng: float | None
    offset: int
    limit: int

    @classmethod
    def of(
        cls, q: str, kind: str, lat: float | None, lng: float | None, cursor: str | None,
        limit: int, max_offset: int,
    ) -> SearchQuery:  # fmt: skip
        text = " ".join(q.split())
        if not text:
            raise BadRequest("q: give some words to search for")
        if len(text) > SEARCH_QUERY_MAX_CHARS:
            raise BadRequest(f"q: at most {SEARCH_QUERY_MAX_CHARS} characters")
        if kind not in SEARCH_KINDS:
            raise BadRequest(f"kind: one of {', '.join(SEARCH_KINDS)}")
        if (lat is None) != (lng is None):
            raise BadRequest("give both lat and lng, or neither")
        offset = decode_offset(cursor) if cursor else 0
        if offset > max_offset:
            raise BadRequest(f"cursor: search pages end after {max_offset} results")
        return cls(text, kind, lat, lng, offset, limit)

    def next_cursor(self, got: int, max_offset: int) -> str | None:
        """The cursor after a page of ``got`` results (None: the last page)."""
        after = self.offset + got
        if got < self.limit or after > max_offset:
            return None
        return encode_offset(after)


def encode_offset(offset: int) -> str:
    return base64.urlsafe_b64encode(f"s:{offset}".encode()).decode().rstrip("=")


def decode_offset(token: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        tag, value = raw.split(":", 1)
        offset = int(value)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadRequest("cursor is not valid") from None
    if tag != "s" or offset < 0:
        raise BadRequest("cursor is not valid")
    return offset
