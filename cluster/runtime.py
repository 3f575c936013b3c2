"""Bring a deployment up and down: services, schema, Ray, shards and placement.

``Runtime`` owns what it starts, and only that: an embedded Postgres/Redis when no URL is given,
a local Ray when no RAY_ADDRESS is given, the shard actors, the control actor and the notifier
actor (cluster/notifier.py; Ray restarts it when it dies). ``stop`` undoes it in reverse.
It returns the resolved Settings (with the real URLs) that gateways and shards run with.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import ray

from actors.shard import ShardActor, deployment_actor_options, shard_actor_options
from cluster.config import Settings
from cluster.control import start_control
from cluster.notifier import start_notifier, wait_ready
from models.placement import Placement
from store import placement
from store.db import create_pool, migrate
from store.embedded import EmbeddedPostgres, EmbeddedRedis

log = logging.getLogger("hyperlocal.runtime")


@dataclass
class Runtime:
    settings: Settings
    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None
    started_ray: bool = False
    shards: dict[str, object] = field(default_factory=dict)
    control: object | None = None
    notifier: object | None = None

    def start_services(self) -> Settings:
        """Start what has no URL, migrate, and return settings with every URL resolved."""
        updates: dict[str, object] = {}
        root = self.settings.data_dir.resolve()
        if not self.settings.database_url:
            extra = self.settings.embedded_pg_options
            self.postgres = EmbeddedPostgres(root, extra_options=extra).start()
            updates["database_url"] = self.postgres.url
        if not self.settings.redis_url:
            self.redis = EmbeddedRedis(root).start()
            updates["redis_url"] = self.redis.url
        self.settings = self.settings.model_copy(update=updates)
        assert self.settings.database_url
        applied = asyncio.run(migrate(self.settings.database_url))
        if applied:
            log.info("migrations applied: %s", applied)
        return self.settings

    def start_ray(self) -> None:
        if ray.is_initialized():
            return
        if self.settings.ray_address:
            ray.init(
                address=self.settings.ray_address,
                namespace=self.settings.ray_namespace,
                log_to_driver=False,
            )
        else:
            # Ray's workers (the shard actors) inherit this; Ray picks uvloop when installed.
            os.environ["RAY_USE_UVLOOP"] = "1" if self.settings.event_loop == "uvloop" else "0"
            # Ray's raylet reads its settings from RAY_<name>, the name in Ray's own case
            os.environ["RAY_worker_niceness"] = str(self.settings.shard_niceness)  # noqa: SIM112
            ray.init(
                address="local",  # a new private Ray, even if another runs on this machine
                num_cpus=self.settings.ray_num_cpus,
                namespace=self.settings.ray_namespace,
                include_dashboard=False,
                log_to_driver=False,
            )
            self.started_ray = True

    def ray_address(self) -> str:
        """The address other processes (more gateways) use to join this Ray cluster."""
        return self.settings.ray_address or str(ray.get_runtime_context().gcs_address)

    def start_shards(self) -> Placement:
        """Create (or find) the shard actors and make the placement table match them: the
        shards a stored table names (the last scale, failover or pin, kept across restarts),
        else ``shard_count`` of them, which only seeds a new table. One Postgres connection
        reads the stored table and writes the new one."""
        return asyncio.run(self._place_shards())

    async def _place_shards(self) -> Placement:
        assert self.settings.database_url
        pool = await create_pool(self.settings.database_url, max_size=1)
        try:
            stored = await placement.load(pool)
            names = stored.shards if stored else self.settings.shard_names()
            await asyncio.to_thread(self._start_actors, names)  # Ray's blocking calls
            return await placement.ensure(pool, names)
        finally:
            await pool.close()

    def _start_actors(self, names: tuple[str, ...]) -> None:
        options = shard_actor_options(self.settings)
        for name in names:
            self.shards[name] = ShardActor.options(
                **options, **deployment_actor_options(self.settings, name)
            ).remote(name, self.settings)
        ray.get([h.ping.remote() for h in self.shards.values()], timeout=60)  # type: ignore[attr-defined]

    def start(self) -> Settings:
        settings = self.start_services()
        self.start_ray()
        self.notifier = start_notifier(self.settings, wait=False)  # starts beside the shards
        table = self.start_shards()
        log.info("placement v%d over %s", table.version, ", ".join(table.shards))
        self.control = start_control(self.settings)
        wait_ready(self.notifier)
        self._write_deployment()
        return settings

    def deployment_file(self) -> Path:
        return deployment_file(self.settings)

    def _write_deployment(self) -> None:
        """Where a running deployment is, for `hyperlocal admin` on this machine (owner-only:
        the URLs carry credentials)."""
        path = self.deployment_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        info = {
            "ray_address": self.ray_address(),
            "ray_namespace": self.settings.ray_namespace,
            "control_actor_name": self.settings.control_actor_name,
            # A local Ray turns token authentication on in this process's environment (the
            # token itself stays where Ray keeps it, ~/.ray/auth_token): a client must too.
            "ray_auth_mode": os.environ.get("RAY_AUTH_MODE"),
        }
        path.touch(mode=0o600)
        path.write_text(json.dumps(info))

    def stop(self) -> None:
        if self.control is not None:
            self.deployment_file().unlink(missing_ok=True)
        if self.started_ray:
            if self.control is not None:
                with contextlib.suppress(Exception):  # its watcher must not see shards die
                    ray.get(self.control.stop_failover.remote(), timeout=10)  # type: ignore[attr-defined]
                ray.kill(self.control)  # type: ignore[arg-type]
            if self.notifier is not None:
                ray.kill(self.notifier)  # type: ignore[arg-type]
            for handle in self.shards.values():
                ray.kill(handle)  # type: ignore[arg-type]
            ray.shutdown()
            self.started_ray = False
        if self.redis:
            self.redis.stop()
        if self.postgres:
            self.postgres.stop()


def deployment_file(settings: Settings) -> Path:
    """The file `hyperlocal up` writes while it runs: the Ray address of the deployment."""
    return settings.data_dir.resolve() / "deployment.json"
