"""Vendor analytics on the real services (docs/analytics.md): figures checked against orders
placed through the real checkout, the rollup's incremental runs, the exports parsed back, the
Ray Data warehouse job's partitions, and who may read whose figures."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from bench.analytics import comparable, raw_dashboard
from cluster import warehouse
from cluster.analytics_jobs import rollup_remote
from cluster.config import Settings
from models.analytics import Range
from services.analytics import run_rollup
from store.db import create_pool
from tests.integration import market_kit as mk
from tests.integration.admin_kit import staff
from tests.integration.client import Api, User

pytestmark = pytest.mark.integration

PATH = "/api/v1/vendor/analytics"


async def _get(api: Api, token: str, query: str = "", path: str = PATH) -> tuple[int, Any]:
    return await mk.rest(api, "GET", path + query, None, token)


async def _raw(api: Api, token: str, query: str) -> tuple[int, str, bytes]:
    headers = {"Authorization": f"Bearer {token}"}
    async with api.http.get(f"{api.base}{PATH}/export{query}", headers=headers) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.read()


async def _settled(settings: Settings, order_id: str) -> None:
    for _ in range(200):  # the refund runs at the provider after the step: let it finish
        if (await mk.refund_of(settings, order_id))["status"] == "succeeded":
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the refund did not settle")


class Shop:
    """One vendor with two listings and two buyers who bought through the real checkout."""

    def __init__(self, seller: User, vendor: dict[str, Any], bread: Any, cake: Any) -> None:
        self.seller, self.vendor, self.bread, self.cake = seller, vendor, bread, cake
        self.orders: list[dict[str, Any]] = []


async def _shop(api: Api, settings: Settings, spot: int) -> Shop:
    seller, vendor = await mk.vendor(api, mk.spot(settings, spot), "stats")
    bread = await mk.listing(api, seller.access_token, title="Rye", price=450, stock=50)
    cake = await mk.listing(api, seller.access_token, title="Cake", price=1200, stock=50)
    shop = Shop(seller, vendor, bread, cake)
    alice, bob = await api.signup("alice"), await api.signup("bob")
    wa, wb = await api.connect(alice), await api.connect(bob)
    for ws, item in ((wa, bread), (wb, bread), (wb, cake), (wa, bread)):  # 3 views (dedupe)
        await ws.ok("listing.get", {"listing_id": item["id"]})
    for ws, item, qty in ((wa, bread, 2), (wa, cake, 1), (wb, bread, 1), (wb, bread, 1)):
        reply = await mk.buy(ws, item["id"], qty, mk.APPROVE)
        shop.orders.append(reply["data"]["orders"][0])
    refunded = shop.orders[-1]  # bob's second: cancelled by the vendor, refunded
    status, _ = await mk.rest(
        api, "POST", f"/api/v1/vendor/orders/{refunded['id']}/cancel", None, seller.access_token
    )
    assert status == 200
    await _settled(settings, refunded["id"])
    declined = await mk.buy(wb, cake["id"], 1, mk.DECLINE)  # a fifth cart add, no sale
    assert declined["error"]["code"] == "payment_failed"
    for ws in (wa, wb):
        await ws.close()
    return shop


async def test_figures_match_the_orders_placed_and_runs_are_incremental(
    api: Api, settings: Settings
) -> None:
    shop = await _shop(api, settings, 40)
    tok = shop.seller.access_token
    assert settings.database_url
    status, before = await _get(api, tok)
    assert status == 200 and before["funnel"] == {"views": 0, "carts": 0, "orders": 0}

    run = await rollup_remote(settings)  # the scheduled Ray task's body, once
    assert run["busy"] is False and run["order_days"] >= 1
    status, got = await _get(api, tok)
    assert status == 200, got
    today = datetime.now(UTC).date()
    assert got["vendor_id"] == shop.vendor["id"] and got["to"] == today.isoformat()
    assert got["timezone"] == "UTC" and got["as_of"] == run["mark"]
    day = next(p for p in got["series"] if p["period"] == today.isoformat())
    # counted: alice 900 + 1200, bob 450; bob's refunded order and the declined one are not
    assert day == {"period": today.isoformat(), "currency": "usd", "orders": 3,
                   "revenue": 2550, "units": 4, "aov": 850}  # fmt: skip
    assert len(got["series"]) == 30 and sum(p["orders"] for p in got["series"]) == 3
    assert got["funnel"] == {"views": 3, "carts": 5, "orders": 3}
    assert [(t["title"], t["orders"], t["units"], t["revenue"]) for t in got["top_listings"]] == [
        ("Rye", 2, 3, 1350), ("Cake", 1, 1, 1200)
    ]  # fmt: skip
    assert (got["customers"], got["repeat_customers"], got["repeat_customer_rate"]) == (2, 1, 0.5)
    grid = got["hour_weekday"]
    assert len(grid) == 7 and all(len(row) == 24 for row in grid) and sum(map(sum, grid)) == 3
    pool = await create_pool(settings.database_url)
    try:
        placed = await pool.fetch(
            "SELECT created_at FROM orders WHERE vendor_id = $1 AND status = 'paid'",
            shop.vendor["id"],
        )
        for row in placed:
            at = row["created_at"].astimezone(UTC)
            assert grid[at.weekday()][at.hour] >= 1
        rng = Range(today - timedelta(days=29), today)
        assert comparable(got) == await raw_dashboard(pool, shop.vendor["id"], rng, 10)

        # Idempotent: a run over the same rows writes the same figures.
        await run_rollup(settings.database_url, 300.0)
        assert comparable((await _get(api, tok))[1]) == comparable(got)

        # Incremental: a run reads only what changed since the last one. A figure spoiled by
        # hand stays spoiled while nothing of its day changes...
        await pool.execute(
            "UPDATE analytics_days SET orders = orders + 100 WHERE vendor_id = $1",
            shop.vendor["id"],
        )
        quiet = await run_rollup(settings.database_url, 0.0)
        assert quiet.busy is False
        assert (await _get(api, tok))[1]["funnel"]["orders"] == 103
        # ...and a new order of that day makes the next run recompute the whole day from the
        # raw rows: the new order counted, the spoiled figure gone.
        buyer = await api.signup("carol")
        ws = await api.connect(buyer)
        await mk.buy(ws, shop.cake["id"], 2, mk.APPROVE)
        await ws.close()
        assert (await _get(api, tok))[1]["funnel"]["orders"] == 103  # not yet rolled up
        again = await run_rollup(settings.database_url, 0.0)
        assert again.order_days >= 1
        after = (await _get(api, tok))[1]
        assert after["funnel"] == {"views": 3, "carts": 6, "orders": 4}
        assert (
            next(p for p in after["series"] if p["period"] == today.isoformat())["revenue"]
            == 2550 + 2400
        )
        assert (after["customers"], after["repeat_customers"]) == (3, 1)
        assert comparable(after) == await raw_dashboard(pool, shop.vendor["id"], rng, 10)
    finally:
        await pool.close()

    # ISO weeks: this week's Monday holds the same sums.
    status, weekly = await _get(api, tok, "?granularity=week&from=" + today.isoformat())
    monday = today - timedelta(days=today.weekday())
    assert status == 200 and weekly["series"][0]["period"] == monday.isoformat()
    assert weekly["series"][0]["orders"] == 4 and weekly["series"][0]["revenue"] == 4950


async def test_exports_parse_back_as_csv_and_parquet(api: Api, settings: Settings) -> None:
    shop = await _shop(api, settings, 41)
    tok = shop.seller.access_token
    status, ctype, body = await _raw(api, tok, "?format=csv")
    assert status == 200 and ctype.startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    # every order line of the vendor, whatever its state: 4 bought, 1 declined
    assert len(rows) == 5 and {r["status"] for r in rows} == {"paid", "refunded", "cancelled"}
    paid = [r for r in rows if r["status"] == "paid"]
    assert sum(int(r["line_total"]) for r in paid) == 2550
    assert {r["title"] for r in rows} == {"Rye", "Cake"}

    status, ctype, body = await _raw(api, tok, "?format=parquet")
    assert status == 200 and ctype == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(body))
    assert table.num_rows == 5
    assert table.column_names == list(csv.DictReader(io.StringIO(rows_header(rows))).fieldnames)
    got = table.to_pylist()
    assert sorted((r["order_id"], r["qty"]) for r in got) == sorted(
        (r["order_id"], int(r["qty"])) for r in rows
    )
    assert all(r["created_at"].tzinfo is not None for r in got)

    # An empty range is a file with no rows (CSV: the header; Parquet: a valid file).
    status, _, body = await _raw(api, tok, "?format=csv&from=2020-01-01&to=2020-01-02")
    assert status == 200 and body.decode().strip() == ",".join(rows[0].keys())
    status, _, body = await _raw(api, tok, "?format=parquet&from=2020-01-01&to=2020-01-02")
    assert status == 200 and pq.read_table(io.BytesIO(body)).num_rows == 0

    for query, code in (("?format=xlsx", "bad_request"), ("", "bad_request"),
                        ("?format=csv&granularity=day", "bad_request"),
                        ("?format=csv&from=2026-02-30", "bad_request")):  # fmt: skip
        status, _, body = await _raw(api, tok, query)
        assert status == 400 and code in body.decode(), (query, body)


async def _app_token(api: Api, token: str, scopes: list[str]) -> str:
    status, app = await mk.rest(
        api, "POST", "/api/v1/vendor/apps", {"name": "bi", "scopes": scopes}, token
    )
    assert status == 201, app
    form = {"grant_type": "client_credentials", "client_id": app["client_id"],
            "client_secret": app["client_secret"]}  # fmt: skip
    async with api.http.post(api.base + "/api/v1/oauth/token", data=form) as resp:
        assert resp.status == 200
        return str((await resp.json())["access_token"])


def rows_header(rows: list[dict[str, str]]) -> str:
    return ",".join(rows[0].keys()) + "\n"


async def test_access_is_the_vendors_own_or_an_admins(api: Api, settings: Settings) -> None:
    shop = await _shop(api, settings, 42)
    mine = shop.vendor["id"]
    other, _ = await mk.vendor(api, mk.spot(settings, 43), "rival")
    status, body = await _get(api, other.access_token, f"?vendor_id={mine}")
    assert status == 403 and body["error"]["code"] == "forbidden"
    status, body = await _get(api, other.access_token, f"/export?format=csv&vendor_id={mine}")
    assert status == 403 and body["error"]["code"] == "forbidden"
    status, body = await _get(api, other.access_token, f"?vendor_id={other.id}")  # no such vendor
    assert status == 403
    buyer = await api.signup("nosy")
    status, body = await _get(api, buyer.access_token)
    assert status == 403 and body["error"]["code"] == "forbidden"
    status, _ = await mk.rest(api, "GET", PATH)
    assert status == 401

    admin = await staff(api, settings, "admin")
    await run_rollup(str(settings.database_url), 300.0)
    status, seen = await _get(api, admin.access_token, f"?vendor_id={mine}")
    assert status == 200 and seen["vendor_id"] == mine and seen["funnel"]["orders"] == 3
    status, own = await _get(api, shop.seller.access_token)
    assert comparable(own) == comparable(seen)
    status, body = await _get(api, admin.access_token, "?vendor_id=nobody")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body = await _get(api, admin.access_token)  # an admin who sells nothing
    assert status == 403

    # An app token reads its vendor's figures with orders:read, never another's (no roles).
    for scopes, want in ((["orders:read"], 200), (["listings:read"], 403)):
        app_tok = await _app_token(api, shop.seller.access_token, scopes)
        status, body = await _get(api, app_tok)
        assert status == want, body
        if want == 200:
            assert comparable(body) == comparable(own)
            status, body = await _get(api, app_tok, f"?vendor_id={other.id}")
            assert status == 403 and body["error"]["code"] == "forbidden"

    tok = shop.seller.access_token
    for query in ("?from=2026-03-02&to=2026-03-01", "?granularity=month", "?from=2026-13-01",
                  "?from=2020-01-01&to=2026-01-01", "?colour=red", "?to=tomorrow"):  # fmt: skip
        status, body = await _get(api, tok, query)
        assert status == 400 and body["error"]["code"] == "bad_request", (query, body)

    # GraphQL: the same service, the same rule.
    gql = (
        "query($v: ID) { vendorAnalytics(vendorId: $v) { vendorId funnel { views carts orders }"
        " series { period orders revenue } repeatCustomerRate hourWeekday topListings { title } } }"
    )
    status, answer = await api.post("/api/v1/graphql", {"query": gql}, tok)
    assert status == 200 and "errors" not in answer, answer
    va = answer["data"]["vendorAnalytics"]
    assert va["vendorId"] == mine and va["funnel"] == own["funnel"]
    assert va["repeatCustomerRate"] == own["repeat_customer_rate"] == 0.5
    assert va["hourWeekday"] == own["hour_weekday"]
    status, answer = await api.post(
        "/api/v1/graphql", {"query": gql, "variables": {"v": mine}}, other.access_token
    )
    assert status == 200 and answer["data"] is None
    assert answer["errors"][0]["extensions"]["code"] == "forbidden"
    status, answer = await api.post(
        "/api/v1/graphql", {"query": gql, "variables": {"v": mine}}, admin.access_token
    )
    assert answer["data"]["vendorAnalytics"]["funnel"] == own["funnel"]


async def test_warehouse_job_writes_day_and_cell_partitions(
    api: Api, settings: Settings, tmp_path: Path
) -> None:
    shop = await _shop(api, settings, 44)
    out = tmp_path / "warehouse"
    tables = ["orders", "interactions", "ledger_entries"]
    counts = await asyncio.to_thread(warehouse.export, settings, out, tables)
    assert counts["orders"] >= 5 and counts["interactions"] >= 8 and counts["ledger_entries"] > 0
    today = datetime.now(UTC).date().isoformat()
    cell = shop.vendor["cell"]
    part = out / "orders" / f"day={today}" / f"cell={cell}"
    assert part.is_dir() and list(part.glob("*.parquet")), sorted(out.rglob("*"))[:10]
    orders = pads.dataset(out / "orders", format="parquet", partitioning="hive").to_table()
    ours = [r for r in orders.to_pylist() if r["vendor_id"] == shop.vendor["id"]]
    assert len(ours) == 5 and {r["cell"] for r in ours} == {cell}
    assert {r["day"] for r in ours} == {today}
    assert sorted(r["order_id"] for r in ours) == sorted(
        [o["id"] for o in shop.orders] + [r["order_id"] for r in ours if r["status"] == "cancelled"]
    )
    events = pads.dataset(out / "interactions", format="parquet", partitioning="hive").to_table()
    items = {shop.bread["id"], shop.cake["id"]}
    mine = [r for r in events.to_pylist() if r["item_id"] in items]
    assert sorted({r["kind"] for r in mine}) == ["cart", "purchase", "view"]
    assert len([r for r in mine if r["kind"] == "cart"]) == 5

    ledger = pads.dataset(out / "ledger_entries", format="parquet", partitioning="hive")
    money = [r for r in ledger.to_table().to_pylist() if r["vendor_id"] == shop.vendor["id"]]
    assert money and {r["cell"] for r in money} == {cell}
    for txn in {r["txn_id"] for r in money}:  # every transaction balances, as in Postgres
        assert sum(r["amount"] for r in money if r["txn_id"] == txn) == 0

    again = await asyncio.to_thread(warehouse.export, settings, out, ["orders"])
    assert again["orders"] >= counts["orders"]  # replaced whole, not appended to
    reread = pads.dataset(out / "orders", format="parquet", partitioning="hive").to_table()
    assert reread.num_rows == again["orders"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging left
    with pytest.raises(ValueError, match="unknown table"):
        warehouse.export(settings, out, ["payments"])
