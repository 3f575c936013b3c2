"""The notifier in an actor of its own (cluster/notifier.py): it, not the gateway, delivers;
its process runs at HL_NOTIFIER_NICENESS above the deployment's starter, every thread; the
gateway's /metrics shows its counts; killed, Ray restarts it and it delivers again."""

from __future__ import annotations

import asyncio
import os
import re

import pytest
import ray

from cluster.config import Settings
from tests.integration.client import Api
from tests.integration.notify_kit import MailSink, eventually

pytestmark = pytest.mark.integration

VERIFY = "Confirm your email address"


def _actor(settings: Settings) -> ray.actor.ActorHandle:
    return ray.get_actor(settings.notifier_actor_name, namespace=settings.ray_namespace)


async def _metrics(api: Api) -> dict[str, float]:
    async with api.http.get(api.base + "/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    out = {}
    for line in text.splitlines():
        if line.startswith(("hl_notify", "hl_notifier")):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


async def test_the_notifier_actor_delivers_niced_and_metrics_show_its_counts(
    api: Api, settings: Settings, mail_sink: MailSink
) -> None:
    actor = _actor(settings)
    before = await actor.stats.remote()
    assert before["pid"] != os.getpid()  # not this process, where the session's gateway runs
    floor = min(19, os.getpriority(os.PRIO_PROCESS, 0) + settings.notifier_niceness)
    threads = await actor.threads.remote()
    assert threads and min(threads.values()) >= floor, (floor, threads)

    user = await api.signup("actor-mail")
    await mail_sink.wait_for(user.email, subject=VERIFY)
    key = 'hl_notify_deliveries_total{channel="email",outcome="sent"}'

    async def counted() -> dict[str, float] | None:
        metrics = await _metrics(api)
        was = before["outcomes"].get(("email", "sent"), 0)
        return metrics if metrics.get(key, 0) > was else None

    metrics = await eventually(counted)  # the gateway read the actor's count on the scrape
    assert metrics["hl_notifier_up"] == 1.0
    assert "hl_notify_queued_email" in metrics and "hl_notify_queued_push" in metrics
    after = await actor.stats.remote()
    assert after["outcomes"][("email", "sent")] >= metrics[key]
    assert after["pid"] == before["pid"] and "paced_s" in after
    assert after["loop_failures"].get("notifier", 0) == 0  # no failed round on a healthy stack


async def test_a_killed_notifier_is_restarted_and_delivers_again(
    api: Api, settings: Settings, mail_sink: MailSink
) -> None:
    actor = _actor(settings)
    first = await actor.ping.remote()
    pid = (await actor.stats.remote())["pid"]
    ray.kill(actor, no_restart=False)

    async def restarted() -> str | None:
        try:
            answer = await asyncio.wait_for(actor.ping.remote(), 5)
        except (ray.exceptions.RayError, TimeoutError):
            return None
        return str(answer) if answer != first else None

    assert re.fullmatch(r"notifier:[0-9a-f]{12}", await eventually(restarted, timeout=60))
    assert (await actor.stats.remote())["pid"] != pid
    user = await api.signup("after-restart")  # queued now, woken by NOTIFY in the new process
    await mail_sink.wait_for(user.email, subject=VERIFY, timeout=20)

    async def up_again() -> bool:
        return (await _metrics(api)).get("hl_notifier_up") == 1.0

    await eventually(up_again)  # the gateway found the new incarnation by name
