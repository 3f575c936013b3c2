"""SQL of the recommender: interaction events in, versioned model blobs in and out.

Interactions come from three durable places, read as one stream: the ``interactions`` table
(views, purchases, check-ins, whatever a feature records with ``record``), and the product's own
``likes`` and ``comments`` rows on posts (so feed ops need no extra write). A post's "category"
is its author. Removed posts are left out.

Listings write two kinds of rows here: a ``view`` per buyer ``listing.get`` (``record_view``,
from the gateway: an append-only analytics row, no cell state) and a ``purchase`` per order line
when an order is paid (``record_purchases``, inside the owning shard's confirm transaction).
The catalog the trainer and the shards load holds the neighbourhood's posts and listings, with
listing prices in major units (models/recommend/listings.py) for the price band feature.
"""

from __future__ import annotations

import json
import time
from typing import Any

import asyncpg

from models.recommend.data import Interaction
from models.recommend.listings import major_units
from models.recommend.serving import Item, tz_offset_min
from store.db import Conn, Db

_EVENTS = """
SELECT user_id, item_id, kind, cell, lat, lng, category, price,
       extract(epoch FROM created_at)::float8 AS ts
  FROM interactions
 WHERE created_at >= to_timestamp($1) AND ($2::text[] IS NULL OR cell = ANY($2))
   AND ($3::text IS NULL OR user_id = $3)
UNION ALL
SELECT l.user_id, p.id, 'like', p.cell, p.lat, p.lng, p.author_id, NULL,
       extract(epoch FROM l.created_at)::float8
  FROM likes l JOIN posts p ON p.id = l.post_id
 WHERE p.removed_at IS NULL AND l.created_at >= to_timestamp($1)
   AND ($2::text[] IS NULL OR p.cell = ANY($2)) AND ($3::text IS NULL OR l.user_id = $3)
UNION ALL
SELECT c.author_id, p.id, 'comment', p.cell, p.lat, p.lng, p.author_id, NULL,
       extract(epoch FROM c.created_at)::float8
  FROM comments c JOIN posts p ON p.id = c.post_id
 WHERE p.removed_at IS NULL AND c.created_at >= to_timestamp($1)
   AND ($2::text[] IS NULL OR p.cell = ANY($2)) AND ($3::text IS NULL OR c.author_id = $3)
ORDER BY ts DESC
LIMIT $4
"""

_POSTS = """
SELECT id, cell, lat, lng, author_id, extract(epoch FROM created_at)::float8 AS ts
  FROM posts
 WHERE removed_at IS NULL AND created_at >= to_timestamp($1)
   AND ($2::text[] IS NULL OR cell = ANY($2))
 ORDER BY created_at DESC
 LIMIT $3
"""

_LISTINGS = """
SELECT id, cell, lat, lng, category, price, currency,
       extract(epoch FROM created_at)::float8 AS ts
  FROM listings
 WHERE deleted_at IS NULL AND active AND ($1::text[] IS NULL OR cell = ANY($1))
 ORDER BY created_at DESC
 LIMIT $2
"""

# A view is recorded at most once per user and listing per dedupe window, and never the
# vendor's own (a vendor checking its shop is not a buyer's interest).
_VIEW = """
INSERT INTO interactions (user_id, item_kind, item_id, kind, cell, lat, lng, category, price)
SELECT $1, 'listing', $2, 'view', $3, $4, $5, $6, $7
 WHERE NOT EXISTS (SELECT 1 FROM vendors WHERE id = $8 AND user_id = $1)
   AND NOT EXISTS (SELECT 1 FROM interactions WHERE user_id = $1 AND item_id = $2
                      AND kind = 'view' AND created_at > now() - make_interval(secs => $9))
"""


def _interaction(row: asyncpg.Record) -> Interaction:
    lng = row["lng"] if row["lng"] is not None else float("nan")
    return Interaction(
        user_id=row["user_id"],
        item_id=row["item_id"],
        timestamp=row["ts"],
        kind=row["kind"],
        lat=row["lat"] if row["lat"] is not None else float("nan"),
        lng=lng,
        cell=row["cell"],
        category=row["category"],
        tz_offset_min=tz_offset_min(lng),
    )


async def load_events(
    db: Db,
    cells: list[str] | None,
    since_s: float,
    limit: int,
    user_id: str | None = None,
) -> tuple[list[Item], list[Interaction]]:
    """Items (posts and listings of ``cells`` plus every interacted item) and interactions,
    oldest first.

    ``cells`` None means everywhere; at most ``limit`` newest interactions and posts.
    """
    rows = await db.fetch(_EVENTS, since_s, cells, user_id, limit)
    events = [_interaction(r) for r in reversed(rows)]
    items: dict[str, Item] = {}
    if user_id is None:
        for r in await db.fetch(_POSTS, since_s, cells, limit):
            items[r["id"]] = Item(
                r["id"], r["lat"], r["lng"], r["cell"], r["author_id"], r["ts"], float("nan")
            )
        for r in await db.fetch(_LISTINGS, cells, limit):
            price = major_units(r["price"], r["currency"])
            items[r["id"]] = Item(
                r["id"], r["lat"], r["lng"], r["cell"], r["category"], r["ts"], price
            )
    for r in rows:
        if r["item_id"] not in items and r["lat"] is not None:
            price = r["price"] if r["price"] is not None else float("nan")
            items[r["item_id"]] = Item(
                r["item_id"], r["lat"], r["lng"], r["cell"], r["category"], price=price
            )
    return list(items.values()), events


async def record(
    conn: Conn,
    user_id: str,
    item_kind: str,
    item_id: str,
    kind: str,
    cell: str,
    lat: float | None = None,
    lng: float | None = None,
    category: str | None = None,
    price: float | None = None,
) -> None:
    """Record one interaction (run it inside the mutation's own transaction)."""
    await conn.execute(
        "INSERT INTO interactions (user_id, item_kind, item_id, kind, cell, lat, lng, category,"
        " price) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        user_id,
        item_kind,
        item_id,
        kind,
        cell,
        lat,
        lng,
        category,
        price,
    )


async def record_view(db: Db, user_id: str, listing: dict[str, Any], dedupe_s: float) -> bool:
    """Record ``user_id`` viewing ``listing`` (``listing_public`` shape); True if a row was
    written (not a repeat within ``dedupe_s``, not the vendor's own listing)."""
    status = await db.execute(
        _VIEW,
        user_id,
        listing["id"],
        listing["cell"],
        listing["lat"],
        listing["lng"],
        listing["category"],
        major_units(listing["price"], listing["currency"]),
        listing["vendor_id"],
        float(dedupe_s),
    )
    return bool(status.endswith(" 1"))


async def record_purchases(conn: Conn, buyer_id: str, order_id: str, currency: str) -> int:
    """One ``purchase`` per line of a paid order, at the price paid in major units of its
    ``currency`` (run it in the transaction that confirms the order), in one statement; how
    many rows were written."""
    status = await conn.execute(
        "INSERT INTO interactions (user_id, item_kind, item_id, kind, cell, lat, lng, category,"
        " price) SELECT $1, 'listing', ol.listing_id, 'purchase', l.cell, l.lat, l.lng,"
        " l.category, ol.unit_price / $3::float8 FROM order_lines ol"
        " JOIN listings l ON l.id = ol.listing_id WHERE ol.order_id = $2 ORDER BY ol.listing_id",
        buyer_id,
        order_id,
        round(1 / major_units(1, currency)),  # 10 ** the currency's exponent
    )
    return int(status.split()[-1])


async def next_version(db: asyncpg.Pool) -> int:
    return int(await db.fetchval("SELECT nextval('models_version_seq')"))


async def save_model(
    db: asyncpg.Pool, scope: str, version: int, metrics: dict[str, Any], blob: bytes
) -> None:
    await db.execute(
        "INSERT INTO models (scope, version, metrics, blob) VALUES ($1, $2, $3, $4)",
        scope,
        version,
        metrics,
        blob,
    )


async def prune_models(db: asyncpg.Pool, keep: int) -> int:
    """Delete all but the ``keep`` newest versions of every scope; return how many went."""
    status = await db.execute(
        "DELETE FROM models m USING (SELECT scope, version, row_number() OVER"
        " (PARTITION BY scope ORDER BY version DESC) AS n FROM models) old"
        " WHERE m.scope = old.scope AND m.version = old.version AND old.n > $1",
        keep,
    )
    return int(status.split()[-1])


async def newest_versions(db: asyncpg.Pool, scopes: list[str]) -> dict[str, int]:
    """scope -> newest version, for those of ``scopes`` that have a model."""
    rows = await db.fetch(
        "SELECT scope, max(version) AS version FROM models WHERE scope = ANY($1) GROUP BY scope",
        scopes,
    )
    return {r["scope"]: int(r["version"]) for r in rows}


async def load_model(db: asyncpg.Pool, scope: str, version: int) -> bytes | None:
    blob = await db.fetchval(
        "SELECT blob FROM models WHERE scope = $1 AND version = $2", scope, version
    )
    return bytes(blob) if blob is not None else None


async def list_models(db: asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await db.fetch(
        "SELECT scope, version, created_at, metrics FROM models ORDER BY version DESC"
    )
    return [
        {
            "scope": r["scope"],
            "version": r["version"],
            "created_at": r["created_at"].isoformat(),
            "metrics": r["metrics"] if isinstance(r["metrics"], dict) else json.loads(r["metrics"]),
        }
        for r in rows
    ]


async def delete_models(db: asyncpg.Pool, scopes: list[str]) -> None:
    await db.execute("DELETE FROM models WHERE scope = ANY($1)", scopes)


def since(days: float) -> float:
    """Unix time ``days`` ago."""
    return time.time() - days * 86400.0
