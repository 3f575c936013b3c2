"""Deployment fixtures: one embedded Postgres, Redis and Ray per test session, real sockets.

Shared by tests/integration and tests/browser (here, above both, so one pytest session holds
one deployment whichever of them it runs); unit tests never ask for them.

Everything started here is stopped here; nothing outside is touched (data lives in a temp dir).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from cluster.config import Settings, load_settings
from cluster.runtime import Runtime
from gateway.app import build_app
from tests.integration.client import Api
from tests.integration.gateways import GatewayProcess
from tests.integration.notify_kit import MailSink

_BASE = dict(
    port=0,
    shard_count=2,
    shard_num_cpus=0.1,
    ray_num_cpus=2,
    group_commit_ms=1.0,
    heartbeat_s=5.0,
    rest_rate_per_min=100_000,
    login_free_failures_address=100_000,  # every test signs in from 127.0.0.1
    ws_rate_burst=500,
    ws_rate_per_s=500,
    argon2_time_cost=1,  # real argon2id, cheaper: tests sign up many users
    argon2_memory_kib=8192,
    # marketplace: hooks to the local receiver, fast retries and sweeps
    hooks_allow_private=True,
    hook_retry_base_s=0.2,
    hook_retry_max_s=1.0,
    hook_max_attempts=4,
    hook_poll_s=0.1,
    market_sweep_s=0.3,
    admin_sweep_s=1.0,  # the control actor lifts expired suspensions within a second
    sandbox_payments=True,  # off by default (issue 14): tests pay with test cards
    # fraud scoring records a score on every order; holding is off here (every test buyer is
    # a new account buying fast): tests/integration/test_risk.py runs a gateway that holds
    risk_hold_score=101,
    # failover is off in the session: tests that kill a shard expect Ray's restart, and a
    # loaded box must not fail a slow shard over under another test; the failover tests run
    # their own deployments (tests/integration/test_failover.py)
    failover_ping_s=0.0,
    # the ledger (tests/integration/test_money_ledger.py): balances released a second after
    # fulfilment, looked for every 0.3 s; payouts only when a test asks
    balance_hold_s=1.0,
    ledger_sweep_s=0.3,
    payout_interval_s=0.0,
    commission_bps_by_category={"flowers": 1500},
)


_NOTIFY = dict(  # notifications: the SMTP sink below, push to loopback, fast retries
    push_allow_private=True,
    notify_retry_base_s=0.2,
    notify_retry_max_s=1.0,
    notify_max_attempts=3,
    notify_poll_s=30.0,  # no fast poll: a queued delivery wakes the notifiers (LISTEN hl_outbox)
    notify_gather_ms=20.0,
    notify_digest_period_s=2.0,  # a "daily" digest every 2 s, looked for every 0.3 s
    notify_digest_check_s=0.3,
    notifier_num_cpus=0.1,  # the notifier actor (cluster/notifier.py), beside the shards
)


@pytest.fixture(scope="session")
def mail_sink() -> Iterator[MailSink]:
    """A real SMTP server on loopback every gateway of the session sends to."""
    sink = MailSink()
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture(scope="session")
def runtime(mail_sink: MailSink) -> Iterator[Runtime]:
    root = Path(tempfile.mkdtemp(prefix="hl-test-"))
    rt = Runtime(load_settings(data_dir=root, smtp_url=mail_sink.url, **_NOTIFY, **_BASE))
    try:
        rt.start()
        yield rt
    finally:
        rt.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def settings(runtime: Runtime) -> Settings:
    return runtime.settings


@pytest.fixture(scope="session")
async def server(settings: Settings) -> AsyncIterator[TestServer]:
    srv = TestServer(build_app(settings), host="127.0.0.1", port=0)
    await srv.start_server()
    yield srv
    await srv.close()


@pytest.fixture(scope="session")
async def http() -> AsyncIterator[ClientSession]:
    async with ClientSession() as session:
        yield session


@pytest.fixture
def api(server: TestServer, http: ClientSession) -> Api:
    return Api(str(server.make_url("")), http)


@pytest.fixture(scope="session")
async def gateway2(
    runtime: Runtime, settings: Settings, http: ClientSession
) -> AsyncIterator[GatewayProcess]:
    """A second gateway *process* over the same Ray, Postgres and Redis."""
    proc = GatewayProcess(settings, runtime.ray_address())
    await proc.start(http)
    yield proc
    await proc.stop()


@pytest.fixture
def api2(gateway2: GatewayProcess, http: ClientSession) -> Api:
    return Api(gateway2.base, http)
