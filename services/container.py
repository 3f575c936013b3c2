"""The one container of services: built in one place, at startup, with typed attributes.

``open_services`` opens every resource the application layer needs, in order — the Postgres
pool, Redis, the shard router over its transport, presence — builds each service once with
what it depends on (nothing is patched in afterwards), starts the background loops (the REST
hook dispatcher and the market sweeper) and, on exit, stops and closes everything in reverse.
The notifier is not among them: it runs in an actor of its own (cluster/notifier.py), which
opens what it needs with ``open_notifier``; a gateway only reads its counters.
Every transport (the aiohttp gateway today; the control actor, the CLI and GraphQL next) gets
the same ``Services``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import asyncpg
import redis.asyncio as aioredis

from cluster.config import Settings
from models.cells import Geo
from models.ids import new_id
from models.notifications import kind_rows, open_channels
from models.placement import Placement
from payments import PaymentProvider, providers_from
from payments.stripe_transfers import StripeTransfers
from services.access import Access
from services.account_email import AccountEmails
from services.accounts import AuthService
from services.admin import AdminService
from services.analytics import AnalyticsService
from services.appeals import AppealService
from services.channel import ATTEMPTS, DirectTransport
from services.chat import ChatService
from services.checkout import Checkout
from services.control import Control, ControlHost, LocalControl, RayControl
from services.disputes import DisputeService
from services.feed import FeedService
from services.hooks import HookDispatcher
from services.ledger import LedgerService
from services.loops import Backoff, LoopFailures, stop
from services.mailer import Mailer
from services.market import MarketService
from services.market_jobs import Sweeper
from services.media import MediaService, open_blobs
from services.moderation import ModerationService
from services.notifications import NotificationService
from services.notifier import Notifier
from services.notifier_client import NotifierClient
from services.notify_links import Links
from services.payout_accounts import PayoutAccounts
from services.payout_holds import PayoutHolds
from services.payouts import Payouts
from services.presence import Presence
from services.provider_events import ProviderEvents
from services.ranking import CellRanker
from services.risk import RiskReview
from services.router import ShardRouter
from services.scaling import ClusterService, Fleet, LocalFleet, NoFleet
from services.search import SearchService
from services.secrets import Keys
from services.social import SocialService
from services.stripe_events import StripeEvents
from services.transport import LocalTransport, RayTransport, ShardTransport
from services.vendor_apps import AppTokens, VendorApps
from services.webpush import WebPush
from store import notifications_store, placement
from store.db import create_pool

log = logging.getLogger("hyperlocal.services")


@dataclass(frozen=True)
class Services:
    """One of each service of this process, and the resources they share."""

    settings: Settings
    db: asyncpg.Pool
    redis: aioredis.Redis
    geo: Geo
    router: ShardRouter
    presence: Presence
    access: Access
    ranker: CellRanker
    """One memory of cells without a model, shared by the feed and the marketplace."""
    keys: Keys
    """The JWT signing ring and the data keys sealing secrets at rest."""
    accounts: AuthService
    feed: FeedService
    chat: ChatService
    providers: dict[str, PaymentProvider]
    market: MarketService
    checkout: Checkout
    stripe_events: StripeEvents
    provider_events: ProviderEvents
    """PayPal and UPI webhooks and PayPal returns (issue 17)."""
    app_tokens: AppTokens
    vendor_apps: VendorApps
    admin: AdminService
    moderation: ModerationService
    appeals: AppealService
    disputes: DisputeService
    risk: RiskReview
    """The fraud review queue: held checkouts released or rejected (through ``control``)."""
    holds: PayoutHolds
    """Payout holds: what a payout (issue 17) asks first, ``holds.blocked``."""
    control: Control
    """The control actor (``RayControl``), or its host in this process over a given transport."""
    media: MediaService
    """Photo uploads: the decoding workers and the blob store (local disk or S3)."""
    # notifications (docs/notifications.md)
    notifications: NotificationService
    account_emails: AccountEmails
    notifier: NotifierClient
    """The deployment's notifier actor as /metrics shows it (its counters)."""
    social: SocialService
    """Profiles, follow lists, post pages, author deletion, reposts, vendors near a point."""
    search: SearchService
    cluster: ClusterService
    """Ops on the cluster (view, moves, scaling): the control actor's, behind ``control``."""
    analytics: AnalyticsService
    """Vendor analytics from the rollups, and exports (docs/analytics.md)."""
    # the ledger and payouts (issue 17, docs/payments.md)
    ledger: LedgerService
    """Vendor balances, the release sweep, revenue reports over the ledger."""
    payouts: Payouts
    """Payout batches and transfers: the control actor runs them (``payouts.run``)."""
    loops: LoopFailures = field(default_factory=LoopFailures)
    """The failures of this process's background loops by name (services/loops.py)."""


@contextlib.asynccontextmanager
async def open_services(
    settings: Settings,
    transport: ShardTransport | None = None,
    *,
    on_revoked: Callable[[str, str], object] | None = None,
    background: bool = True,
    fleet: Fleet | None = None,
) -> AsyncIterator[Services]:
    """The services of one process, open for the ``async with`` block.

    ``transport`` None means the real Ray shards, looked up by name (the process must be
    connected to Ray), reached over their direct channels (``shard_transport`` "direct") or Ray
    calls ("ray"); a given transport stays its caller's to close. ``on_revoked(user,
    session)`` hears of every sign-in ended here (the gateway closes its sockets). Without
    ``background`` no hook dispatcher or sweeper runs (tests that drive them by hand).
    ``fleet`` starts and stops shards for scaling (the control actor's ``RayFleet``); None
    means the hosts of a given ``LocalTransport``, else none (scaling is ``unavailable``).
    """
    sizes = (settings.db_pool_min, settings.db_pool_max, settings.redis_max_connections)
    async with (
        open_stores(settings, *sizes) as (db, redis),
        _open_services(settings, db, redis, transport, on_revoked, background, fleet) as services,
    ):
        yield services


@contextlib.asynccontextmanager
async def open_stores(
    settings: Settings, db_min: int, db_max: int, redis_max: int
) -> AsyncIterator[tuple[asyncpg.Pool, aioredis.Redis]]:
    """The Postgres pool and the Redis client of one process, sized by the caller (from
    config), open for the ``async with`` block and closed in reverse, whatever fails."""
    assert settings.database_url and settings.redis_url, "resolve the database and redis first"
    db = await create_pool(settings.database_url, min_size=db_min, max_size=db_max)
    try:
        # A blocking pool: with every connection busy a caller waits for one (redis-py's
        # default pool raises MaxConnectionsError instead; a connect storm lost presence).
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.redis_url, max_connections=redis_max, timeout=settings.redis_pool_timeout_s
        )
        redis = aioredis.Redis.from_pool(pool)  # owns the pool: closing the client closes it
        try:
            yield db, redis
        finally:
            await redis.aclose()
    finally:
        await db.close()


@contextlib.asynccontextmanager
async def _open_services(
    settings: Settings,
    db: asyncpg.Pool,
    redis: aioredis.Redis,
    transport: ShardTransport | None,
    on_revoked: Callable[[str, str], object] | None,
    background: bool,
    fleet: Fleet | None,
) -> AsyncIterator[Services]:
    """``open_services`` over its open stores (which it closes)."""
    owned: ShardTransport | None = None
    on_ray = transport is None
    if transport is None:
        ray = RayTransport.connect(settings)
        direct = settings.shard_transport == "direct"
        attempts = 1 if settings.failover_ping_s > 0 else ATTEMPTS  # the router sends again
        transport = owned = (
            DirectTransport(ray, settings.shard_call_timeout_s, attempts) if direct else ray
        )
    tasks: list[asyncio.Task[None]] = []
    dispatcher: HookDispatcher | None = None
    providers: dict[str, PaymentProvider] = {}
    presence: Presence | None = None
    media: MediaService | None = None
    push: WebPush | None = None
    transfers: StripeTransfers | None = None
    batches: asyncpg.Pool | None = None
    try:

        async def load() -> Placement:
            table = await placement.load(db)
            if table is None:
                raise RuntimeError("no placement table: run `hyperlocal migrate` and start shards")
            return table

        router = ShardRouter(
            transport,
            load,
            settings.batch_flush_ms / 1000,
            settings.batch_max,
            settings.batch_in_flight,
            settings.failover_poll_s if settings.failover_ping_s > 0 else 0.0,
        )
        await router.refresh()
        geo = Geo(settings.h3_resolution, settings.k_ring)
        presence = Presence(redis, new_id(), settings.presence_ttl_s)
        presence.start()
        access = Access(geo, db)
        ranker = CellRanker(router, settings.recommend_absent_ttl_s)
        providers = providers_from(settings)
        media = MediaService(settings, db, open_blobs(settings))
        market = MarketService(settings, db, router, geo, providers, ranker, media)
        assert settings.database_url
        # the checkout's coalesced statements, planned once per connection (store/db.py)
        batches = await create_pool(
            settings.database_url, min_size=1, max_size=Checkout.COALESCED, generic_plans=True
        )
        checkout = Checkout(market, batches)
        admin = AdminService(db, redis, market)
        moderation = ModerationService(settings, db, router, admin)
        appeals = AppealService(db, redis, admin, moderation)
        disputes = DisputeService(db, redis, market)
        risk = RiskReview(checkout)
        holds = PayoutHolds(db)
        ledger = LedgerService(settings, db)
        if settings.stripe_api_key:
            transfers = StripeTransfers(settings.stripe_api_key, settings.stripe_api_base)
        keys = Keys(settings)
        retry = Backoff(settings.payout_retry_base_s, settings.payout_retry_max_s)
        payouts = Payouts(db, ledger, transfers, PayoutAccounts(db, keys),
                          page=settings.payout_vendor_page, retry=retry)  # fmt: skip
        if fleet is None:
            fleet = LocalFleet(transport) if isinstance(transport, LocalTransport) else NoFleet()
        cluster = ClusterService(settings, db, geo, router, fleet)
        control: Control = (
            RayControl(
                settings.control_actor_name, settings.ray_namespace, settings.control_call_timeout_s
            )
            if on_ray
            else LocalControl(
                ControlHost(
                    admin, moderation, appeals, disputes, risk, holds, cluster, payouts=payouts
                )
            )
        )
        accounts = AuthService(settings, db, redis, keys, on_revoked)
        push = WebPush(settings, db, keys)
        await push.start()
        links = Links(settings, db, keys)
        await links.start()
        await notifications_store.sync_kinds(db, kind_rows())  # the trigger's defaults
        services = Services(
            settings=settings,
            db=db,
            redis=redis,
            geo=geo,
            router=router,
            presence=presence,
            access=access,
            ranker=ranker,
            keys=keys,
            accounts=accounts,
            feed=FeedService(settings, geo, router, ranker, media, db),
            chat=ChatService(settings, db, router, access, presence),
            providers=providers,
            market=market,
            checkout=checkout,
            stripe_events=StripeEvents(checkout),
            provider_events=ProviderEvents(checkout),
            app_tokens=AppTokens(settings, db, keys.jwt),
            vendor_apps=VendorApps(db),
            admin=admin,
            moderation=moderation,
            appeals=appeals,
            disputes=disputes,
            risk=risk,
            holds=holds,
            control=control,
            media=media,
            notifications=NotificationService(
                db,
                redis,
                push,
                lambda: links.key,
                settings.promotion_daily_cap,
                geo,
                settings.promotion_nearby_daily_cap,
            ),
            account_emails=AccountEmails(settings, db, accounts, links),
            notifier=NotifierClient(settings.notifier_actor_name, settings.ray_namespace),
            social=SocialService(settings, db, geo, router, media),
            search=SearchService(settings, db, market),
            cluster=cluster,
            analytics=AnalyticsService(settings, db),
            ledger=ledger,
            payouts=payouts,
        )
        if background:
            dispatcher = HookDispatcher(settings, db, keys)
            loops = services.loops
            tasks.append(asyncio.create_task(dispatcher.run(loops), name="hook-dispatcher"))
            sweeper = Sweeper(market, checkout, risk)
            tasks.append(asyncio.create_task(sweeper.run(loops), name="market-sweeper"))
            tasks.append(asyncio.create_task(media.run_sweeper(loops), name="media-sweeper"))
        yield services
    finally:
        for task in tasks:
            await stop(task)
        if dispatcher is not None:
            await dispatcher.close()
        for provider in providers.values():
            await provider.close()
        if push is not None:
            await push.close()
        if transfers is not None:
            await transfers.close()
        if presence is not None:
            await presence.stop()
        if media is not None:
            await media.close()
        if owned is not None:
            await owned.close()
        if batches is not None:
            await batches.close()


@contextlib.asynccontextmanager
async def open_notifier(
    settings: Settings, failures: LoopFailures | None = None
) -> AsyncIterator[Notifier]:
    """The notifier and only what it needs (Postgres, Redis, the keys, presence to ask who is
    online, Web Push, SMTP, links), open for the ``async with`` block: the notifier actor's
    (cluster/notifier.py), benchmarks'. Its loop is the caller's to run (``Notifier.run``)."""
    sizes = (1, settings.notifier_db_pool_max, settings.notifier_redis_max_connections)
    async with open_stores(settings, *sizes) as (db, redis):
        keys = Keys(settings)
        push = WebPush(settings, db, keys)
        try:
            await push.start()
            links = Links(settings, db, keys)
            await links.start()
            presence = Presence(redis, new_id(), settings.presence_ttl_s)  # asks, never enters
            mailer = Mailer(settings) if settings.smtp_url else None
            # what the trigger may queue: the channels this notifier, their one deliverer, can
            # deliver on (a gateway's settings do not decide where the notifier's SMTP is)
            await notifications_store.sync_channels(db, open_channels(mailer is not None))
            yield Notifier(settings, db, redis, keys, presence, push, mailer, links, failures)
        finally:
            await push.close()
