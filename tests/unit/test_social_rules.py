"""Pure rules of issue 16: profile edits, search requests and cursors, GraphQL depth and cost,
and the schema printed in docs/graphql.md."""

from __future__ import annotations

from pathlib import Path

import pytest
from graphql import parse

from gateway.gql import limits
from gateway.gql.run import PAGED, schema_sdl
from models.errors import BadRequest
from models.social import ProfileEdit, SearchQuery, decode_offset, encode_offset

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_profile_edit_validates_and_keeps_absent_fields() -> None:
    edit = ProfileEdit.of({"bio": "  hello  "})
    assert edit == ProfileEdit(bio="hello")
    assert ProfileEdit.of({"avatar_media_id": None}).clear_avatar
    assert not ProfileEdit.of({"avatar_media_id": "m_1.webp"}).clear_avatar
    assert ProfileEdit.of({"display_name": " Ann "}).display_name == "Ann"
    for bad in ({}, {"bio": "x" * 281}, {"bio": "a\x00b"}, {"display_name": "  "},
                {"avatar_media_id": "../etc/passwd"}, {"avatar_media_id": "a b"}):  # fmt: skip
        with pytest.raises(BadRequest):
            ProfileEdit.of(bad)


def test_search_query_bounds_and_cursors() -> None:
    q = SearchQuery.of("  fresh   bread ", "posts", None, None, None, 20, 500)
    assert (q.q, q.offset) == ("fresh bread", 0)
    assert q.next_cursor(20, 500) == encode_offset(20)
    assert q.next_cursor(19, 500) is None  # a short page is the last
    deep = SearchQuery.of("bread", "posts", 1.0, 2.0, encode_offset(500), 20, 500)
    assert deep.offset == 500 and deep.next_cursor(20, 500) is None
    assert decode_offset(encode_offset(37)) == 37
    for args in (
        ("", "posts", None, None, None),
        ("x" * 101, "posts", None, None, None),
        ("bread", "people", None, None, None),
        ("bread", "posts", 1.0, None, None),
        ("bread", "posts", None, None, encode_offset(501)),
        ("bread", "posts", None, None, "not-a-cursor"),
        ("bread", "posts", None, None, "czotMQ"),  # s:-1
    ):
        with pytest.raises(BadRequest):
            SearchQuery.of(*args, limit=20, max_offset=500)


def _measure(query: str, variables: dict[str, object] | None = None) -> limits.Measure:
    return limits.measure(parse(query), None, variables or {}, PAGED)


def test_depth_and_cost_of_queries() -> None:
    assert _measure("{ me { id } }") == limits.Measure(depth=2, cost=2)
    # an unsized page costs its default size, a sized one its size, a variable its value
    assert _measure("{ orders { items { id } } }").cost == 1 + 20 * 2
    assert _measure("{ orders(limit: 5) { items { id } } }").cost == 1 + 5 * 2
    sized = "query($n: Int!) { orders(limit: $n) { items { id } } }"
    assert _measure(sized, {"n": 3}).cost == 1 + 3 * 2
    # fragments are inlined; introspection is free
    frag = "query { me { ...F } } fragment F on User { id vendor { name } }"
    assert _measure(frag) == limits.Measure(depth=3, cost=4)
    assert _measure("{ __schema { types { name } } me { id } }").depth == 2
    nested = "{ feed(lat: 1, lng: 1, limit: 10) { items { comments(first: 5) { items { id } } } } }"
    assert _measure(nested).cost == 1 + 10 * (1 + 1 * (1 + 5 * (1 + 1)))


def test_limits_refuse_with_details() -> None:
    deep = parse("{ me " + "{ vendor { user " * 5 + "{ id }" + " } }" * 5 + " }")
    with pytest.raises(BadRequest) as err:
        limits.check(deep, None, {}, 8, 2000, PAGED)
    assert err.value.details == {"limit": "depth", "max": 8, "got": 12}
    costly = parse("{ orders(limit: 100) { items { vendor { user { displayName } } } } }")
    with pytest.raises(BadRequest) as err:
        limits.check(costly, None, {}, 8, 100, PAGED)
    assert err.value.details["limit"] == "cost"
    with pytest.raises(BadRequest):
        limits.operation(parse("query A { me { id } } query B { me { id } }"), None)
    assert limits.operation(parse("query A { me { id } } query B { me { id } }"), "B")


def test_docs_print_the_schema() -> None:
    assert schema_sdl() in (DOCS / "graphql.md").read_text(), (
        "docs/graphql.md must hold the schema as printed by gateway.gql.run.schema_sdl()"
    )
