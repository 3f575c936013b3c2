"""The chat benchmark's workload, briefly, against the real stack and the raw baseline: group rooms
are created and joined, every member gets every acked message once, figures come out. Timing
values are measured, never asserted."""

from __future__ import annotations

import math
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from bench import raw_broadcast
from bench.chat_workload import ChatWorkload
from bench.loadgen import Fleet, FleetConfig
from bench.report import result_rows, table

pytestmark = pytest.mark.integration


async def chat_phase(url: str, duration_s: float) -> tuple[dict[str, Any], ChatWorkload]:
    workload = ChatWorkload(12, 3)  # 3 rooms of 4
    fleet = Fleet(url, workload, FleetConfig(clients=12, senders_fraction=0.25))
    try:
        await fleet.connect()
        result = (await fleet.run_phase(20.0, duration_s, drain_s=8.0)).result()
    finally:
        await fleet.close()
    return result, workload


async def test_chat_workload_runs_against_the_real_stack_without_loss(server: TestServer) -> None:
    result, workload = await chat_phase(str(server.make_url("")), 3.0)
    assert all(workload.room_ids) and len(set(workload.room_ids)) == 3
    assert result["sent"] == 60
    assert result["acked"] == result["sent"], result["errors"]
    assert result["errors"] == {} and result["no_reply"] == 0
    assert result["expected"] == 4 * result["acked"]  # every member, the sender included
    assert result["loss"] == 0 and result["delivered"] == result["expected"]
    assert result["duplicates"] == 0 and result["unexpected"] == 0
    for key in ("delivered_per_s", "delivery_p50_ms", "delivery_p95_ms", "delivery_p99_ms"):
        assert math.isfinite(result[key]), key
    assert math.isfinite(result["ack_p99_ms"])
    assert "delivery p99 ms" in table(result_rows(result), ["chat smoke"])


async def test_the_raw_baseline_speaks_the_chat_frames() -> None:
    srv = TestServer(raw_broadcast.build_app(), host="127.0.0.1", port=0)
    await srv.start_server()
    try:
        result, _ = await chat_phase(str(srv.make_url("")), 1.0)
    finally:
        await srv.close()
    assert result["acked"] == result["sent"] == 20
    assert result["loss"] == 0 and result["unexpected"] == 0 and result["duplicates"] == 0
    assert result["expected"] == 80


def test_rooms_are_dealt_evenly_and_apart() -> None:
    import h3

    workload = ChatWorkload(1000, 50)
    assert all(len(members) == 20 for members in workload.members)
    assert sorted(i for members in workload.members for i in members) == list(range(1000))
    for sender in (0, 17, 999):
        members = workload.receivers(sender)
        assert sender in members
        assert {workload.spots[i].cell for i in members} == {workload.spots[sender].cell}
    homes = {workload.spots[i].cell for i in range(50)}
    assert len(homes) == 50
    assert all(h3.grid_distance(a, b) >= 4 for a in homes for b in homes if a != b)


async def test_a_fleet_can_sign_up_first_and_connect_later() -> None:
    """The idle-connection measurement signs its clients up before the first RSS reading, so
    only the websockets are counted (bench/chat_fanout.py)."""
    from bench.workloads import FeedWorkload, place_clients

    srv = TestServer(raw_broadcast.build_app(), host="127.0.0.1", port=0)
    await srv.start_server()
    fleet = Fleet(str(srv.make_url("")), FeedWorkload(place_clients(6, 2)), FleetConfig(clients=6))
    try:
        await fleet.sign_up()
        assert len(fleet.join_ms["signup"]) == 6 and not fleet.clients
        await fleet.connect()
        assert len(fleet.join_ms["signup"]) == 6  # not signed up again
        assert len(fleet.clients) == 6 and len(fleet.join_ms["setup"]) == 6
        assert all(c.user_id for c in fleet.clients)
    finally:
        await fleet.close()
        await srv.close()


def test_the_gateway_memory_reading_tells_kinds_of_memory_apart() -> None:
    import os

    from bench.chat_fanout import anon_by_kind, rss_parts

    status = rss_parts(os.getpid())
    assert status["RssAnon"] > 0 and status["Threads"] >= 1
    kinds = anon_by_kind(os.getpid())
    assert set(kinds) <= {"brk heap", "thread arenas", "other maps"}
    assert 0 < sum(kinds.values()) <= status["RssAnon"] + status["RssShmem"]
