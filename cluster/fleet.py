"""``RayFleet``: shard actors started and stopped by name, for scale out and in (issue 13).

Used by the control actor (cluster/control.py) behind services/scaling.py. A new shard is a
named, detached actor with this deployment's options (actors/shard.py), exactly as `hyperlocal
up` starts the first ones, so gateways find it by name (services/transport.py). Stopping kills
it for good (``no_restart``): by then it owns nothing and has drained.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import ray

from actors.shard import ShardActor, deployment_actor_options, shard_actor_options
from cluster.config import Settings
from models.errors import Unavailable

log = logging.getLogger("hyperlocal.cluster")


class RayFleet:
    """Creates and kills this deployment's shard actors; holds only the settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def start(self, names: Sequence[str]) -> None:
        options = shard_actor_options(self.settings)
        handles: list[Any] = [
            ShardActor.options(**options, **deployment_actor_options(self.settings, name)).remote(
                name, self.settings
            )
            for name in names
        ]
        try:
            await asyncio.wait_for(
                asyncio.gather(*(h.ping.remote() for h in handles)),
                self.settings.shard_start_timeout_s,
            )
        except (TimeoutError, ray.exceptions.RayError) as exc:
            log.warning("shards %s did not start: %r", list(names), exc)
            raise Unavailable(f"new shards {list(names)} did not start; try again") from None
        log.info("started shards %s", list(names))

    async def stop(self, names: Sequence[str]) -> None:
        for name in names:
            try:
                handle = ray.get_actor(name, namespace=self.settings.ray_namespace)
            except ValueError:
                continue  # gone already
            ray.kill(handle, no_restart=True)
            log.info("stopped shard %s", name)
