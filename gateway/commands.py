"""Typed shapes of websocket requests (PROTOCOL.md). Frames are validated into these at the edge."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints

from models.media import MEDIA_ID_PATTERN

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=128)]
MediaId = Annotated[str, StringConstraints(pattern=MEDIA_ID_PATTERN)]
"""An uploaded photo (POST /api/v1/media) of the caller's, by id."""


class _Req(BaseModel):
    """An op's ``data``: a field it does not define is refused, as REST refuses one."""

    model_config = ConfigDict(extra="forbid", frozen=True)


FrameId = (
    Annotated[StrictInt, Field(ge=-(2**63), le=2**63 - 1)]
    | Annotated[str, StringConstraints(max_length=64)]
)
"""A request id: an int64 (never a boolean) or a short string; echoed as ``re``."""


class Envelope(BaseModel):
    """``{"id", "op", "key"?, "data"?}``; other top-level members are ignored (room for
    later protocol versions)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: FrameId
    op: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    key: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class LatLng(_Req):
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False)
    lng: float = Field(ge=-180, le=180, allow_inf_nan=False)


class OptionalLatLng(_Req):
    lat: float | None = Field(None, ge=-90, le=90, allow_inf_nan=False)
    lng: float | None = Field(None, ge=-180, le=180, allow_inf_nan=False)


class Locate(LatLng):
    pass


class PostCreate(OptionalLatLng):
    text: Text
    media: list[MediaId] = Field(default_factory=list, max_length=10)


class CommentCreate(_Req):
    post_id: Id
    text: Text


class PostRef(_Req):
    post_id: Id


class UserRef(_Req):
    user_id: Id


class FeedGet(OptionalLatLng):
    cursor: Annotated[str, StringConstraints(max_length=256)] | None = None
    limit: int = Field(20, ge=1, le=100)
    sort: Annotated[str, StringConstraints(pattern="^(relevance|newest|following)$")] | None = None
    """None: relevance when a ranking model covers the cell, else newest; ``following``: posts
    of the people the caller follows, newest first, wherever they are (no location needed)."""


class Since(_Req):
    epoch: Annotated[str, StringConstraints(max_length=64)]
    offset: int = Field(ge=0, le=2**63 - 1)


class Subscribe(_Req):
    stream: Annotated[str, StringConstraints(max_length=128)]
    since: Since | None = None


class Unsubscribe(_Req):
    stream: Annotated[str, StringConstraints(max_length=128)]
