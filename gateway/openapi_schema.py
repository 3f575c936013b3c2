"""Building blocks of the OpenAPI document, shared by its core (gateway/openapi.py) and each
feature's part of it (gateway/vendor_openapi.py, merged by gateway/registry.py).

A leaf: it imports nothing of the project, so a feature's description can use it without
importing the module that merges every feature's description.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]
"""A JSON Schema (or any other object of the document) as plain JSON data."""

ERROR: Schema = {"$ref": "#/components/schemas/Error"}

_ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    413: "too_large",
    429: "rate_limited",
    503: "unavailable",
}


def json_body(schema: Schema) -> Schema:
    """A request body or response whose content is ``schema`` as application/json."""
    return {"content": {"application/json": {"schema": schema}}}


def errors(*statuses: int) -> Schema:
    """The error responses ``statuses``, each an ``Error`` named by its code."""
    return {str(s): {"description": _ERROR_CODES[s], **json_body(ERROR)} for s in statuses}


def obj(required: list[str], **props: Schema) -> Schema:
    """An object schema with properties ``props``, of which ``required`` must be present."""
    return {"type": "object", "required": required, "properties": props}
