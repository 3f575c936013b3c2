"""Search benchmark: the ranked full-text + trigram query against a plain ``ILIKE '%q%'`` scan,
same run, same data, same offered load.

Seeds ``--listings`` listings and ``--posts`` posts (100k each by default) into a private
embedded Postgres (or ``--dsn``, whose tables it adds to: use a scratch database), with texts
of 4 to 12 words drawn from a generated vocabulary of ``--vocab`` words (Zipf-like: a few
common words, a long tail), then runs an open loop at ``--rate`` requests/s for ``--seconds``
per variant, with queries of one or two vocabulary words, a fifth of them with one letter
wrong. Latency is measured from each request's *scheduled* time (a client that falls behind
inflates latency instead of hiding it). Variants:

- ``fts posts`` / ``fts listings``: store/search_store.py's exact SQL, 20 results, no point;
- ``fts posts near``: the same with a point (distance-weighted ranking);
- ``ilike posts`` / ``ilike listings``: ``WHERE text ILIKE '%q%' ORDER BY created_at DESC
  LIMIT 20`` (store/search_store.py ``ilike_sql``), the baseline: no typo tolerance, no
  ranking, a sequential scan.

It measures the database query through one asyncpg pool (``--pool``), not the gateway around
it. Figures are to be measured on a quiet machine (docs/benchmarks.md#search); ``--quick`` is a
functional smoke (2k rows each, 20 req/s, 2 s per variant)::

    python -m bench.search                      # 100k + 100k, 200 req/s, 10 s per variant
    python -m bench.search --quick --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg

from bench.loadgen import percentile
from bench.report import table
from models.social import SearchQuery
from store.db import create_pool, migrate
from store.embedded import EmbeddedPostgres
from store.search_store import ilike_sql, search_sql

_LETTERS = "abcdefghijklmnopqrstuvwxyz"
CENTRE = (52.52, 13.405)


def vocabulary(size: int, rng: random.Random) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(_LETTERS) for _ in range(rng.randint(4, 10))))
    ordered = sorted(words)
    rng.shuffle(ordered)  # the common words (the first) share no prefix
    return ordered


def typo(word: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(word) - 1)
    return word[:i] + rng.choice(_LETTERS) + word[i + 1 :]


async def seed(db: asyncpg.Pool, listings: int, posts: int, words: list[str]) -> None:
    """Users, vendors, then the rows in batches generated inside Postgres (fast: no per-row
    round trips). Texts pick words by ``floor(n * random()^3)``: the first words are common."""
    async with db.acquire() as conn:
        await conn.execute(
            "INSERT INTO users (id, email, email_norm, password_hash, display_name)"
            " SELECT 'bu' || i, 'b' || i || '@bench.test', 'b' || i || '@bench.test', 'x',"
            " 'bench user ' || i FROM generate_series(1, 100) AS i ON CONFLICT DO NOTHING"
        )
        await conn.execute(
            "INSERT INTO vendors (id, user_id, name, category, cell, lat, lng)"
            " SELECT 'bv' || i, 'bu' || i, 'bench vendor ' || i, 'bench', 'bench', $1, $2"
            " FROM generate_series(1, 100) AS i ON CONFLICT DO NOTHING",
            *CENTRE,
        )
        text = (
            "(SELECT string_agg(($1::text[])[1 + floor(array_length($1::text[], 1)"
            " * random() ^ 3)::int], ' ') FROM generate_series(1, 4 + (random() * 8)::int + g * 0))"
        )
        point = "$2 + (random() - 0.5) * 0.2, $3 + (random() - 0.5) * 0.3"
        await conn.execute(
            f"INSERT INTO posts (id, cell, author_id, text, lat, lng, created_at)"
            f" SELECT 'bp' || g, 'bench', 'bu' || (1 + g % 100), {text}, {point},"
            f" now() - g * interval '1 second' FROM generate_series(1, $4) AS g",
            words, *CENTRE, posts, timeout=3600,
        )  # fmt: skip
        await conn.execute(
            f"INSERT INTO listings (id, vendor_id, cell, kind, title, description, category,"
            f" price, currency, stock, lat, lng, created_at)"
            f" SELECT 'bl' || g, 'bv' || (1 + g % 100), 'bench', 'product', {text}, {text},"
            f" 'bench', 100 + g % 5000, 'eur', 10, {point}, now() - g * interval '1 second'"
            f" FROM generate_series(1, $4) AS g",
            words, *CENTRE, listings, timeout=3600,
        )  # fmt: skip
        await conn.execute("ANALYZE posts; ANALYZE listings", timeout=3600)


Variant = Callable[[asyncpg.Pool, str], Any]


def variants(rng: random.Random) -> dict[str, Variant]:
    def fts(kind: str, located: bool) -> Variant:
        sql = search_sql(kind, located)

        async def run(db: asyncpg.Pool, q: str) -> Any:
            query = SearchQuery.of(q, kind, None, None, None, 20, 500)
            args: list[Any] = [query.q, 20, 0, 1000]
            if located:
                args += [CENTRE[0] + rng.uniform(-0.05, 0.05), CENTRE[1], 2.0]
            return await db.fetch(sql, *args)

        return run

    def ilike(kind: str) -> Variant:
        sql = ilike_sql(kind)

        async def run(db: asyncpg.Pool, q: str) -> Any:
            return await db.fetch(sql, q, 20)

        return run

    return {
        "fts posts": fts("posts", False),
        "fts posts near": fts("posts", True),
        "fts listings": fts("listings", False),
        "ilike posts": ilike("posts"),
        "ilike listings": ilike("listings"),
    }


async def open_loop(
    db: asyncpg.Pool, run: Variant, queries: list[str], rate: float, seconds: float
) -> dict[str, Any]:
    """``rate`` requests/s for ``seconds``, each timed from its scheduled start."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    errors = 0
    hits: list[int] = []

    async def one(q: str, due: float) -> None:
        nonlocal errors
        try:
            rows = await run(db, q)
            hits.append(len(rows))
        except (asyncpg.PostgresError, OSError, TimeoutError):
            errors += 1
            return
        latencies.append((loop.time() - due) * 1000)

    start = loop.time()
    total = int(rate * seconds)
    tasks = []
    for i in range(total):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(queries[i % len(queries)], due)))
    await asyncio.gather(*tasks)
    wall = loop.time() - start
    return {
        "sent": total,
        "ok": len(latencies),
        "errors": errors,
        "achieved_per_s": round(len(latencies) / wall, 1) if wall else 0.0,
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "mean_hits": round(sum(hits) / len(hits), 1) if hits else 0.0,
    }


async def bench(dsn: str, args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    words = vocabulary(args.vocab, rng)
    await migrate(dsn)
    db = await create_pool(dsn, min_size=2, max_size=args.pool)
    try:
        began = time.monotonic()
        await seed(db, args.listings, args.posts, words)
        seeded_s = round(time.monotonic() - began, 1)
        common = words[: max(10, len(words) // 10)]
        queries = []
        for _ in range(500):
            q = " ".join(rng.choice(common) for _ in range(rng.choice((1, 1, 2))))
            queries.append(typo(q, rng) if rng.random() < 0.2 else q)
        results = {}
        for name, run in variants(rng).items():
            await run(db, queries[0])  # warm the plan cache
            results[name] = await open_loop(db, run, queries, args.rate, args.seconds)
        return {
            "listings": args.listings,
            "posts": args.posts,
            "rate": args.rate,
            "seconds": args.seconds,
            "seed_s": seeded_s,
            "variants": results,
        }
    finally:
        await db.close()


def run_embedded(args: argparse.Namespace) -> dict[str, Any]:
    """The benchmark on a private embedded Postgres, stopped whatever happens."""
    with tempfile.TemporaryDirectory(prefix="hl-bench-search-") as root:
        pg = EmbeddedPostgres(Path(root)).start()
        try:
            return asyncio.run(bench(pg.url, args))
        finally:
            pg.stop()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--listings", type=int, default=100_000)
    p.add_argument("--posts", type=int, default=100_000)
    p.add_argument("--vocab", type=int, default=20_000)
    p.add_argument("--rate", type=float, default=200.0, help="requests/s offered per variant")
    p.add_argument("--seconds", type=float, default=10.0, help="per variant")
    p.add_argument("--pool", type=int, default=8, help="Postgres connections")
    p.add_argument("--seed", type=int, default=16)
    p.add_argument("--dsn", help="an existing scratch database instead of the embedded one")
    p.add_argument("--quick", action="store_true", help="a functional smoke: 2k rows, 2 s")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    if args.quick:
        args.listings = args.posts = 2_000
        args.vocab, args.rate, args.seconds = 2_000, 20.0, 2.0
    return args


def report(result: dict[str, Any]) -> str:
    header = ["sent", "ok", "errors", "achieved/s", "p50 ms", "p99 ms", "hits"]
    rows = [
        (name, [v["sent"], v["ok"], v["errors"], v["achieved_per_s"], v["p50_ms"], v["p99_ms"],
                v["mean_hits"]])
        for name, v in result["variants"].items()
    ]  # fmt: skip
    head = (
        f"search: {result['listings']} listings + {result['posts']} posts,"
        f" {result['rate']:g} req/s x {result['seconds']:g} s per variant"
        f" (seeded in {result['seed_s']} s)"
    )
    return head + "\n" + table(rows, header)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    result = asyncio.run(bench(args.dsn, args)) if args.dsn else run_embedded(args)
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
