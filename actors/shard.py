"""CellShard: the Ray async actor that hosts many cells.

Thin by design: it exposes the CellHost interface to Ray, and the address of its direct channel
(actors/channel.py), which serves the same interface to gateways without a Ray call each.
Owns (through its CellHost) the cells and user keys the placement table assigns to its name.
Restartable: Ray restarts it after a crash or ``ray.kill``; it reconnects lazily and reloads
cells from Postgres (and listens on a new port with a new secret), and callers' retries are
safe because every mutation is idempotent by key.
"""

from __future__ import annotations

import os
from typing import Any

import ray

from actors import lifeline
from actors.cell_host import CellHost
from actors.channel import ChannelServer
from actors.registry import HANDLERS, READERS, TICKS
from cluster import gcpolicy
from cluster.config import Settings
from models.commands import ShardCommand, ShardRead


class CellShard:
    def __init__(self, name: str, settings: Settings) -> None:
        self._host = CellHost(name, settings, dict(HANDLERS), dict(READERS), TICKS)
        self._channel = ChannelServer(self._host, settings.shard_direct_host)
        if settings.push_fanout:  # committed events to the gateways' channels, not Redis
            self._host.push = self._channel.push
        gcpolicy.settle(settings)  # a long-running process from here on (cluster/gcpolicy.py)
        lifeline.watch_parent(settings.shard_lifeline_s)  # its raylet gone: exit at once

    async def endpoint(self) -> dict[str, Any]:
        """Where this incarnation's direct channel listens, and its secret (actors/channel.py):
        gateways send their command batches there instead of through Ray calls. Bound to every
        interface (``shard_direct_host`` 0.0.0.0, several nodes), it names its node's address."""
        await self._host.ready()
        endpoint = await self._channel.start()
        if endpoint["host"] in ("0.0.0.0", "::"):  # listening everywhere: name this node
            endpoint = {**endpoint, "host": ray.util.get_node_ip_address()}
        return endpoint

    async def execute(
        self, version: int, commands: list[ShardCommand], waited_s: float = 0.0
    ) -> list[dict[str, Any]]:
        return await self._host.execute(version, commands, waited_s)

    async def feed_page(
        self, version: int, cells: list[str], cursor: str | None, limit: int
    ) -> dict[str, Any]:
        return await self._host.feed_page(version, cells, cursor, limit)

    async def read(self, version: int, read: ShardRead) -> dict[str, Any]:
        return await self._host.read(version, read)

    async def stats(self, cell: str | None = None) -> dict[str, Any]:
        await self._host.ready()
        channel = self._channel
        pushes = {"push_frames": channel.pushes, "push_cutoffs": channel.push_cutoffs,
                  "push_gateways": channel.push_gateways}  # fmt: skip
        collector = gcpolicy.pauses.gauges()  # this process's collector (cluster/gcpolicy.py)
        return {**await self._host.stats(cell), **pushes, **collector, "node": _node_id()}

    async def drain(self) -> dict[str, Any]:
        """Scale-in's last call before this shard is stopped (``CellHost.drain``)."""
        return {**await self._host.drain(), "node": _node_id()}

    async def ping(self) -> str:
        return self._host.name

    async def pid(self) -> int:
        """This incarnation's process id (the failover benchmark kills it)."""
        return os.getpid()


def _node_id() -> str:
    """The Ray node this incarnation runs on (a restart after a node failure: another)."""
    return str(ray.get_runtime_context().get_node_id())


def shard_actor_options(settings: Settings) -> dict[str, Any]:
    """Ray actor options of a shard: this deployment's resources and restart policy."""
    return {
        "num_cpus": settings.shard_num_cpus,
        "max_restarts": settings.shard_max_restarts,
        "max_task_retries": 2,
        "max_concurrency": 1000,
    }


def deployment_actor_options(settings: Settings, name: str) -> dict[str, Any]:
    """Ray options every named actor of this deployment shares (shards, the control actor,
    the notifier): named in the deployment's namespace, detached (outliving the process that
    created it), and found rather than duplicated when it exists already."""
    return {
        "name": name,
        "namespace": settings.ray_namespace,
        "lifetime": "detached",
        "get_if_exists": True,
    }


ShardActor = ray.remote(CellShard)
"""The Ray actor class; created with ``ShardActor.options(**shard_actor_options(s), name=...)``."""
