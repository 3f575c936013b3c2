"""A shard's group committer keeps one Postgres connection between batches (actors/
group_commit.py): when Postgres drops it while idle, the next batch runs on a new connection
at once (as a pooled one would), and nothing is lost or doubled."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import psutil
import pytest
import ray

from cluster.config import Settings
from tests.integration.client import Api

pytestmark = pytest.mark.integration


async def _shard_backends(conn: asyncpg.Connection, settings: Settings) -> list[int]:
    """The Postgres backends serving the shard processes' connections (by client port)."""
    ports: set[int] = set()
    for name in settings.shard_names():
        actor = ray.get_actor(name, namespace=settings.ray_namespace)
        pid = int((await actor.stats.remote())["pid"])
        ports |= {c.laddr.port for c in psutil.Process(pid).net_connections("tcp") if c.raddr}
    rows = await conn.fetch(
        "SELECT pid, client_port FROM pg_stat_activity WHERE backend_type = 'client backend'"
    )
    return [int(r["pid"]) for r in rows if r["client_port"] in ports]


async def test_a_dropped_committer_connection_is_replaced_before_the_next_batch(
    api: Api, settings: Settings
) -> None:
    ann, ben = await api.signup("conn-ann"), await api.signup("conn-ben")
    a = await api.connect(ann)
    room = (await a.ok("chat.open", {"user_id": ben.id}))["room"]
    await a.mutate("chat.send", {"room_id": room["id"], "text": "before"})  # warm: held now

    assert settings.database_url
    conn = await asyncpg.connect(settings.database_url)
    try:
        killed = await _shard_backends(conn, settings)
        assert killed, "the shards hold no Postgres connection"
        for pid in killed:
            await conn.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()

    await asyncio.sleep(0.5)  # the shards' loops have seen their connections close
    key, answers = uuid.uuid4().hex, []
    for _ in range(20):  # the client's rule: retry `unavailable` with the same key
        reply = await a.request("chat.send", {"room_id": room["id"], "text": "after"}, key)
        answers.append(reply)
        if reply["ok"]:
            break
        assert reply["error"]["code"] == "unavailable", reply
        await asyncio.sleep(0.2)
    assert answers[-1]["ok"], answers
    # a connection that closed while idle is replaced before the next batch, as the pool
    # replaces one it hands out: the first attempt commits
    assert len(answers) == 1, answers

    again = await a.mutate("chat.send", {"room_id": room["id"], "text": "next"})
    history = await a.ok("chat.history", {"room_id": room["id"]})
    texts = [m["text"] for m in history["messages"]]
    assert texts.count("after") == 1 and texts[-1] == "next", texts
    assert again["message"]["offset"] > answers[-1]["data"]["message"]["offset"]
