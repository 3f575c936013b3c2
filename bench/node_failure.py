"""Node failure: a Ray node dies under steady writes; its shards come back on another node.

A private multi-node Ray on this machine (``ray.cluster_utils.Cluster``: a head with no CPUs,
so no shard lands there, and ``--workers`` worker nodes), embedded Postgres and Redis, and the
deployment's two shard actors. ``--writers`` tasks send ``post.create`` into a cell owned by a
shard of the node that will die, through the gateway's own router and transport (the shards'
direct channels), every ``--interval-ms``, each with its own idempotency key and retried on
``unavailable`` with the same key, as a client does. After ``--warmup-s`` the node hosting that
shard is removed without warning (its raylet and every process on it killed); the run goes on
``--after-s`` more. Printed: the outage (the longest time without an ack around the kill), the
time from the kill to the ack that ended it (the first of the restarted shard), the longest ack
of a write in flight at the kill, and the audit of every ack against
Postgres (lost: acked, not stored; duplicated: stored twice), which must both be 0.

Node death is noticed through Ray's health checks, tightened here to ~0.3 s
(``health_check_*``); Ray's defaults take ~15 s. Set the same ``_system_config`` on a real
cluster's head to get these figures (docs/operations.md). Timings on a loaded two-core box are
an upper bound; measure on a quiet one.

    python -m bench.node_failure            # prints JSON; exit 1 if anything acked was lost
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import shutil
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
    return p.parse_args(argv)


async def _drive(settings: Any, cluster: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Writers, the kill, and the audit; the figures."""
    from models.feed import PostCreate
    from models.ids import new_id
    from models.placement import cell_key
    from services.channel import DirectTransport
    from services.router import ShardRouter
    from services.transport import RayTransport
    from store import placement
    from store.db import create_pool

    pool = await create_pool(settings.database_url)
    ray_transport = RayTransport.connect(settings)
    transport = DirectTransport(ray_transport, settings.shard_call_timeout_s)

    async def load() -> Any:
        return await placement.load(pool)

    router = ShardRouter(transport, load, 0.001, 256)
    try:
        table = await router.refresh()
        stats = {s: await ray_transport.stats(s) for s in table.shards}
        victim_shard = table.shards[0]
        victim_node = stats[victim_shard]["node"]
        lat, lng = 46.0, 8.0
        cell = next(
            c
            for c in _cells(settings.h3_resolution, lat, lng)
            if table.owner(cell_key(c)) == victim_shard
        )
        user = new_id()
        await pool.execute(
            "INSERT INTO users (id, email, email_norm, password_hash, display_name)"
            " VALUES ($1, $2, $2, 'x', 'bench')",
            user,
            f"{user}@bench.test",
        )
        acked: list[tuple[float, float, str]] = []  # (sent, acked, post id)
        failed: list[str] = []
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        async def writer(n: int) -> None:
            i = 0
            while not stop.is_set():
                command = PostCreate(
                    user_id=user, key=uuid.uuid4().hex, cell=cell, lat=lat, lng=lng,
                    text=f"w{n}.{i}",
                )  # fmt: skip
                sent = loop.time()
                for _ in range(200):
                    try:
                        data = await router.call(command)
                        acked.append((sent, loop.time(), str(data["post"]["id"])))
                        break
                    except Exception as exc:  # unavailable while the shard restarts: retry
                        if getattr(exc, "code", "") != "unavailable":
                            failed.append(repr(exc))
                            break
                        await asyncio.sleep(0.02)
                i += 1
                await asyncio.sleep(args.interval_ms / 1000)

        tasks = [asyncio.create_task(writer(n)) for n in range(args.writers)]
        await asyncio.sleep(args.warmup_s)
        node = next(n for n in cluster.worker_nodes if n.node_id == victim_node)
        killed = loop.time()
        await asyncio.to_thread(cluster.remove_node, node, False)
        await asyncio.sleep(args.after_s)
        stop.set()
        await asyncio.gather(*tasks)
        times = sorted(a for _, a, _ in acked if a >= killed - 0.5)
        gaps = [(b - a, b) for a, b in itertools.pairwise(times)]
        outage, resumed = max(gaps) if gaps else (0.0, killed)
        in_flight = [a - s for s, a, _ in acked if s < killed <= a]
        ids = [p for _, _, p in acked]
        stored = await pool.fetch(
            "SELECT id, count(*) AS n FROM posts WHERE id = ANY($1) GROUP BY id", ids
        )
        back = await ray_transport.stats(victim_shard)
        return {
            "killed_node": victim_node,
            "shard": victim_shard,
            "restarted_on": back["node"],
            "acked": len(acked),
            "acked_after_kill": sum(1 for t in times if t >= killed),
            "outage_s": round(outage, 3),
            "kill_to_first_ack_s": round(resumed - killed, 3),
            "in_flight_at_kill": len(in_flight),
            "in_flight_max_ack_s": round(max(in_flight), 3) if in_flight else None,
            "lost": len(set(ids) - {r["id"] for r in stored}),
            "duplicated": sum(1 for r in stored if r["n"] > 1) + len(ids) - len(set(ids)),
            "failed": failed[:5],
        }
    finally:
        await transport.close()
        await pool.close()


def _cells(resolution: int, lat: float, lng: float) -> list[str]:
    import h3

    return [str(h3.latlng_to_cell(lat + i * 0.05, lng, resolution)) for i in range(200)]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start everything, drive, stop everything (in reverse, whatever happened)."""
    import ray
    from ray.cluster_utils import Cluster

    from cluster.config import load_settings
    from cluster.runtime import Runtime

    root = Path(tempfile.mkdtemp(prefix="hl-node-failure-"))
    cluster = None
    runtime = None
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
        )
        runtime = Runtime(settings)
        runtime.start_services()
        runtime.start_ray()
        runtime.start_shards()
        start = time.monotonic()
        result = asyncio.run(_drive(runtime.settings, cluster, args))
        result["run_s"] = round(time.monotonic() - start, 1)
        return result
    finally:
        if runtime is not None:
            for handle in runtime.shards.values():
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
