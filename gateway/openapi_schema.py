"""Building blocks of the OpenAPI document, shared by its core (gateway/openapi.py) and each
feature's part of it (gateway/vendor_openapi.py, merged by gateway/registry.py).

A leaf: it imports nothing of the project, so a feature's description can use it without
importing the module that merges every feature's description.
"""

from __future__ import annotations

import json
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


NO_NUL = "^[^\\u0000]*$"
"""Every string the server takes is free of NUL bytes (gateway/input_guard.py)."""


def _tell_the_truth(schema: Any) -> None:
    """What every request schema of this server implies, written into ``schema`` in place:
    an object takes only the properties it lists (every body model forbids extras) unless it
    says otherwise, a required string is not empty, and no string holds a NUL byte."""
    if not isinstance(schema, dict):
        return
    for key in ("allOf", "anyOf", "oneOf"):
        for part in schema.get(key, ()):
            _tell_the_truth(part)
    if schema.get("type") == "object" and "properties" in schema:
        schema.setdefault("additionalProperties", False)
        for name, prop in schema["properties"].items():
            required = name in schema.get("required", ()) and isinstance(prop, dict)
            if required and prop.get("type") == "string" and "enum" not in prop:
                prop.setdefault("minLength", 1)
            _tell_the_truth(prop)
    if schema.get("type") == "array":
        _tell_the_truth(schema.get("items"))
    if schema.get("type") == "string":
        pattern = schema.get("pattern")
        if pattern is None and not {"enum", "format"} & schema.keys():
            schema["pattern"] = NO_NUL
        elif isinstance(pattern, str):  # a "not a space" class refuses NUL too
            schema["pattern"] = pattern.replace("[^\\s", "[^\\s\\u0000")


def truthful(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with every operation's request body and parameters made to say what the
    server enforces everywhere (``_tell_the_truth``); a request body is required unless the
    operation says it is not. ``spec`` is built of shared module data: it is copied first,
    through JSON, so no part of the copy is shared (a rule for a request never reaches a
    response schema built of the same pieces)."""
    spec = json.loads(json.dumps(spec))
    for path in spec.get("paths", {}).values():
        for operation in path.values():
            if not isinstance(operation, dict):
                continue
            body = operation.get("requestBody")
            if isinstance(body, dict):
                body.setdefault("required", True)
                for media in body.get("content", {}).values():
                    _tell_the_truth(media.get("schema"))
            for param in operation.get("parameters", ()):
                _tell_the_truth(param.get("schema"))
                if param.get("name") == "Idempotency-Key":  # a bad key 400, a reused one 409
                    responses = operation.setdefault("responses", {})
                    for status, answer in errors(400, 409).items():
                        responses.setdefault(status, answer)
    return spec
