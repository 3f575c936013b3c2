"""The router's side of failover (services/router.py): a call whose connection broke is sent
again while the router watches the table, and goes to the new owner once the table moved."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from models.errors import Unavailable
from models.placement import Placement
from services.channel import ChannelLost
from services.router import ShardRouter
from services.transport import ShardGone

KEY = "cell:8808a0000000000"


@dataclass
class Cmd:
    route: str = KEY


class DeadShard:
    """shard-0 breaks the first call (its process died) and never answers again (Ray is
    restarting it); shard-1 answers. The table loses shard-0 when ``failed_over`` is set."""

    def __init__(self, first: Exception) -> None:
        self.first: Exception | None = first
        self.failed_over = False
        self.loads = 0
        self.timed_out = asyncio.Event()
        self.stuck_ended = False
        self.sent: list[tuple[str, int]] = []

    async def load(self) -> Placement:
        self.loads += 1
        table = Placement(1, ("shard-0", "shard-1"), {KEY: "shard-0"})
        return Placement(2, ("shard-1",)) if self.failed_over else table

    async def execute(
        self, shard: str, version: int, commands: list[Any], waited_s: float = 0.0
    ) -> list[dict[str, Any]]:
        self.sent.append((shard, version))
        if shard == "shard-1":
            return [{"ok": True, "data": {"by": shard}} for _ in commands]
        await self.shard_0()
        raise AssertionError("shard-0 never answers")

    async def shard_0(self) -> None:
        if self.first is not None:
            err, self.first = self.first, None
            raise err
        await self.timed_out.wait()  # the transport's own timeout (shard_call_timeout_s)
        self.stuck_ended = True
        raise Unavailable("a shard did not answer in time, retry with the key")


def _router(shard: DeadShard, poll_s: float) -> ShardRouter:
    return ShardRouter(shard, shard.load, 0.0, 16, failover_poll_s=poll_s)  # type: ignore[arg-type]


async def test_a_broken_call_goes_to_the_new_owner_once_the_table_moves() -> None:
    shard = DeadShard(ChannelLost("a shard connection closed, retry"))
    router = _router(shard, 0.02)
    call = asyncio.create_task(router.call(Cmd()))  # type: ignore[arg-type]
    await asyncio.sleep(0.2)
    assert not call.done(), "no failover yet: it waits for the restart"
    assert shard.sent == [("shard-0", 1), ("shard-0", 1)]  # broke, then sent again
    loads = shard.loads
    shard.failed_over = True
    reply = await asyncio.wait_for(call, 1.0)
    assert reply == {"by": "shard-1"} and shard.sent[-1] == ("shard-1", 2)
    assert loads < 20  # polled about every 20 ms over 200 ms, not on every loop turn
    shard.timed_out.set()  # the abandoned send ends by itself; nobody waits for it
    for _ in range(5):
        await asyncio.sleep(0)
    assert shard.stuck_ended


async def test_without_failover_a_broken_call_is_unavailable_at_once() -> None:
    shard = DeadShard(ChannelLost("a shard connection closed, retry"))
    with pytest.raises(Unavailable):
        await asyncio.wait_for(_router(shard, 0.0).call(Cmd()), 1.0)  # type: ignore[arg-type]
    assert shard.sent == [("shard-0", 1)]


async def test_a_timeout_is_not_sent_again_a_slow_shard_is_not_dead() -> None:
    shard = DeadShard(Unavailable("a shard did not answer in time, retry with the key"))
    with pytest.raises(Unavailable):
        await asyncio.wait_for(_router(shard, 0.02).call(Cmd()), 1.0)  # type: ignore[arg-type]
    assert shard.sent == [("shard-0", 1)]


class GoneShard(DeadShard):
    """shard-0 is gone (a scale-in removed it, ``ShardGone``) or, with ``slow``, times out;
    the table in Postgres has moved its cells to shard-1 unless ``stays``. Loads are counted,
    and each takes a little while, as a query does."""

    def __init__(self, *, slow: bool = False, stays: bool = False) -> None:
        super().__init__(Unavailable("a shard did not answer in time, retry with the key"))
        self.slow, self.stays = slow, stays

    async def load(self) -> Placement:
        self.loads += 1
        await asyncio.sleep(0.01)
        if self.loads == 1 or self.stays:
            return Placement(1, ("shard-0", "shard-1"), {KEY: "shard-0"})
        return Placement(2, ("shard-1",))

    async def shard_0(self) -> None:
        if self.slow:
            raise Unavailable("a shard did not answer in time, retry with the key")
        await asyncio.sleep(0.002 * len(self.sent))  # the calls break one after another
        raise ShardGone("a shard connection closed, retry")


async def test_a_gone_shard_reloads_the_table_once_for_all_the_calls_it_failed() -> None:
    shard = GoneShard()
    router = ShardRouter(shard, shard.load, 0.0, 1, 64)  # type: ignore[arg-type]
    await router.refresh()
    calls = [router.call(Cmd()) for _ in range(40)]  # type: ignore[arg-type]
    replies = await asyncio.wait_for(asyncio.gather(*calls), 5.0)
    assert replies == [{"by": "shard-1"}] * 40  # each sent again to the new owner
    # the first load, and one for all the failures over ~80 ms (not one per 10 ms load)
    assert shard.loads == 2
    assert ("shard-1", 2) in shard.sent and router.moved_retries == 40


async def test_a_gone_shard_whose_table_stays_is_unavailable() -> None:
    shard = GoneShard(stays=True)
    router = ShardRouter(shard, shard.load, 0.0, 16)  # type: ignore[arg-type]
    await router.refresh()
    with pytest.raises(ShardGone):
        await asyncio.wait_for(router.call(Cmd()), 1.0)  # type: ignore[arg-type]
    assert shard.loads == 2 and shard.sent == [("shard-0", 1)]


async def test_a_timeout_reloads_nothing() -> None:
    shard = GoneShard(slow=True)
    router = ShardRouter(shard, shard.load, 0.0, 16)  # type: ignore[arg-type]
    await router.refresh()
    for _ in range(5):
        with pytest.raises(Unavailable):
            await asyncio.wait_for(router.call(Cmd()), 1.0)  # type: ignore[arg-type]
    assert shard.loads == 1 and len(shard.sent) == 5  # the owner did not move: no load at all


async def test_a_load_begun_before_the_failure_was_sent_does_not_count() -> None:
    shard = GoneShard()
    router = ShardRouter(shard, shard.load, 0.0, 16)  # type: ignore[arg-type]
    older = asyncio.ensure_future(router.refresh())  # in flight, from before the call below
    await asyncio.sleep(0)
    since = asyncio.get_running_loop().time() + 0.001
    await asyncio.sleep(0.002)
    table = await router.refresh(since=since)
    assert (await older).version == 1 and table.version == 2 and shard.loads == 2
    assert await router.refresh(since=since) is table and shard.loads == 2  # read since: kept
