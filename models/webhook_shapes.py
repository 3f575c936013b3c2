"""Reading a payment provider's webhook JSON by path (PayPal's and Razorpay's events).

Providers nest what matters (``payload.payment.entity.order_id``, ``resource.supplementary_data
.related_ids.order_id``) and leave parts out or null as they please. These readers walk such a
path once: a part that is missing or null reads as empty (``{}``, ``None``, ``[]``: the event
simply does not say), a part of the wrong type (a string where an object belongs, a number as
a list) is a typed ``bad_request`` naming the path. So a malformed body is a 400 that changed
nothing (rule 5), never a ``KeyError`` or an ``AttributeError`` that would be a 500.
"""

from __future__ import annotations

from typing import Any

from models.errors import BadRequest


def _where(path: tuple[str, ...]) -> str:
    return ".".join(path) or "the event"


def obj(value: Any, *path: str) -> dict[str, Any]:
    """The object at ``path`` under ``value`` (``{}`` where a step is missing or null)."""
    here = value
    for i, key in enumerate(path):
        if here is None:
            return {}
        if not isinstance(here, dict):
            raise BadRequest(f"{_where(path[:i])}: an object expected")
        here = here.get(key)
    if here is None:
        return {}
    if not isinstance(here, dict):
        raise BadRequest(f"{_where(path)}: an object expected")
    return here


def text(value: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    """The string ``value[key]``; None when missing or null (``bad_request`` if required)."""
    found = value.get(key)
    if found is None and not required:
        return None
    if not isinstance(found, str) or (required and not found):
        raise BadRequest(f"{key}: a string expected")
    return found


def whole(value: dict[str, Any], key: str) -> int | None:
    """The integer ``value[key]`` (not a boolean); None when missing or null."""
    found = value.get(key)
    if found is None:
        return None
    if isinstance(found, bool) or not isinstance(found, int):
        raise BadRequest(f"{key}: an integer expected")
    return found


def objects(value: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The list of objects ``value[key]`` (``[]`` when missing or null; null items skipped)."""
    found = value.get(key)
    if found is None:
        return []
    if not isinstance(found, list):
        raise BadRequest(f"{key}: a list expected")
    if any(item is not None and not isinstance(item, dict) for item in found):
        raise BadRequest(f"{key}: a list of objects expected")
    return [item for item in found if item is not None]


def first(value: dict[str, Any], key: str) -> dict[str, Any]:
    """The first object of the list ``value[key]`` (``{}`` when there is none)."""
    found = objects(value, key)
    return found[0] if found else {}
