"""CellHost without Ray, on the real Postgres and Redis: cells activate lazily from Postgres,
passivate when idle, and come back with everything committed."""

from __future__ import annotations

import uuid

import h3
import pytest

from actors.cell_host import CellHost
from actors.registry import HANDLERS, READERS
from cluster.config import Settings
from models.placement import cell_key
from tests.integration.client import Api

pytestmark = pytest.mark.integration


async def test_cells_activate_from_postgres_and_passivate_when_idle(
    api: Api, settings: Settings
) -> None:
    user = await api.signup("host")
    host = CellHost("shard-0", settings, dict(HANDLERS), dict(READERS))
    await host.ready()
    try:
        cell = str(h3.latlng_to_cell(-33.8688, 151.2093, settings.h3_resolution))  # Sydney
        owner = host.placement.owner(cell_key(cell)) if host.placement else None
        host.name = owner or host.name  # act as the owner of this cell
        version = host.placement_version()
        command = {
            "op": "post.create",
            "user_id": user.id,
            "key": uuid.uuid4().hex,
            "route": cell_key(cell),
            "data": {"cell": cell, "lat": -33.8688, "lng": 151.2093, "text": "g'day"},
        }
        [reply] = await host.execute(version, [command])
        assert reply["ok"], reply
        post_id = reply["data"]["post"]["id"]
        assert cell in host.cells

        assert host.passivate_idle(now=0.0) == []  # used just now: stays
        assert host.passivate_idle(now=10**9) == [cell]
        assert cell not in host.cells

        page = await host.feed_page(version, [cell], None, 10)  # activated again from Postgres
        assert [p["id"] for p in page["data"]["items"]] == [post_id]
        assert cell in host.cells

        [again] = await host.execute(version, [command])  # the same key: the first result
        assert again["data"]["post"]["id"] == post_id
        other = {**command, "route": cell_key("not-a-cell-owned-here")}
        host.name = "nobody"
        [moved] = await host.execute(version, [other])
        assert "moved" in moved
    finally:
        await host.close()
