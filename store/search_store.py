"""Search SQL: Postgres full-text search plus pg_trgm similarity, one query per kind.

A row matches when its tsvector matches the words (``websearch_to_tsquery``: stemmed, quoted
phrases, ``-word``) or when the query is trigram-close to a word run of its short text
(``<%``, word similarity above ``pg_trgm.word_similarity_threshold``, which migration 0013
sets to 0.5 for the database: one letter wrong in the middle of a ten-letter word scores
0.57). Relevance is 1 + ``ts_rank_cd`` for a full-text match, the word similarity for a
trigram one; given a point, it is divided by ``1 + distance / scale`` so near matches come
first and a far one must be much more relevant to beat them. Each match path is driven by its
own GIN index (migration 0013) and capped (``search_candidates``), so no query's work grows
with the table. Pages are offsets into that order, bounded by the caller
(services/search.py).
"""

from __future__ import annotations

from typing import Any

import asyncpg

from models.social import SearchQuery
from store.db import Db
from store.feed_store import POST_COLUMNS, post_from_row
from store.market_store import LISTING_COLUMNS, listing_public

_DISTANCE = (
    "(6371008.8 * sqrt(power(radians(x.lat - $5), 2)"
    " + power(radians(x.lng - $6) * cos(radians(($5 + x.lat) / 2)), 2)))"
)


_KINDS: dict[str, tuple[str, str, str, str, bool]] = {
    # kind: (columns, table, text config and trigram column, visible rows, has a location)
    "posts": (POST_COLUMNS, "posts", "english:text", "{t}.removed_at IS NULL", True),
    "listings": (
        LISTING_COLUMNS,
        "listings",
        "english:title",
        "{t}.active AND {t}.deleted_at IS NULL AND NOT {t}.vendor_suspended",
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
        "{t}.disabled_at IS NULL",
        False,
    ),
}


def search_sql(kind: str, located: bool) -> str:
    """The ranked query of one kind: $1 q, $2 limit, $3 offset, $4 candidates per match path;
    located: $5 lat, $6 lng and $7 the distance scale in km. Shared with bench/search.py, so
    the benchmark measures the query the server runs.

    Two match paths, each driven by its own GIN index and capped at $4 rows (the work of a
    query is bounded however common its words): the full-text path (relevance 1 +
    ``ts_rank_cd``: a word as written beats a near miss) and the trigram path (relevance the
    word similarity, 0.5 to 1), which runs only when the full-text path found fewer rows than
    the page reaches (its matches would rank below them anyway: typos fill in where words as
    written run out). A row found by both keeps the better."""
    columns, table, how, visible, has_location = _KINDS[kind]
    config, trigram = how.split(":")
    located = located and has_location
    seen = visible.format(t="t")
    score = f"(b.rel / (1 + {_DISTANCE} / ($7 * 1000.0)))" if located else "b.rel"
    cols = ", ".join(f"x.{c.strip()}" for c in columns.split(","))
    return (
        f"WITH q AS (SELECT websearch_to_tsquery('{config}', $1) AS tsq),"
        f" fts AS MATERIALIZED (SELECT t.id, 1 + ts_rank_cd(t.search, q.tsq) AS rel"
        f" FROM {table} t, q WHERE t.search @@ q.tsq AND {seen} LIMIT $4),"
        f" tri AS (SELECT t.id, word_similarity($1, t.{trigram}) AS rel FROM {table} t"
        f" WHERE (SELECT count(*) FROM fts) < $2::int + $3::int AND $1 <% t.{trigram} AND {seen}"
        f" LIMIT $4),"
        f" b AS (SELECT id, max(rel) AS rel FROM (SELECT * FROM fts UNION ALL"
        f" SELECT * FROM tri) AS hits GROUP BY id)"
        f" SELECT {cols}, {score} AS score"
        + (f", {_DISTANCE} AS distance_m" if located else "")
        + f" FROM b JOIN {table} x ON x.id = b.id"
        f" ORDER BY score DESC, x.id LIMIT $2 OFFSET $3"
    )


def ilike_sql(kind: str) -> str:
    """The plain baseline bench/search.py compares with: a substring scan, newest first."""
    columns, table, how, visible, _ = _KINDS[kind]
    column = how.split(":")[1]
    order = "created_at DESC, id DESC"
    return (
        f"SELECT {columns} FROM {table} WHERE {visible.format(t=table)}"
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
    db: Db, query: SearchQuery, candidates: int, scale_km: float, timeout_s: float
) -> list[dict[str, Any]]:
    """One page of ``query``, best first. Raises ``TimeoutError`` past ``timeout_s``."""
    located = query.lat is not None and query.lng is not None and _KINDS[query.kind][4]
    args: list[Any] = [query.q, query.limit, query.offset, candidates]
    if located:
        args += [query.lat, query.lng, scale_km]
    rows = await db.fetch(search_sql(query.kind, located), *args, timeout=timeout_s)
    return [_item(query.kind, r) for r in rows]
