"""Profiles, follow lists, post pages, deletion, reposts, vendors near a point and search:
websocket ops and their REST twins, thin adapters over services/social.py and
services/search.py (one service function, two transports).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from gateway.auth import require_principal
from gateway.commands import Id, OptionalLatLng
from gateway.context import SERVICES
from gateway.http import parse_model, read_json
from gateway.ops import Call, Op
from gateway.social_openapi import OPENAPI_PATHS, OPENAPI_SCHEMAS
from services.caller import Caller

__all__ = ["OPENAPI_PATHS", "OPENAPI_SCHEMAS", "OPS", "add_routes"]

Cursor = Annotated[str, StringConstraints(max_length=256)]


class _Req(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UserGet(_Req):
    user_id: Id


class FollowList(_Req):
    user_id: Id
    cursor: Cursor | None = None
    limit: int = Field(50, ge=1, le=100)


class PostGet(_Req):
    post_id: Id
    cursor: Cursor | None = None
    """Pages the comments (oldest first)."""
    limit: int = Field(50, ge=1, le=100)


class PostRef(_Req):
    post_id: Id


class PostShare(OptionalLatLng):
    post_id: Id
    text: Annotated[str, StringConstraints(strip_whitespace=True)] = ""


class VendorsNearby(_Req):
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False)
    lng: float = Field(ge=-180, le=180, allow_inf_nan=False)
    category: Annotated[str, StringConstraints(max_length=64)] | None = None
    cursor: Cursor | None = None
    limit: int = Field(20, ge=1, le=100)


class Search(OptionalLatLng):
    q: Annotated[str, StringConstraints(max_length=200)]
    kind: Literal["posts", "listings", "vendors", "users"]
    cursor: Cursor | None = None
    limit: int = Field(20, ge=1, le=200)
    """Bounded again by ``search_max_limit`` (the service's answer names the bound)."""


class ProfileUpdate(_Req):
    """``PATCH /api/v1/me``: a field absent is unchanged; ``avatar_media_id: null`` clears."""

    display_name: Annotated[str, StringConstraints(max_length=200)] | None = None
    bio: Annotated[str, StringConstraints(max_length=1000)] | None = None
    avatar_media_id: Annotated[str, StringConstraints(max_length=128)] | None = None

    @field_validator("display_name", "bio", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        """Absent is unchanged; null is refused (a name or bio is not cleared by null)."""
        if value is None:
            raise ValueError("a string (leave the field out to keep it)")
        return value


def _sent(req: ProfileUpdate) -> dict[str, Any]:
    return req.model_dump(exclude_unset=True)


# -- websocket ----------------------------------------------------------------------------------
async def op_user_get(call: Call, req: UserGet) -> dict[str, Any]:
    return await call.services.social.profile(req.user_id)


async def op_followers(call: Call, req: FollowList) -> dict[str, Any]:
    return await call.services.social.follow_list(req.user_id, "followers", req.cursor, req.limit)


async def op_following(call: Call, req: FollowList) -> dict[str, Any]:
    return await call.services.social.follow_list(req.user_id, "following", req.cursor, req.limit)


async def op_profile_update(call: Call, req: ProfileUpdate) -> dict[str, Any]:
    return await call.services.social.edit_profile(call.caller, _sent(req))


async def op_post_get(call: Call, req: PostGet) -> dict[str, Any]:
    return await call.services.social.post_page(req.post_id, req.cursor, req.limit)


async def op_post_delete(call: Call, req: PostRef) -> dict[str, Any]:
    return await call.services.social.delete_post(call.caller, req.post_id)


async def op_post_share(call: Call, req: PostShare) -> dict[str, Any]:
    return await call.services.social.share_post(
        call.caller, req.post_id, req.text, req.lat, req.lng
    )


async def op_vendors_nearby(call: Call, req: VendorsNearby) -> dict[str, Any]:
    return await call.services.social.vendors_nearby(
        req.lat, req.lng, req.category, req.cursor, req.limit
    )


async def op_search(call: Call, req: Search) -> dict[str, Any]:
    return await call.services.search.search(
        req.q, req.kind, req.lat, req.lng, req.cursor, req.limit
    )


OPS: dict[str, Op] = {
    "user.get": Op(UserGet, op_user_get),
    "user.followers": Op(FollowList, op_followers),
    "user.following": Op(FollowList, op_following),
    "profile.update": Op(ProfileUpdate, op_profile_update, mutating=True),
    "post.get": Op(PostGet, op_post_get),
    "post.delete": Op(PostRef, op_post_delete, mutating=True),
    "post.share": Op(PostShare, op_post_share, mutating=True),
    "vendors.nearby": Op(VendorsNearby, op_vendors_nearby),
    "search": Op(Search, op_search),
}


# -- REST ---------------------------------------------------------------------------------------
class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("cursor", mode="before", check_fields=False)
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value


class PageQuery(_Query):
    cursor: Cursor | None = None
    limit: int = Field(50, ge=1, le=100)


class SearchQuery(_Query):
    q: Annotated[str, StringConstraints(max_length=200)]
    kind: Literal["posts", "listings", "vendors", "users"]
    lat: float | None = Field(None, ge=-90, le=90, allow_inf_nan=False)
    lng: float | None = Field(None, ge=-180, le=180, allow_inf_nan=False)
    cursor: Cursor | None = None
    limit: int = Field(20, ge=1, le=200)


async def user_view(request: web.Request) -> web.Response:
    await require_principal(request)
    social = request.app[SERVICES].social
    return web.json_response(await social.profile(request.match_info["user_id"]))


def _follow_view(direction: str) -> Any:
    async def view(request: web.Request) -> web.Response:
        await require_principal(request)
        q = parse_model(PageQuery, dict(request.query))
        social = request.app[SERVICES].social
        page = await social.follow_list(request.match_info["user_id"], direction, q.cursor, q.limit)
        return web.json_response(page)

    return view


async def patch_me_view(request: web.Request) -> web.Response:
    principal = await require_principal(request)
    body = await read_json(request, ProfileUpdate)
    social = request.app[SERVICES].social
    return web.json_response(await social.edit_profile(Caller(principal.user_id), _sent(body)))


async def search_view(request: web.Request) -> web.Response:
    await require_principal(request)
    q = parse_model(SearchQuery, dict(request.query))
    search = request.app[SERVICES].search
    return web.json_response(await search.search(q.q, q.kind, q.lat, q.lng, q.cursor, q.limit))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/users/{user_id}", user_view)
    app.router.add_get("/api/v1/users/{user_id}/followers", _follow_view("followers"))
    app.router.add_get("/api/v1/users/{user_id}/following", _follow_view("following"))
    app.router.add_patch("/api/v1/me", patch_me_view)
    app.router.add_get("/api/v1/search", search_view)
