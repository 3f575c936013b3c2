"""The one interface between the router and the shards, and its two implementations.

``RayTransport`` calls the named CellShard actors (the real path: Ray owns placement of the
actors, their lifecycle and restarts). ``LocalTransport`` runs the same ``CellHost``s in this
process (the httpx ``MockTransport`` idea): gateway and service tests then need Postgres and
Redis but no Ray, and start in milliseconds. It copies every command and reply through pickle,
as Ray does, so nothing is shared by reference that would not be over Ray.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
from typing import Any, Protocol, TypeVar

from cluster.config import Settings
from models.commands import ShardCommand, ShardRead
from models.errors import AppError, Unavailable
from services.named_actor import NamedActor

log = logging.getLogger("hyperlocal.router")

T = TypeVar("T")


class ShardGone(Unavailable):
    """The shard is not there: unknown by name (removed by a scale-in), dead or restarting, or
    its connection broke. Unlike a timeout (a slow shard is still the owner), this says the
    placement may have moved its cells: the router looks at the table again."""


class ShardTransport(Protocol):
    async def execute(
        self, shard: str, version: int, commands: list[ShardCommand], waited_s: float = 0.0
    ) -> list[dict[str, Any]]:
        """Run ``commands`` at ``shard``; ``waited_s``: how long the oldest of them already
        waited at this gateway (the shard's group-commit window counts it)."""
        ...

    async def feed_page(
        self, shard: str, version: int, cells: list[str], cursor: str | None, limit: int
    ) -> dict[str, Any]: ...

    async def read(self, shard: str, version: int, read: ShardRead) -> dict[str, Any]: ...

    async def ping(self, shard: str) -> str: ...

    async def stats(self, shard: str, cell: str | None = None) -> dict[str, Any]: ...

    async def drain(self, shard: str) -> dict[str, Any]: ...

    async def close(self) -> None: ...


class RayTransport:
    """Calls named CellShard actors; Ray failures and timeouts become ``unavailable``.

    With a ``namespace`` a shard it has no handle of (one added by a scale-out) is looked up
    by name on first use, and a handle whose actor died for good (a shard removed, perhaps
    added again later) is dropped and looked up again on the next call."""

    def __init__(
        self, handles: dict[str, Any], timeout_s: float, namespace: str | None = None
    ) -> None:
        self._handles = handles
        self._timeout_s = timeout_s
        self._namespace = namespace

    @classmethod
    def connect(cls, settings: Settings) -> RayTransport:
        """Handles of this deployment's shards (the process must be connected to Ray); the
        table may name others than ``shard_count`` (a scale before the last ``up``): those, and
        any not found now, are looked up by name on first use."""
        import ray

        handles: dict[str, Any] = {}
        for name in settings.shard_names():
            with contextlib.suppress(ValueError):  # no such actor: by name when first used
                handles[name] = ray.get_actor(name, namespace=settings.ray_namespace)
        return cls(handles, settings.shard_call_timeout_s, settings.ray_namespace)

    async def _handle(self, shard: str) -> Any:
        """The shard's handle: kept, else looked up by name off the event loop
        (services/named_actor.py: ``ray.get_actor`` blocks on Ray's control server, rule 6)."""
        handle = self._handles.get(shard)
        if handle is None and self._namespace is not None:
            with contextlib.suppress(LookupError):  # no such actor (yet, or any more)
                handle = self._handles[shard] = await NamedActor(shard, self._namespace).handle()
        if handle is None:
            raise ShardGone(f"shard {shard} is unknown to this gateway")
        return handle

    async def _call(self, shard: str, method: str, *args: Any) -> Any:
        import ray
        from ray.exceptions import ActorDiedError, RayError

        handle = await self._handle(shard)
        try:
            return await asyncio.wait_for(getattr(handle, method).remote(*args), self._timeout_s)
        except ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, AppError):  # a typed refusal from the shard's own code
                raise exc.cause from None
            log.warning("shard %s %s failed: %r", shard, method, exc)
            raise Unavailable("a shard failed, retry with the same key") from None
        except (TimeoutError, RayError) as exc:
            log.warning("shard %s %s failed: %r", shard, method, exc)
            if isinstance(exc, ActorDiedError) and self._namespace is not None:
                self._handles.pop(shard, None)  # by name again next time
            if isinstance(exc, TimeoutError):  # slow, not gone (Ray's GetTimeoutError too)
                raise Unavailable("a shard is restarting, retry with the same key") from None
            raise ShardGone("a shard is restarting, retry with the same key") from None

    async def execute(
        self, shard: str, version: int, commands: list[ShardCommand], waited_s: float = 0.0
    ) -> list[dict[str, Any]]:
        return list(await self._call(shard, "execute", version, commands, waited_s))

    async def feed_page(
        self, shard: str, version: int, cells: list[str], cursor: str | None, limit: int
    ) -> dict[str, Any]:
        return dict(await self._call(shard, "feed_page", version, cells, cursor, limit))

    async def read(self, shard: str, version: int, read: ShardRead) -> dict[str, Any]:
        return dict(await self._call(shard, "read", version, read))

    async def ping(self, shard: str) -> str:
        return str(await self._call(shard, "ping"))

    async def stats(self, shard: str, cell: str | None = None) -> dict[str, Any]:
        return dict(await self._call(shard, "stats", cell))

    async def drain(self, shard: str) -> dict[str, Any]:
        """Scale-in: the shard loads the table in force and finishes its batches."""
        return dict(await self._call(shard, "drain"))

    async def endpoint(self, shard: str) -> dict[str, Any]:
        """Where the shard's direct channel listens, and its secret (services/channel.py)."""
        return dict(await self._call(shard, "endpoint"))

    async def close(self) -> None:
        """The actors outlive this gateway: nothing to close."""


def _copy(value: T) -> T:
    """What arrives on the other side of a Ray call: a copy, never the object itself."""
    copied: T = pickle.loads(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    return copied


class LocalTransport:
    """The deployment's shards as ``CellHost``s in this process, one per shard name.

    Owns the hosts it builds (their pools, Redis clients and committers) and closes them.
    Same contract as ``RayTransport``: typed refusals come back as replies, anything else a
    host raises becomes ``unavailable``.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.hosts: dict[str, Any] = {}
        for name in settings.shard_names():
            self.add(name)

    def add(self, name: str) -> None:
        """A host for shard ``name`` (a scale-out in this process); kept if there is one."""
        from actors.cell_host import CellHost
        from actors.registry import HANDLERS, READERS, TICKS

        if name not in self.hosts:
            self.hosts[name] = CellHost(name, self.settings, dict(HANDLERS), dict(READERS), TICKS)

    async def remove(self, name: str) -> None:
        """Close and forget shard ``name``'s host (a scale-in in this process)."""
        host = self.hosts.pop(name, None)
        if host is not None:
            await host.close()

    def _host(self, shard: str) -> Any:
        host = self.hosts.get(shard)
        if host is None:
            raise ShardGone(f"shard {shard} is unknown to this gateway")
        return host

    async def execute(
        self, shard: str, version: int, commands: list[ShardCommand], waited_s: float = 0.0
    ) -> list[dict[str, Any]]:
        replies = await self._host(shard).execute(version, _copy(commands), waited_s)
        return _copy(list(replies))

    async def feed_page(
        self, shard: str, version: int, cells: list[str], cursor: str | None, limit: int
    ) -> dict[str, Any]:
        return _copy(dict(await self._host(shard).feed_page(version, list(cells), cursor, limit)))

    async def read(self, shard: str, version: int, read: ShardRead) -> dict[str, Any]:
        return _copy(dict(await self._host(shard).read(version, _copy(read))))

    async def ping(self, shard: str) -> str:
        return str(self._host(shard).name)

    async def stats(self, shard: str, cell: str | None = None) -> dict[str, Any]:
        host = self._host(shard)
        await host.ready()
        return {**_copy(dict(await host.stats(cell))), "node": "local"}

    async def drain(self, shard: str) -> dict[str, Any]:
        return {**_copy(dict(await self._host(shard).drain())), "node": "local"}

    async def close(self) -> None:
        for host in self.hosts.values():
            await host.close()
