"""The social part of the OpenAPI document: profiles, follow lists, search and GraphQL
(merged by gateway/registry.py; the handlers are gateway/social_ops.py and graphql_api.py)."""

from __future__ import annotations

from typing import Any

from gateway.openapi_schema import Schema
from gateway.openapi_schema import errors as _errors
from gateway.openapi_schema import json_body as _json
from gateway.openapi_schema import obj as _obj

_STR: Schema = {"type": "string"}
_INT: Schema = {"type": "integer"}
_NULLABLE_STR: Schema = {"type": ["string", "null"]}
_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _q(name: str, schema: Schema, required: bool = False) -> Schema:
    return {"name": name, "in": "query", "required": required, "schema": schema}


_USER_PATH = {"name": "user_id", "in": "path", "required": True, "schema": _STR}
_PAGING = [
    _q("cursor", {"type": "string", "maxLength": 256}),
    _q("limit", {"type": "integer", "minimum": 1, "maximum": 100}),
]
_PROFILE_REPLY = {
    "200": {"description": "the profile", **_json(_obj(["user"], user=_ref("Profile")))}
}


def _follow_list(who: str) -> Schema:
    return {
        "get": {
            "summary": f"{who}, newest follow first",
            "security": _BEARER,
            "parameters": [_USER_PATH, *_PAGING],
            "responses": {
                "200": {
                    "description": "a page",
                    **_json(
                        _obj(
                            ["items", "next_cursor"],
                            items={"type": "array", "items": _ref("FollowEntry")},
                            next_cursor=_NULLABLE_STR,
                        )
                    ),
                },
                **_errors(400, 401, 404, 429),
            },
        }
    }


OPENAPI_SCHEMAS: dict[str, Any] = {
    "Profile": _obj(
        ["id", "display_name", "bio", "avatar", "followers", "following", "posts", "joined_at"],
        id=_STR,
        display_name=_STR,
        bio=_STR,
        avatar={**_NULLABLE_STR, "description": "a media id (docs/media.md), or null"},
        avatar_url={"type": "string", "description": "the avatar's 256 px variant"},
        followers=_INT,
        following=_INT,
        posts=_INT,
        joined_at={"type": "string", "format": "date-time"},
        vendor=_obj(
            ["id", "name", "category", "cell"], id=_STR, name=_STR, category=_STR, cell=_STR
        ),
    ),
    "FollowEntry": _obj(
        ["id", "display_name", "avatar", "followed_at"],
        id=_STR,
        display_name=_STR,
        avatar=_NULLABLE_STR,
        followed_at={"type": "string", "format": "date-time"},
    ),
}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/users/{user_id}": {
        "get": {
            "summary": "A user's public profile",
            "security": _BEARER,
            "parameters": [_USER_PATH],
            "responses": {**_PROFILE_REPLY, **_errors(401, 404, 429)},
        }
    },
    "/api/v1/users/{user_id}/followers": _follow_list("Who follows the user"),
    "/api/v1/users/{user_id}/following": _follow_list("Whom the user follows"),
    "/api/v1/me": {
        "patch": {
            "summary": "Edit the caller's own profile (an absent field is unchanged)",
            "security": _BEARER,
            "requestBody": _json(
                {
                    "type": "object",
                    "minProperties": 1,
                    "properties": {
                        "display_name": {"type": "string", "minLength": 1, "maxLength": 64},
                        "bio": {"type": "string", "maxLength": 280},
                        "avatar_media_id": {
                            "type": ["string", "null"],
                            "pattern": "^[A-Za-z0-9._:-]{1,128}$",
                            "description": "a media id from POST /api/v1/media; null clears",
                        },
                    },
                }
            ),
            "responses": {**_PROFILE_REPLY, **_errors(400, 401, 403, 404, 413, 429)},
        }
    },
    "/api/v1/search": {
        "get": {
            "summary": "Search posts, listings, vendors or users (full text and typos)",
            "description": "Ranked by text relevance and, given lat and lng, distance; pages "
            "end after HL_SEARCH_MAX_OFFSET results (docs/social.md).",
            "security": _BEARER,
            "parameters": [
                _q("q", {"type": "string", "minLength": 1, "maxLength": 100}, required=True),
                _q("kind", {"enum": ["posts", "listings", "vendors", "users"]}, required=True),
                _q("lat", {"type": "number", "minimum": -90, "maximum": 90}),
                _q("lng", {"type": "number", "minimum": -180, "maximum": 180}),
                _q("cursor", {"type": "string", "maxLength": 256}),
                _q("limit", {"type": "integer", "minimum": 1, "maximum": 50}),
            ],
            "responses": {
                "200": {
                    "description": "a page, best first; each item has its score",
                    **_json(
                        _obj(
                            ["items", "next_cursor"],
                            items={"type": "array", "items": {"type": "object"}},
                            next_cursor=_NULLABLE_STR,
                        )
                    ),
                },
                **_errors(400, 401, 429, 503),
            },
        }
    },
}
