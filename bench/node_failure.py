"""Node failure: a Ray node (or one shard's process) dies under steady writes; with failover
on, its cells serve again through another shard within a second.

A private multi-node Ray on this machine (``ray.cluster_utils.Cluster``: a head with no CPUs,
which hosts the control actor, and ``--workers`` worker nodes, one shard on each), embedded
Postgres and Redis, the deployment's two shard actors and its control actor, whose failover
watcher pings the shards (services/failover.py). ``--writers`` tasks send ``post.create`` into
a cell owned by the shard that will die, through the gateway's own router and transport (the
shards' direct channels), every ``--interval-ms``, each with its own idempotency key and
retried on ``unavailable`` with the same key, as a client does. After ``--warmup-s`` the shard
dies without warning: ``--kill node`` removes its node (its raylet and every process on it
killed), ``--kill process`` SIGKILLs the shard's process alone. The run goes on ``--after-s``
more, and then until the failed-over shard, restarted by Ray, has rejoined after ``--rejoin-s``
answering pings (the cell moves back to it, live), and a second beyond.

Printed: the outage (the longest time without an ack between the kill and the rejoin), the
time from the kill to the ack that ended it (with failover: through the survivor), the
longest ack of a write in flight at the kill, the failover's and rejoin's placement changes
and when the bench saw them, the longest gap around the rejoin, and the audit of every ack
against Postgres (lost: acked, not stored; duplicated: stored twice), which must both be 0.
``--no-failover`` measures the path without it (the cells wait for Ray's restart).

Node death is noticed by Ray's health checks, tightened here to ~0.3 s (``health_check_*``);
Ray's defaults take ~15 s. Failover does not wait for them: the shard's process is gone, so
the watcher's probe connection is reset. Timings on a loaded two-core box are an upper bound;
measure on a quiet one.

    python -m bench.node_failure [--kill process]   # JSON; exit 1 if anything acked was lost
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HEALTH = {
    "health_check_initial_delay_ms": 1000,
    "health_check_period_ms": 100,
    "health_check_timeout_ms": 200,
    "health_check_failure_threshold": 3,
}
"""Ray's node health checks: a dead node is declared after ~0.3 s (defaults: ~15 s)."""

NAMESPACE = "hl-node-failure"


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.node_failure", description=__doc__)
    p.add_argument("--workers", type=int, default=2, help="worker nodes (each 1 CPU)")
    p.add_argument("--writers", type=int, default=4)
    p.add_argument("--interval-ms", type=float, default=20.0)
    p.add_argument("--warmup-s", type=float, default=2.0)
    p.add_argument("--after-s", type=float, default=4.0)
    p.add_argument("--kill", choices=("node", "process"), default="node")
    p.add_argument("--rejoin-s", type=float, default=2.0, help="HL_FAILOVER_REJOIN_S")
    p.add_argument("--no-failover", action="store_true", help="HL_FAILOVER_PING_S=0")
    p.add_argument(
        "--rejoin-wait-s", type=float, default=60.0, help="after --after-s, wait for the rejoin"
    )
    return p.parse_args(argv)


async def _drive(
    settings: Any, cluster: Any, control: Any, args: argparse.Namespace
) -> dict[str, Any]:
    """Writers, the kill, the placement watch and the audit; the figures."""
    import ray

    from models.placement import cell_key
    from services.channel import ATTEMPTS, DirectTransport
    from services.router import ShardRouter
    from services.transport import RayTransport
    from store import placement
    from store.db import create_pool

    failover = settings.failover_ping_s > 0
    pool = await create_pool(settings.database_url)
    ray_transport = RayTransport.connect(settings)
    transport = DirectTransport(
        ray_transport, settings.shard_call_timeout_s, 1 if failover else ATTEMPTS
    )

    async def load() -> Any:
        return await placement.load(pool)

    poll = settings.failover_poll_s if failover else 0.0
    router = ShardRouter(transport, load, 0.001, 256, failover_poll_s=poll)
    try:
        table = await router.refresh()
        stats = {s: await ray_transport.stats(s) for s in table.shards}
        victim_shard = table.shards[0]
        victim_node = stats[victim_shard]["node"]
        victim = ray.get_actor(victim_shard, namespace=settings.ray_namespace)
        victim_pid = await victim.pid.remote()
        lat, lng = 46.0, 8.0
        cell = next(
            c
            for c in _cells(settings.h3_resolution, lat, lng)
            if table.owner(cell_key(c)) == victim_shard
        )
        user = await _user(pool)
        acked: list[tuple[float, float, str]] = []  # (sent, acked, post id)
        failed: list[str] = []
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        seen: dict[str, float] = {}  # "failover" / "rejoin": when the table showed it

        async def watch() -> None:
            while not stop.is_set():
                now = await placement.load(pool)
                if now is not None and victim_shard not in now.shards:
                    seen.setdefault("failover", loop.time())
                elif now is not None and "failover" in seen:
                    seen.setdefault("rejoin", loop.time())
                await asyncio.sleep(0.05)

        tasks = [
            asyncio.create_task(_writer(router, n, user, cell, lat, lng, args, acked, failed, stop))
            for n in range(args.writers)
        ]
        watcher = asyncio.create_task(watch())
        await asyncio.sleep(args.warmup_s)
        killed = loop.time()
        if args.kill == "node":
            node = next(n for n in cluster.worker_nodes if n.node_id == victim_node)
            await asyncio.to_thread(cluster.remove_node, node, False)
        else:
            os.kill(victim_pid, signal.SIGKILL)
        kill_took = loop.time() - killed  # removing a node kills its processes one by one
        await asyncio.sleep(args.after_s)
        if failover and settings.failover_rejoin_s > 0:  # until the restarted shard is back
            for _ in range(int(args.rejoin_wait_s / 0.1)):
                if "rejoin" in seen:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0 if "rejoin" in seen else 0.0)  # writes to it again
        stop.set()
        await asyncio.gather(*tasks, watcher)
        rejoined_at = seen.get("rejoin", float("inf"))
        times = sorted(a for _, a, _ in acked if killed - 0.5 <= a < rejoined_at)
        gaps = [(b - a, b) for a, b in itertools.pairwise(times)]
        outage, resumed = max(gaps) if gaps else (0.0, killed)
        after = sorted(a for _, a, _ in acked if a >= rejoined_at - 0.5)
        rejoin_gap = max((b - a for a, b in itertools.pairwise(after)), default=None)
        in_flight = [a - s for s, a, _ in acked if s < killed <= a]
        ids = [p for _, _, p in acked]
        stored = await pool.fetch(
            "SELECT id, count(*) AS n FROM posts WHERE id = ANY($1) GROUP BY id", ids
        )
        back = await _stats_when_back(ray_transport, victim_shard)
        final = await placement.load(pool)
        assert final is not None
        return {
            "kill": args.kill,
            "failover": failover,
            "killed_node": victim_node,
            "shard": victim_shard,
            "restarted_on": back.get("node"),
            "acked": len(acked),
            "acked_after_kill": sum(1 for t in times if t >= killed),
            "kill_took_s": round(kill_took, 3),
            "outage_s": round(outage, 3),
            "kill_to_first_ack_s": round(resumed - killed, 3),
            "kill_to_failover_s": _since(seen.get("failover"), killed),
            "kill_to_rejoin_s": _since(seen.get("rejoin"), killed),
            "rejoin_max_gap_s": round(rejoin_gap, 3) if rejoin_gap is not None else None,
            "acked_after_rejoin": sum(1 for t in after if t >= rejoined_at),
            "placement_changes": await control.failovers.remote() if control else [],
            "owner_at_end": final.owner(cell_key(cell)),
            "in_flight_at_kill": len(in_flight),
            "in_flight_max_ack_s": round(max(in_flight), 3) if in_flight else None,
            "lost": len(set(ids) - {r["id"] for r in stored}),
            "duplicated": sum(1 for r in stored if r["n"] > 1) + len(ids) - len(set(ids)),
            "failed": failed[:5],
        }
    finally:
        await transport.close()
        await pool.close()


async def _writer(
    router: Any,
    n: int,
    user: str,
    cell: str,
    lat: float,
    lng: float,
    args: argparse.Namespace,
    acked: list[tuple[float, float, str]],
    failed: list[str],
    stop: asyncio.Event,
) -> None:
    """``post.create`` every ``interval_ms``, each retried on ``unavailable`` with its key."""
    from models.feed import PostCreate

    loop = asyncio.get_running_loop()
    i = 0
    while not stop.is_set():
        command = PostCreate(
            user_id=user, key=uuid.uuid4().hex, cell=cell, lat=lat, lng=lng, text=f"w{n}.{i}"
        )
        sent = loop.time()
        for _ in range(500):
            try:
                data = await router.call(command)
                acked.append((sent, loop.time(), str(data["post"]["id"])))
                break
            except Exception as exc:  # unavailable while the shard fails over: retry
                if getattr(exc, "code", "") != "unavailable":
                    failed.append(repr(exc))
                    break
                await asyncio.sleep(0.02)
        i += 1
        await asyncio.sleep(args.interval_ms / 1000)


async def _user(pool: Any) -> str:
    from models.ids import new_id

    user = new_id()
    await pool.execute(
        "INSERT INTO users (id, email, email_norm, password_hash, display_name)"
        " VALUES ($1, $2, $2, 'x', 'bench')",
        user,
        f"{user}@bench.test",
    )
    return str(user)


async def _stats_when_back(ray_transport: Any, shard: str) -> dict[str, Any]:
    """The restarted shard's stats (Ray restarts it: that may take a while on a busy box)."""
    for _ in range(30):
        try:
            return dict(await ray_transport.stats(shard))
        except Exception:  # restarting still
            await asyncio.sleep(1.0)
    return {}


def _since(at: float | None, killed: float) -> float | None:
    return round(at - killed, 3) if at is not None else None


def _cells(resolution: int, lat: float, lng: float) -> list[str]:
    import h3

    return [str(h3.latlng_to_cell(lat + i * 0.05, lng, resolution)) for i in range(200)]


def _place(runtime: Any, cluster: Any) -> Any:
    """One shard per worker node (soft: Ray may restart it anywhere), the control actor on the
    head (so the kill never takes the watcher with it); the control's handle."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from actors.shard import ShardActor, shard_actor_options
    from cluster.control import start_control

    settings = runtime.settings
    nodes = cluster.worker_nodes
    for i, name in enumerate(settings.shard_names()):
        node = sorted(nodes, key=lambda n: n.node_id)[i % len(nodes)]
        ShardActor.options(
            **shard_actor_options(settings),
            name=name,
            namespace=settings.ray_namespace,
            lifetime="detached",
            get_if_exists=True,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node.node_id, soft=True),
        ).remote(name, settings)
    runtime.start_shards()  # finds them by name, makes the table
    head = NodeAffinitySchedulingStrategy(cluster.head_node.node_id, soft=False)
    return start_control(settings, scheduling_strategy=head)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start everything, drive, stop everything (in reverse, whatever happened)."""
    import ray
    from ray.cluster_utils import Cluster

    from cluster.config import load_settings
    from cluster.runtime import Runtime

    root = Path(tempfile.mkdtemp(prefix="hl-node-failure-"))
    cluster = None
    runtime = None
    control = None
    try:
        cluster = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 0, "include_dashboard": False, "_system_config": HEALTH},
        )
        for _ in range(args.workers):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        settings = load_settings(
            data_dir=root,
            ray_address=cluster.address,
            ray_namespace=NAMESPACE,
            shard_count=2,
            shard_num_cpus=0.1,
            group_commit_ms=1.0,
            shard_call_timeout_s=5.0,
            failover_ping_s=0.0 if args.no_failover else 0.2,
            failover_rejoin_s=args.rejoin_s,
        )
        runtime = Runtime(settings)
        runtime.start_services()
        runtime.start_ray()
        control = runtime.control = _place(runtime, cluster)
        start = time.monotonic()
        result = asyncio.run(_drive(runtime.settings, cluster, control, args))
        result["run_s"] = round(time.monotonic() - start, 1)
        return result
    finally:
        if runtime is not None:
            for handle in [*runtime.shards.values(), control]:
                with contextlib.suppress(Exception):  # a shard whose node is gone
                    ray.kill(handle)  # type: ignore[arg-type]
            ray.shutdown()
            runtime.stop()
        if cluster is not None:
            cluster.shutdown()
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    result = run(_args(argv))
    print(json.dumps(result, indent=2))
    return 0 if result["lost"] == 0 and result["duplicated"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
