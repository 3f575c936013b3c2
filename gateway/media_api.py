"""Photo uploads at the edge: thin adapters over services/media.py, and their OpenAPI part.

- ``POST /api/v1/media`` (Bearer): a ``multipart/form-data`` body with one part, ``file``,
  read in chunks and refused (``too_large``) as soon as it passes ``media_max_upload_bytes``
  (the app's JSON body limit does not apply to it) → 201 ``{media}``.
- ``DELETE /api/v1/media/{media_id}`` (the owner, an unused upload) → 204.
- ``GET /api/v1/media/{media_id}`` → ``{media}``; ``GET /media/{media_id}/{size}.webp`` → the
  variant's bytes with its ETag (the sha256 of its bytes), ``304`` on a matching
  ``If-None-Match``, and an immutable ``Cache-Control`` once the media is attached.
Both reads take an optional Bearer: a pending upload is visible to its owner only.
"""

from __future__ import annotations

from typing import Any

from aiohttp import BodyPartReader, web

from gateway.auth import require_principal
from gateway.context import SERVICES
from gateway.openapi_schema import ERROR, Schema
from gateway.openapi_schema import errors as _errors
from gateway.openapi_schema import json_body as _json
from gateway.openapi_schema import obj as _obj
from models.errors import BadRequest, NotFound, TooLarge
from models.media import MEDIA_ID_PATTERN, VARIANT_SIZES

_CHUNK = 64 * 1024
_MULTIPART_SLACK = 16 * 1024
"""Room for the multipart framing (boundaries, part headers) around the file itself."""


async def _viewer(request: web.Request) -> str | None:
    """The signed-in caller if the request says who it is (a bad token is refused)."""
    if "Authorization" not in request.headers:
        return None
    return (await require_principal(request)).user_id


async def read_file(request: web.Request, limit: int) -> bytes:
    """The ``file`` part of a multipart body, at most ``limit`` bytes; nothing else may come."""
    if request.content_length is not None and request.content_length > limit + _MULTIPART_SLACK:
        raise TooLarge(f"the upload is over {limit} bytes", limit_bytes=limit)
    if request.content_type != "multipart/form-data":
        raise BadRequest("send multipart/form-data with one part named file")
    data: bytes | None = None
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or part.name != "file":
                raise BadRequest("the body holds one part only, named file")
            if data is not None:
                raise BadRequest("one file per upload")
            data = await _read_part(part, limit)
    except (ValueError, AssertionError, RuntimeError, LookupError) as exc:
        raise BadRequest("the body is not well-formed multipart/form-data") from exc
    if not data:
        raise BadRequest("no file: send one part named file")
    return data


async def _read_part(part: BodyPartReader, limit: int) -> bytes:
    buf = bytearray()
    while chunk := await part.read_chunk(_CHUNK):
        buf += chunk
        if len(buf) > limit:
            raise TooLarge(f"the file is over {limit} bytes", limit_bytes=limit)
    return bytes(buf)


async def upload_view(request: web.Request) -> web.Response:
    principal = await require_principal(request)
    services = request.app[SERVICES]
    data = await read_file(request, services.settings.media_max_upload_bytes)
    media = await services.media.upload(principal.user_id, data)
    return web.json_response({"media": media}, status=201)


def _media_id(request: web.Request) -> str:
    media_id = request.match_info["media_id"]
    if len(media_id) != 33:
        raise NotFound("no such media")
    return media_id


async def describe_view(request: web.Request) -> web.Response:
    viewer = await _viewer(request)
    media = await request.app[SERVICES].media.describe(_media_id(request), viewer)
    return web.json_response({"media": media})


async def delete_view(request: web.Request) -> web.Response:
    principal = await require_principal(request)
    await request.app[SERVICES].media.remove(principal.user_id, _media_id(request))
    return web.Response(status=204)


async def variant_view(request: web.Request) -> web.Response:
    viewer = await _viewer(request)
    size = int(request.match_info["size"])
    served = await request.app[SERVICES].media.variant(
        _media_id(request), size, viewer, request.headers.get("If-None-Match")
    )
    headers = {
        "ETag": served.etag,
        "Cache-Control": served.cache_control,
        "Cross-Origin-Resource-Policy": "cross-origin",  # an <img> of any origin may show it
        "Content-Security-Policy": "default-src 'none'; sandbox",
    }
    if served.cache_control.startswith("private"):
        headers["Vary"] = "Authorization"
    if served.data is None:
        return web.Response(status=304, headers=headers)
    return web.Response(body=served.data, content_type="image/webp", headers=headers)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/media", upload_view)
    app.router.add_get("/api/v1/media/{media_id}", describe_view)
    app.router.add_delete("/api/v1/media/{media_id}", delete_view)
    app.router.add_get(r"/media/{media_id}/{size:\d{1,5}}.webp", variant_view)


# -- OpenAPI --------------------------------------------------------------------------------------
_STR: Schema = {"type": "string"}
_INT: Schema = {"type": "integer"}
_ID: Schema = {"type": "string", "pattern": MEDIA_ID_PATTERN}
_OPTIONAL_BEARER: list[dict[str, list[str]]] = [{}, {"bearer": []}]
_415 = {"415": {"description": "not_an_image: not a JPEG, PNG or WebP", **_json(ERROR)}}

OPENAPI_SCHEMAS: dict[str, Any] = {
    "Media": _obj(
        ["id", "url", "width", "height", "variants"],
        id=_ID,
        url=_STR,
        width=_INT,
        height=_INT,
        variants={
            "type": "array",
            "items": _obj(
                ["size", "url", "width", "height", "bytes"],
                size={"type": "integer", "enum": list(VARIANT_SIZES)},
                url=_STR,
                width=_INT,
                height=_INT,
                bytes=_INT,
            ),
        },
        content_type={"type": "string", "enum": ["image/webp"]},
        created_at={"type": "string", "format": "date-time"},
        attached={"type": "boolean"},
        expires_at={"type": ["string", "null"], "format": "date-time"},
    )
}
_MEDIA = _obj(["media"], media={"$ref": "#/components/schemas/Media"})

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/media": {
        "post": {
            "summary": "Upload a photo (JPEG, PNG or WebP, judged by its content)",
            "description": "Decoded off the event loop; oriented, every piece of metadata"
            " (EXIF with GPS, XMP, ICC) stripped, resized to 256 and 1024 px WebP."
            " Pending (visible to its owner only) until a post, listing or profile uses"
            " it; deleted if none does within HL_MEDIA_PENDING_TTL_S. See docs/media.md.",
            "security": [{"bearer": []}],
            "requestBody": {
                "content": {
                    "multipart/form-data": {
                        "schema": _obj(["file"], file={"type": "string", "format": "binary"})
                    }
                }
            },
            "responses": {
                "201": {"description": "accepted", **_json(_MEDIA)},
                **_errors(400, 401, 413, 429),
                **_415,
            },
        }
    },
    "/api/v1/media/{media_id}": {
        "get": {
            "summary": "A media's description (pending: its owner only)",
            "security": _OPTIONAL_BEARER,
            "parameters": [{"name": "media_id", "in": "path", "required": True, "schema": _ID}],
            "responses": {
                "200": {"description": "media", **_json(_MEDIA)},
                **_errors(401, 404, 429),
            },
        },
        "delete": {
            "summary": "Withdraw one of your unused uploads (a used one: 409)",
            "security": [{"bearer": []}],
            "parameters": [{"name": "media_id", "in": "path", "required": True, "schema": _ID}],
            "responses": {
                "204": {"description": "deleted, with its stored variants"},
                **_errors(401, 404, 409, 429),
            },
        },
    },
    "/media/{media_id}/{size}.webp": {
        "get": {
            "summary": "One variant of a media (ETag, immutable once attached, 304)",
            "security": _OPTIONAL_BEARER,
            "parameters": [
                {"name": "media_id", "in": "path", "required": True, "schema": _ID},
                {
                    "name": "size",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "integer", "enum": list(VARIANT_SIZES)},
                },
                {"name": "If-None-Match", "in": "header", "required": False, "schema": _STR},
            ],
            "responses": {
                "200": {
                    "description": "the WebP bytes",
                    "content": {"image/webp": {"schema": {"type": "string", "format": "binary"}}},
                },
                "304": {"description": "not modified: the client's copy is current"},
                **_errors(401, 404, 429),
            },
        }
    },
}
