"""The embedded Postgres runs durable (rule 1) and without the WAL zero-fill stall."""

from __future__ import annotations

import pytest

from cluster.config import Settings
from tests.integration import market_kit as mk

pytestmark = pytest.mark.integration


async def test_durability_settings_stay_on(settings: Settings) -> None:
    rows = await mk.fetch(
        settings,
        "SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[])",
        ["fsync", "synchronous_commit", "full_page_writes", "wal_init_zero"],
    )
    got = {row["name"]: row["setting"] for row in rows}
    assert got == {
        "fsync": "on",
        "synchronous_commit": "on",
        "full_page_writes": "on",
        # a new WAL segment is not zero-filled by the commit that needs it (store/embedded.py)
        "wal_init_zero": "off",
    }
