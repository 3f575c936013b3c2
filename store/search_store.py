"""Search SQL: Postgres full-text search plus pg_trgm similarity, one query per kind.

A row matches when its tsvector matches the words (``websearch_to_tsquery``: stemmed, quoted
phrases, ``-word``) or when the query is trigram-close to a word run of its short text
(``<%``, word similarity above ``pg_trgm.word_similarity_threshold``, which migration 0013
sets to 0.5 for the database: one letter wrong in the middle of a ten-letter word scores
0.57). Relevance is ``ts_rank_cd`` plus that
word similarity; given a point, it is divided by ``1 + distance / scale`` so near matches come
first and a far one must be much more relevant to beat them. Both match paths use GIN indexes
(migration 0013). Pages are offsets into that order, bounded by the caller
(services/search.py).
"""

from __future__ import annotations

from typing import Any

import asyncpg

from models.social import SearchQuery
from store.db import Db
from store.feed_store import POST_COLUMNS, post_from_row
from store.market_store import _LISTING_COLUMNS, listing_public

_DISTANCE = (
    "(6371008.8 * sqrt(power(radians(lat - $4), 2)"
    " + power(radians(lng - $5) * cos(radians(($4 + lat) / 2)), 2)))"
)


def _scored(relevance: str, located: bool) -> str:
    if not located:
        return f"({relevance})"
    return f"(({relevance}) / (1 + {_DISTANCE} / ($6 * 1000.0)))"


_KINDS: dict[str, tuple[str, str, str, str, bool]] = {
    # kind: (columns, table, text config and trigram column, visible rows, has a location)
    "posts": (POST_COLUMNS, "posts", "english:text", "removed_at IS NULL", True),
    "listings": (
        _LISTING_COLUMNS,
        "listings",
        "english:title",
        "active AND deleted_at IS NULL",
        True,
    ),
    "vendors": (
        "id, user_id, name, category, cell, lat, lng, created_at",
        "vendors",
        "english:name",
        "true",
        True,
    ),
    "users": (
        "id, display_name, bio, avatar_media_id, created_at",
        "users",
        "simple:display_name",
        "disabled_at IS NULL",
        False,
    ),
}


def search_sql(kind: str, located: bool) -> str:
    """The ranked query of one kind: $1 q, $2 limit, $3 offset; located: $4 lat, $5 lng and
    $6 the distance scale in km.
    Shared with bench/search.py, so the benchmark measures the query the server runs."""
    columns, table, how, visible, has_location = _KINDS[kind]
    config, trigram = how.split(":")
    relevance = f"ts_rank_cd(search, tsq) + word_similarity($1, {trigram})"
    located = located and has_location
    score = _scored(relevance, located)
    return (
        f"SELECT {columns}, {score} AS score"
        + (f", {_DISTANCE} AS distance_m" if located else "")
        + f" FROM {table}, websearch_to_tsquery('{config}', $1) AS tsq"
        f" WHERE {visible} AND (search @@ tsq OR $1 <% {trigram})"
        f" ORDER BY score DESC, id LIMIT $2 OFFSET $3"
    )


def ilike_sql(kind: str) -> str:
    """The plain baseline bench/search.py compares with: a substring scan, newest first."""
    columns, table, how, visible, _ = _KINDS[kind]
    column = how.split(":")[1]
    order = "created_at DESC, id DESC"
    return (
        f"SELECT {columns} FROM {table} WHERE {visible}"
        f" AND {column} ILIKE '%' || $1 || '%' ORDER BY {order} LIMIT $2"
    )


def _item(kind: str, row: asyncpg.Record) -> dict[str, Any]:
    if kind == "posts":
        out = post_from_row(row)
    elif kind == "listings":
        out = listing_public(row)
    elif kind == "vendors":
        out = {k: row[k] for k in ("id", "user_id", "name", "category", "cell", "lat", "lng")}
        out["created_at"] = row["created_at"].isoformat()
    else:
        out = {
            "id": row["id"],
            "display_name": row["display_name"],
            "bio": row["bio"],
            "avatar": row["avatar_media_id"],
            "joined_at": row["created_at"].isoformat(),
        }
    if "distance_m" in row.keys() and "distance_m" not in out:  # noqa: SIM118 - a Record
        out["distance_m"] = round(row["distance_m"], 1)
    out["score"] = round(float(row["score"]), 5)
    return out


async def search(
    db: Db, query: SearchQuery, scale_km: float, timeout_s: float
) -> list[dict[str, Any]]:
    """One page of ``query``, best first. Raises ``TimeoutError`` past ``timeout_s``."""
    located = query.lat is not None and query.lng is not None and _KINDS[query.kind][4]
    args: list[Any] = [query.q, query.limit, query.offset]
    if located:
        args += [query.lat, query.lng, scale_km]
    rows = await db.fetch(search_sql(query.kind, located), *args, timeout=timeout_s)
    return [_item(query.kind, r) for r in rows]
