"""The GraphQL read API on the real gateway, shards and Postgres: the root fields and their
access rules, batched loaders (queries counted), depth and cost limits, typed errors."""

from __future__ import annotations

from typing import Any

import h3
import pytest
from aiohttp.test_utils import TestServer

from cluster.config import Settings
from gateway.context import SERVICES
from gateway.gql.run import GraphQLBody, execute
from services.caller import Caller
from tests.integration import market_kit as mk
from tests.integration.client import Api, User

pytestmark = pytest.mark.integration

SEVILLE = (37.3891, -5.9845)  # away from every other test's neighbourhoods


def spot(settings: Settings, i: int) -> tuple[float, float]:
    base = h3.latlng_to_cell(SEVILLE[0], SEVILLE[1], settings.h3_resolution)
    return h3.cell_to_latlng(sorted(h3.grid_ring(base, 5 + 4 * i))[0])


async def gql(api: Api, user: User | None, query: str, **extra: Any) -> tuple[int, Any]:
    token = user.access_token if user else None
    return await api.post("/api/v1/graphql", {"query": query, **extra}, token)


FEED = """query Feed($lat: Float!, $lng: Float!, $n: Int!) {
  feed(lat: $lat, lng: $lng, limit: $n, sort: "newest") {
    items { id text author { displayName vendor { name } }
            comments(first: 3) { items { text author { displayName } } nextCursor } }
    nextCursor
  }
}"""


class CountingDb:
    """The pool, counting every query sent through it (what the loaders read with)."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.queries: list[str] = []

    async def fetch(self, sql: str, *args: Any, **kw: Any) -> Any:
        self.queries.append(sql)
        return await self.pool.fetch(sql, *args, **kw)

    async def fetchrow(self, sql: str, *args: Any, **kw: Any) -> Any:
        self.queries.append(sql)
        return await self.pool.fetchrow(sql, *args, **kw)

    async def fetchval(self, sql: str, *args: Any, **kw: Any) -> Any:
        self.queries.append(sql)
        return await self.pool.fetchval(sql, *args, **kw)


async def _neighbourhood(api: Api, settings: Settings, i: int, posts: int) -> tuple[Any, ...]:
    where = spot(settings, i)
    authors = [await api.signup(f"gqlauthor{i}x{j}") for j in range(3)]
    sockets = [await api.connect(a) for a in authors]
    for ws in sockets:
        await ws.ok("locate", {"lat": where[0], "lng": where[1]})
    for n in range(posts):
        post = (await sockets[n % 3].mutate("post.create", {"text": f"post {n}"}))["post"]
        for k in range(2):
            await sockets[(n + k + 1) % 3].mutate(
                "comment.create", {"post_id": post["id"], "text": f"c{k}"}
            )
    for ws in sockets:
        await ws.close()
    return where, authors


async def test_loaders_batch_no_n_plus_one(
    api: Api, settings: Settings, server: TestServer
) -> None:
    services = server.app[SERVICES]
    counts = []
    for i, n in ((0, 3), (1, 12)):
        where, authors = await _neighbourhood(api, settings, i, n)
        counting = CountingDb(services.db)
        body = GraphQLBody(query=FEED, variables={"lat": where[0], "lng": where[1], "n": n})
        out = await execute(services, Caller(authors[0].id), body, db=counting)
        assert "errors" not in out, out
        items = out["data"]["feed"]["items"]
        assert len(items) == n
        assert all(p["author"]["displayName"].startswith("gqlauthor") for p in items)
        assert all(len(p["comments"]["items"]) == 2 for p in items)
        assert all(c["author"] for p in items for c in p["comments"]["items"])
        counts.append(len(counting.queries))
    # authors (posts' and comments' in two ticks), comment pages: the same for 3 or 12 posts
    assert 2 <= counts[0] == counts[1] <= 3, counts


async def test_root_fields_and_access(api: Api, settings: Settings) -> None:
    where = spot(settings, 2)
    vendor_user, vendor = await mk.vendor(api, where, "gql-vendor")
    listing = await mk.listing(api, vendor_user.access_token, title="GraphQL jam")
    buyer = await api.signup("gqlbuyer")
    ws = await api.connect(buyer)
    await ws.ok("locate", {"lat": where[0], "lng": where[1]})
    post = (await ws.mutate("post.create", {"text": "jam for sale?"}))["post"]
    out = await mk.buy(ws, listing["id"], 1, mk.APPROVE)
    assert out["ok"], out
    order_id = out["data"]["orders"][0]["id"]

    query = (
        "query($u: ID!, $p: ID!) { me { id displayName } user(id: $u) { displayName vendor"
        " { id name } } post(id: $p) { text author { id } comments { items { id } } } }"
    )
    status, body = await gql(api, buyer, query, variables={"u": vendor_user.id, "p": post["id"]})
    assert status == 200 and "errors" not in body, body
    data = body["data"]
    assert data["me"] == {"id": buyer.id, "displayName": "gqlbuyer"}
    assert data["user"]["vendor"] == {"id": vendor["id"], "name": "gql-vendor"}
    assert data["post"]["author"]["id"] == buyer.id

    query = (
        "query($lat: Float!, $lng: Float!) { listingsNearby(lat: $lat, lng: $lng, sort: "
        '"distance") { items { id vendor { id user { id } } } } orders { items { id roomId '
        "vendor { name } } } }"
    )
    variables = {"lat": where[0], "lng": where[1]}
    status, body = await gql(api, buyer, query, variables=variables)
    assert status == 200 and "errors" not in body, body
    found = {x["id"]: x for x in body["data"]["listingsNearby"]["items"]}
    assert found[listing["id"]]["vendor"]["user"]["id"] == vendor_user.id
    assert [o["id"] for o in body["data"]["orders"]["items"]] == [order_id]
    # the vendor's own buyer orders are none: orders are the caller's, as orders.list
    status, body = await gql(api, vendor_user, "{ orders { items { id } } }")
    assert status == 200 and body["data"]["orders"]["items"] == []
    # a field that fails is a typed error next to the rest of the data
    status, body = await gql(api, buyer, '{ me { id } feed { sort } post(id: "nope") { id } }')
    assert status == 200 and body["data"] is None  # feed is not nullable: the error nulls all
    codes = {e["extensions"]["code"] for e in body["errors"]}
    assert codes == {"bad_request"}, body  # feed without a location
    status, body = await gql(api, buyer, '{ me { id } post(id: "nope") { id } }')
    assert status == 200 and body["data"] == {"me": {"id": buyer.id}, "post": None}
    await ws.close()


async def test_bad_requests_are_typed(api: Api, settings: Settings) -> None:
    user = await api.signup("gqlbad")
    deep = "{ me " + "{ vendor { user " * 5 + "{ id }" + " } }" * 5 + " }"
    costly = (
        "{ feed(lat: 1, lng: 1, limit: 100) { items { comments(first: 100) "
        "{ items { author { displayName } } } } } }"
    )
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"query": "{ me { id "}, 400, "not a GraphQL query"),
        ({"query": "{ me { password } }"}, 400, "password"),
        ({"query": "mutation { me { id } }"}, 400, ""),
        ({"query": "subscription { me { id } }"}, 400, ""),
        ({"query": deep}, 400, "levels deep"),
        ({"query": costly}, 400, "costs"),
        ({"query": "{ me { id } }" + " " * settings.graphql_max_query_chars}, 413, ""),
        (
            {
                "query": "query($n: Int!) { orders(limit: $n) { items { id } } }",
                "variables": {"n": "many"},
            },
            400,
            "",
        ),
        ({"query": "query A { me { id } } query B { me { id } }"}, 400, "operationName"),
        ({"query": ""}, 400, ""),
        ({"query": "{ me { id } }", "unknown": 1}, 400, ""),
        ({"query": 5}, 400, ""),
    ]
    for body, status, words in cases:
        got, answer = await api.post("/api/v1/graphql", body, user.access_token)
        assert got == status, (body, got, answer)
        assert answer["error"]["code"] in ("bad_request", "too_large"), answer
        assert words in answer["error"]["message"], (words, answer)
    got, answer = await api.post("/api/v1/graphql", {"query": deep}, user.access_token)
    assert answer["error"]["details"]["limit"] == "depth"
    got, answer = await api.post("/api/v1/graphql", {"query": costly}, user.access_token)
    assert answer["error"]["details"] == {"limit": "cost", "max": 2000,
                                          "got": answer["error"]["details"]["got"]}  # fmt: skip
    got, answer = await api.post("/api/v1/graphql", raw=b"not json", token=user.access_token)
    assert got == 400 and answer["error"]["code"] == "bad_request"
    got, answer = await api.post("/api/v1/graphql", {"query": "{ me { id } }"})
    assert got == 401 and answer["error"]["code"] == "unauthorized"
    # a limit out of range inside a field: the field's typed error
    got, answer = await api.post(
        "/api/v1/graphql", {"query": "{ orders(limit: 0) { items { id } } }"}, user.access_token
    )
    assert got == 200 and answer["errors"][0]["extensions"]["code"] == "bad_request"
    # introspection is not counted against the depth limit: tools can read the schema
    got, answer = await api.post(
        "/api/v1/graphql",
        {"query": "{ __schema { types { name fields { name type { name ofType { name "
                  "ofType { name ofType { name } } } } } } } }"},
        user.access_token,
    )  # fmt: skip
    assert got == 200 and answer["data"]["__schema"]["types"], answer
