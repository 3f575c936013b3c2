"""The one settings object.

Every knob of the process lives here, typed, with its unit in its name, read from the environment
(prefix ``HL_``, except the three service URLs which use their conventional names) and validated
at startup. docs/config.md lists them all; keep the two in step.
"""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Validated process configuration. Immutable once loaded."""

    model_config = SettingsConfigDict(
        env_prefix="HL_", frozen=True, extra="ignore", use_attribute_docstrings=True
    )

    # -- where things run -------------------------------------------------------------------
    host: str = "127.0.0.1"
    """Interface the gateway binds to."""
    port: int = Field(8080, ge=0, le=65535)
    """Gateway HTTP/websocket port (0 picks a free one; tests do)."""
    data_dir: Path = Path(".hyperlocal")
    """Embedded Postgres/Redis data and generated secrets live here (gitignored)."""
    database_url: str | None = Field(None, validation_alias=AliasChoices("DATABASE_URL"))
    """Postgres DSN. Unset: start the embedded PostgreSQL under data_dir."""
    embedded_pg_options: str = ""
    """More server options for the embedded PostgreSQL, as ``-c name=value`` pairs (e.g.
    ``-c shared_preload_libraries=pg_stat_statements`` to see what statements cost in a
    benchmark). Durability settings (fsync, synchronous_commit) come first and stay on: a pair
    naming them is refused."""

    @field_validator("embedded_pg_options")
    @classmethod
    def _keep_durability(cls, value: str) -> str:
        if re.search(r"\b(fsync|synchronous_commit|full_page_writes)\s*=", value):
            raise ValueError("fsync, synchronous_commit and full_page_writes stay on")
        return value

    redis_url: str | None = Field(None, validation_alias=AliasChoices("REDIS_URL"))
    """Redis URL. Unset: start the embedded Redis under data_dir."""
    ray_address: str | None = Field(None, validation_alias=AliasChoices("RAY_ADDRESS"))
    """Ray cluster address. Unset: start a local Ray with ray_num_cpus."""
    ray_num_cpus: int = Field(2, ge=1)
    """CPUs a locally started Ray advertises."""
    ray_namespace: str = "hyperlocal"
    """Ray namespace holding the named shard actors; gateways of one deployment share it."""

    gc_freeze: bool = True
    """Once a gateway or shard has started, move every object alive then out of the cyclic
    garbage collector's reach (``gc.freeze``): imports, Ray, the app. A full collection then
    walks only what was made since, and stalls the event loop that much less
    (cluster/gcpolicy.py)."""
    gc_young: int = Field(10_000, ge=100)
    """Allocations (net) between young-generation collections (CPython's default: 700)."""
    gc_full_every: int = Field(100, ge=1)
    """Middle-generation collections between full ones (CPython's default: 10). A full
    collection stops the process's event loop while it walks every tracked object."""

    # -- cells and shards ---------------------------------------------------------------------
    h3_resolution: int = Field(8, ge=0, le=15)
    """H3 resolution of a neighbourhood cell (8 is about 0.74 km2)."""
    k_ring: int = Field(1, ge=0, le=5)
    """A user sees their cell and the cells within this grid distance."""
    shard_count: int = Field(0, ge=0, le=256)
    """Number of CellShard actors a new deployment starts with (it seeds the placement table;
    later, scale with ``hyperlocal scale``). 0 (the default): one per CPU this process may run
    on (its affinity). Every batch costs a shard and Postgres a fixed amount of CPU, so fewer
    shards per core make fuller batches: on one core, one shard took 53-54 % of it at 506 chat
    msgs/s where two took 66-67 %, and 70 % against 86-88 % at 1,139, in alternating runs
    (docs/benchmarks.md, ninth session)."""
    shard_num_cpus: float = Field(0.25, gt=0, le=8)
    """Ray CPU reservation of each shard actor."""
    shard_max_restarts: int = Field(-1, ge=-1)
    """Ray restarts a killed shard this many times (-1: forever)."""
    group_commit_ms: float = Field(8.0, ge=0, le=100)
    """A shard gathers mutations this long (from the oldest one's arrival, less what it waited
    at its gateway) before committing them in one transaction. Every batch costs a fixed amount
    of CPU in each process it crosses, so a longer window means bigger batches and less CPU
    per message, for that much more latency. One shard on one core, chat at 506 / 1,139 msgs/s
    (docs/benchmarks.md, ninth session): 5 ms took 55-57 / 70-74 % of the core at ack p50 8.3 /
    11 ms; 8 ms 48 / 65 % at 11.1 / 14.6 ms (ack p99 25.8 ms at 1,139); 10 ms 45-46 / 59-60 %
    at 13 / 16 ms."""
    group_commit_max: int = Field(256, ge=1, le=10_000)
    """At most this many mutations per transaction."""
    cell_idle_s: float = Field(300.0, gt=0)
    """A cell untouched this long is passivated (its memory dropped)."""
    cell_recent_posts: int = Field(200, ge=10, le=10_000)
    """Newest posts per cell kept in shard memory for feed.get."""
    batch_flush_ms: float = Field(1.0, ge=0, le=100)
    """A command bound for a shard waits this long for others before its Ray call leaves."""
    batch_max: int = Field(256, ge=1, le=10_000)
    """At most this many commands per gateway to shard call."""
    batch_in_flight: int = Field(1, ge=1, le=64)
    """At most this many calls per gateway to one shard at a time; commands arriving while all
    are out gather and leave together when one returns (under load, bigger batches rather than
    more calls: each call costs gateway and shard a fixed amount of CPU)."""
    shard_call_timeout_s: float = Field(10.0, gt=0)
    """A gateway to shard call slower than this answers the client `unavailable`."""
    shard_transport: Literal["direct", "ray"] = "direct"
    """How gateways send commands to shards: ``direct`` over each shard's own TCP channel
    (actors/channel.py; its address comes from Ray, Ray still owns the actors), or ``ray``, a
    Ray actor call per batch (the reference path)."""
    shard_push: bool = True
    """With the direct channel (``shard_transport`` direct): shards push the events they
    commit to every gateway over the channel the gateway already holds to them, instead of
    publishing them to Redis (actors/channel.py, services/channel.py ``PushFeeds``): one hop,
    and no Redis round trip a batch. Every gateway keeps a channel to every shard and receives
    all of their events, dropping those of streams nobody on it follows: right for a few
    gateways per shard; with many gateways, off (Redis sends each only what it follows). Redis
    still carries what gateways and services publish (typing, presence, moderation,
    notifications) and the control channel. Change it on shards and gateways together (safe
    order: gateways on first, shards off first: gateways always listen on Redis too)."""
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    """The event loop of this process's gateway and of the shard actors of a Ray this process
    starts: ``uvloop`` (libuv; less CPU per socket write and wake-up, docs/benchmarks.md) or
    the standard library's ``asyncio`` loop. Shards of a Ray cluster started elsewhere follow
    that cluster's ``RAY_USE_UVLOOP`` (Ray uses uvloop when it is installed)."""
    shard_niceness: int = Field(0, ge=0, le=19)
    """The scheduling niceness of Ray's worker processes (the shard actors) in a Ray this
    process starts, over this process's own. Ray's default is 15 (its workers yield to its
    system processes); on a core shared with the gateway and Postgres that leaves the cells'
    owners a few percent of the CPU whenever the others are busy (docs/benchmarks.md), so 0:
    a shard competes as an equal. A Ray cluster started elsewhere keeps its own setting."""
    shard_lifeline_s: float = Field(0.05, ge=0, le=10)
    """A shard process exits at once when its raylet (its parent) is gone (its node removed,
    the raylet killed) instead of lingering a second or so, so its cells fail over as fast as
    for a killed shard (actors/lifeline.py). It waits on a pidfd of the raylet, which costs
    nothing until then; where the kernel has no pidfds it checks every this many seconds.
    0: off."""
    shard_direct_host: str = "127.0.0.1"
    """Interface a shard's direct channel listens on. On a cluster of several nodes set it to
    0.0.0.0 (the shard then gives gateways its node's address); connections must present the
    shard's secret, handed out by Ray."""

    # -- cluster ops (issue 13, docs/operations.md) ---------------------------------------------
    load_tau_s: float = Field(10.0, gt=0, le=600)
    """Time constant of the per-cell command rates shards measure (calls_per_s, hot cells):
    a rate follows a change of load within a few of these."""
    hot_cells: int = Field(10, ge=1, le=1000)
    """How many of its busiest cells each shard reports in the cluster view and /metrics."""
    scale_drain_s: float = Field(2.0, ge=0, le=300)
    """Scale-in: after a shard's cells have moved and its last batch committed, it keeps
    answering `moved` this long before it is stopped (gateways' calls in flight re-route)."""
    shard_start_timeout_s: float = Field(60.0, gt=0)
    """Scale-out waits this long for a new shard actor to serve before giving up."""
    cluster_view_cache_s: float = Field(5.0, ge=0, le=300)
    """A gateway's /metrics reuses the shards' stats this long (a scrape is not a round of
    calls to every shard)."""
    rebalance_interval_s: float = Field(0.0, ge=0)
    """Every this many seconds the control actor moves the hottest cell off an overloaded
    shard (0: the rebalancer is off)."""
    rebalance_ratio: float = Field(2.0, gt=1)
    """A shard is overloaded when its calls/s exceed this many times the mean of the others."""
    rebalance_min_per_s: float = Field(50.0, ge=0)
    """...and at least this many calls/s (a nearly idle cluster is never rebalanced)."""
    # failover (issue 13, docs/operations.md "Node failure")
    failover_ping_s: float = Field(0.2, ge=0, le=60)
    """The control actor pings every shard of the table this often over its direct channel; a
    shard that refuses or resets the connection, or misses ``failover_misses`` pings in a row,
    is failed over: one table change gives its keys to the others (0: failover is off, cells
    wait for Ray to restart the shard)."""
    failover_timeout_s: float = Field(1.0, gt=0, le=60)
    """A ping not answered within this is a miss (a slow shard is not a dead one)."""
    failover_misses: int = Field(3, ge=1, le=100)
    """Missed pings in a row that fail a shard over (a refused or reset connection: at once)."""
    failover_rejoin_s: float = Field(10.0, ge=0, le=3600)
    """A failed-over shard that has answered every ping this long (Ray restarted it) gets its
    hashed keys back by a table change (0: it stays empty until `hyperlocal scale`)."""
    failover_poll_s: float = Field(0.1, gt=0, le=10)
    """A gateway call to a shard that broke or timed out reloads the placement table this
    often while it waits, and goes to the new owner as soon as the table moves."""

    # -- streams ------------------------------------------------------------------------------
    recovery_max_events: int = Field(1000, ge=1)
    """A subscribe with `since` replays at most this many missed events, else recovered=false."""

    redis_max_connections: int = Field(64, ge=2, le=10_000)
    """Connections a gateway opens to Redis at most. When all are busy a caller waits for one
    (up to ``redis_pool_timeout_s``) instead of failing: a connect storm of a thousand sockets
    entering presence at once queues, it does not lose entries."""
    redis_pool_timeout_s: float = Field(10.0, gt=0, le=300)
    """How long a Redis call waits for a free connection before it fails (and is logged)."""
    db_pool_min: int = Field(2, ge=1, le=100)
    """Postgres connections a process of the services (a gateway, the control actor) keeps
    open at least."""
    db_pool_max: int = Field(20, ge=1, le=1000)
    """Postgres connections such a process opens at most (a caller waits for a free one); it
    opens up to 4 more for the checkout's coalesced statements, on a pool of generic plans
    (store/db.py)."""
    presence_ttl_s: float = Field(30.0, ge=3, le=3600)
    """A gateway refreshes its presence entries every third of this (in ten rounds, a tenth of
    its streams each, so no round holds its event loop for all of them); a dead gateway's
    users vanish from presence after it."""

    # -- sockets and limits -------------------------------------------------------------------
    public_url: str | None = Field(None, pattern=r"^https?://[^/\s]+/?$")
    """The deployment's public origin (``https://example.com``): browsers' websockets from it
    are accepted, and an https one turns on HSTS. Unset: a development gateway, which accepts
    loopback origins only (``http://localhost:<any port>``, ``127.0.0.1``, ``[::1]``)."""
    allowed_origins: Annotated[tuple[str, ...], NoDecode] = ()
    """Further origins a browser websocket may come from (comma-separated), besides
    ``public_url``. The Host header is never trusted for it (DNS rebinding)."""
    max_frame_bytes: int = Field(64 * 1024, ge=1024)
    """Largest websocket frame accepted; larger closes the socket with 1009."""
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    """Largest REST request body accepted (413 too_large above)."""
    max_text_chars: int = Field(5000, ge=1)
    """Longest post, comment or message text."""
    outbound_queue_max: int = Field(1024, ge=8)
    """Frames queued for one socket; overflow closes it (4100, reconnect and recover)."""
    heartbeat_s: float = Field(20.0, gt=0)
    """Websocket ping interval; a peer silent for two intervals is dropped."""
    ws_rate_per_s: float = Field(20.0, gt=0)
    """Sustained requests per second per socket."""
    ws_rate_burst: int = Field(60, ge=1)
    """Burst size of the per-socket token bucket."""
    rest_rate_per_min: int = Field(120, ge=1)
    """REST requests per minute per client address (auth endpoints too: their guessing is
    bounded by the sign-in throttle below, per account and per address)."""
    login_window_s: float = Field(900.0, ge=10, le=86400)
    """Failed sign-ins are counted over this sliding window, per account and per address."""
    login_free_failures_account: int = Field(5, ge=1, le=1000)
    """Failed sign-ins of one account (an unknown email counts alike) before each further
    one doubles the wait (1, 2, 4, ... s); while waiting every attempt is 429 rate_limited."""
    login_free_failures_address: int = Field(50, ge=1, le=100_000)
    """Failed sign-ins from one client address before the same doubling wait applies to that
    address (a throttled address cannot sign up either)."""
    login_backoff_max_s: float = Field(900.0, ge=1, le=86400)
    """Longest wait the sign-in throttle imposes."""
    login_needs_verified_email: bool = False
    """Password sign-in only once the address is verified (its emailed link followed; a
    password reset verifies too); before, the right password is answered as a wrong one.
    Closes the last way to tell a taken email (docs/security.md); needs HL_SMTP_URL."""
    trusted_proxy_hops: int = Field(0, ge=0, le=10)
    """Load balancers in front of the gateway that append to X-Forwarded-For; the client
    address for rate limits is taken that many entries from the right. 0: the TCP peer."""

    # -- auth ---------------------------------------------------------------------------------
    jwt_secret: str | None = None
    """HS256 signing key (>= 32 bytes). Unset: the key ring kept in data_dir/jwt_keys.json
    (generated on first use, rotated by `hyperlocal keys rotate-jwt`)."""
    jwt_previous_secrets: Annotated[tuple[str, ...], NoDecode] = ()
    """Former HL_JWT_SECRET values (comma-separated) that still verify tokens until they
    expire: rotate by moving the old secret here and setting a new HL_JWT_SECRET."""
    data_key: str | None = None
    """Data key sealing secrets at rest (TOTP seeds, hook signing secrets) with AES-256-GCM:
    32 bytes, base64. Unset: the ring kept in data_dir/data_keys.json (generated on first use,
    rotated by `hyperlocal keys rotate-data`)."""
    data_previous_keys: Annotated[tuple[str, ...], NoDecode] = ()
    """Former HL_DATA_KEY values (comma-separated) that still open what they sealed; after
    `hyperlocal keys reseal` nothing needs them."""
    jwt_issuer: str = "hyperlocal"
    """`iss` of access tokens; tokens with another issuer are refused."""
    jwt_audience: str = "hyperlocal-api"
    """`aud` of access tokens; tokens for another audience are refused."""
    access_ttl_s: int = Field(900, ge=30)
    """Lifetime of an access token."""
    refresh_ttl_s: int = Field(30 * 86400, ge=60)
    """Lifetime of a refresh token family."""
    ws_ticket_ttl_s: int = Field(30, ge=1, le=600)
    """A websocket ticket must be used within this time, once."""
    argon2_time_cost: int = Field(3, ge=1, le=20)
    """argon2id passes (RFC 9106 second recommended option: 3 passes, 64 MiB, 4 lanes)."""
    argon2_memory_kib: int = Field(64 * 1024, ge=8 * 1024)
    """argon2id memory per hash, in KiB."""
    argon2_parallelism: int = Field(4, ge=1, le=16)
    """argon2id lanes."""
    hash_concurrency: int = Field(2, ge=1, le=64)
    """Password hashes computed at once (each holds argon2_memory_kib); more wait their turn."""

    # -- marketplace (issue 4) ------------------------------------------------------------------
    reservation_ttl_s: float = Field(900.0, gt=0, le=86400)
    """Checkout holds stock this long for an unpaid order; then the reservation is released."""
    checkout_max_in_flight: int = Field(64, ge=0, le=100_000)
    """Checkouts one gateway runs at once; one more is answered ``unavailable`` (retry after 1
    s, with the same key) before it does anything, instead of queueing behind the others until
    every buyer waits seconds (a flash sale past what the cluster takes). 0: no limit."""
    checkout_lines_ttl_s: float = Field(60.0, ge=0, le=3600)
    """A gateway keeps what a buy-now's line takes of a listing (vendor, title, price,
    currency, category; never the stock) this long after reading it; the owning shard checks
    price, currency and on sale at the reservation, and a refusal makes the gateway read the
    listing afresh (docs/marketplace.md "Checkout"). 0: every buy-now reads its lines."""
    checkout_scarce_s: float = Field(10.0, ge=0, le=3600)
    """A listing a reservation found out of stock is *scarce* at this gateway this long: a
    checkout with a scarce line first asks that listing's owner whether it can be taken (a
    read; no: ``out_of_stock`` with nothing written), and reserves the parts holding one before
    the others, so a sold-out line refuses the checkout before any other shard reserved (and
    then released) its part. The owning shard still decides every line
    (docs/marketplace.md "Sold out first"). 0: no probe, every part reserved at once."""
    market_sweep_s: float = Field(5.0, gt=0, le=3600)
    """How often a gateway releases expired reservations and retries pending refunds."""
    listing_update_ms: float = Field(250.0, ge=0, le=60_000)
    """Stock moved by sales and releases reaches followers as at most one ``listing.updated``
    per listing per this many milliseconds, carrying the latest state (a flash sale moves a
    hot listing's stock hundreds of times a second). 0: one event per change. A vendor's own
    changes (create, edit, stock set, delete) always go out at once."""
    low_stock_threshold: int = Field(3, ge=0)
    """A listing whose stock falls to this or below fires the `listing.low_stock` hook."""
    sandbox_payments: bool = False
    """Offer the `sandbox` payment provider (test cards, no keys, every order "paid" for
    nothing). Off unless asked for: `make run` and the tests turn it on; a deployment without
    it refuses sandbox payments."""
    stripe_api_key: str | None = None
    """Stripe secret key; unset: the `stripe` provider is not offered."""
    stripe_webhook_secret: str | None = None
    """Signing secret (whsec_...) of POST /api/v1/payments/stripe/webhook."""
    stripe_api_base: str | None = None
    """Stripe API base URL override (tests point it at a local stand-in); unset: Stripe's own."""
    # PayPal and UPI (issue 17; docs/payments.md "PayPal", "UPI"). Secrets come from the
    # environment like Stripe's and are never stored or logged.
    paypal_client_id: str | None = None
    """PayPal REST app client id; unset (or no secret): the `paypal` provider is not offered."""
    paypal_client_secret: str | None = None
    """PayPal REST app secret, paired with paypal_client_id."""
    paypal_api_base: str = Field("https://api-m.paypal.com", pattern=r"^https?://[^\s]+$")
    """PayPal API base URL (https://api-m.sandbox.paypal.com for PayPal's sandbox; tests point
    it at a local stand-in)."""
    paypal_webhook_id: str | None = None
    """Id of our webhook at PayPal (what PayPal signs into each delivery to
    POST /api/v1/payments/paypal/webhook); unset: that endpoint answers not_found."""
    paypal_cert_hosts: Annotated[tuple[str, ...], NoDecode] = (
        "api.paypal.com", "api-m.paypal.com", "api.sandbox.paypal.com",
        "api-m.sandbox.paypal.com",
    )  # fmt: skip
    """Hosts a webhook's PAYPAL-CERT-URL may name (comma-separated), fetched over https only
    (plain http from a listed loopback host: the tests' stand-in)."""
    paypal_return_url: str | None = Field(None, pattern=r"^https?://[^\s]+$")
    """Where PayPal sends the buyer after approving (the client then calls POST
    /api/v1/payments/paypal/return). Unset: public_url (or http://localhost:8080) +
    /?paypal=return."""
    paypal_timeout_s: float = Field(15.0, gt=0, le=120)
    """A PayPal API call not answered within this is unavailable (retried with the same
    PayPal-Request-Id)."""
    upi_key_id: str | None = None
    """Razorpay key id for UPI; unset (or no secret): the `upi` provider is not offered."""
    upi_key_secret: str | None = None
    """Razorpay key secret, paired with upi_key_id."""
    upi_api_base: str = Field("https://api.razorpay.com", pattern=r"^https?://[^\s]+$")
    """Razorpay API base URL (tests point it at a local stand-in)."""
    upi_webhook_secret: str | None = None
    """Razorpay webhook secret (X-Razorpay-Signature of POST /api/v1/payments/upi/webhook);
    unset: that endpoint answers not_found."""
    upi_payee_vpa: str = Field(
        "merchant@razorpay", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]+@[A-Za-z][A-Za-z0-9]+$"
    )
    """The payee address (pa) of UPI intent URIs and QR codes: our merchant VPA at the PSP."""
    upi_payee_name: str = Field("Hyperlocal", min_length=1, max_length=50)
    """The payee name (pn) of UPI intent URIs."""
    upi_timeout_s: float = Field(15.0, gt=0, le=120)
    """A Razorpay API call not answered within this is unavailable (a retry finds the order
    by its receipt)."""
    app_token_ttl_s: int = Field(3600, ge=60, le=86400)
    """Lifetime of an OAuth2 client-credentials access token of a vendor app."""
    hooks_allow_private: bool = Field(
        False, validation_alias=AliasChoices("HOOKS_ALLOW_PRIVATE", "hooks_allow_private")
    )
    """Allow hook target URLs on loopback/private/link-local addresses (tests do; never prod)."""
    hook_timeout_s: float = Field(10.0, gt=0, le=60)
    """A hook delivery not answered within this time counts as a failed attempt."""
    hook_retry_base_s: float = Field(10.0, gt=0)
    """First retry of a failed delivery after about this long; doubling each time (jittered)."""
    hook_retry_max_s: float = Field(3600.0, gt=0)
    """Longest wait between two delivery attempts."""
    hook_max_attempts: int = Field(8, ge=1, le=50)
    """After this many failed attempts a delivery is dead-lettered (replayable)."""
    hook_poll_s: float = Field(1.0, gt=0, le=60)
    """How often the dispatcher looks for due deliveries when idle."""

    # -- fraud scoring (issue 14, docs/security.md) ---------------------------------------------
    risk_hold_score: int = Field(60, ge=1, le=101)
    """A checkout whose risk score (0-100, models/risk.py) reaches this is held for review:
    its payment authorised, not captured, its orders `held` in GET /api/v1/admin/risk/orders
    (101: never held; scores are still recorded)."""
    risk_hold_s: float = Field(259_200.0, gt=0, le=518_400)
    """A held checkout not reviewed within this time is rejected by the sweeper (its
    authorisation voided, its stock back): card authorisations lapse (Stripe's after 7 days)."""

    # -- the ledger and payouts (issue 17, docs/payments.md) -----------------------------------
    commission_bps: int = Field(1000, ge=0, le=10_000)
    """The platform's commission on an order line, in basis points (1000: 10 %), for a listing
    category not in commission_bps_by_category. Computed at checkout, posted at capture."""
    commission_bps_by_category: dict[str, int] = {}
    """Commission per listing category (lower case), in basis points, as JSON:
    ``HL_COMMISSION_BPS_BY_CATEGORY='{"bread": 500, "services": 1500}'``."""
    balance_hold_s: float = Field(604_800.0, ge=0, le=90 * 86400)
    """An order's money stays pending this long after fulfilment (the buyer's time to open a
    dispute), then a sweep makes it available for payout."""
    ledger_sweep_s: float = Field(60.0, gt=0, le=86_400)
    """How often the control actor releases pending balances whose hold period has passed."""
    payout_interval_s: float = Field(86_400.0, ge=0)
    """A payout batch every this many seconds, run by the control actor (0: only on demand,
    ``POST /api/v1/admin/payouts/run``)."""
    payout_vendor_page: int = Field(500, ge=1, le=100_000)
    """A payout batch reads the vendors with an available balance this many at a time (in
    vendor id order, page after page, until every one was seen)."""
    payout_retry_base_s: float = Field(60.0, gt=0, le=86_400)
    """A Stripe transfer the provider could not take (unavailable) is sent again by the
    control actor's money loop after about this long, doubling each attempt."""
    payout_retry_max_s: float = Field(3600.0, gt=0, le=86_400)
    """The longest wait between two attempts of a transfer (it stays pending until sent)."""

    @field_validator("commission_bps_by_category")
    @classmethod
    def _rates(cls, value: dict[str, int]) -> dict[str, int]:
        bad = {k: v for k, v in value.items() if not 0 <= v <= 10_000 or k != k.lower()}
        if bad:
            raise ValueError(f"each rate 0-10000 basis points, categories in lower case: {bad}")
        return value

    # -- notifications (docs/notifications.md) -------------------------------------------------
    smtp_url: str | None = Field(None, pattern=r"^smtps?://")
    """SMTP server of notification and account emails: ``smtp://[user:pass@]host[:port]``
    (``?starttls=1`` to upgrade), ``smtps://`` for TLS from the start. Unset: no email is
    sent (the notification trigger queues none, migration 0034; one queued otherwise, a
    digest, is settled ``skipped``, "no SMTP server configured")."""
    smtp_from: str = "Hyperlocal <no-reply@hyperlocal.invalid>"
    """From address of every email."""
    smtp_timeout_s: float = Field(15.0, gt=0, le=120)
    """An SMTP exchange not finished by then is a failed (retried) attempt."""
    push_timeout_s: float = Field(10.0, gt=0, le=60)
    """A push service not answering by then is a failed (retried) attempt."""
    push_allow_private: bool = False
    """Allow push endpoints on loopback/private addresses (the tests' stand-in; never prod)."""
    vapid_subject: str = Field("mailto:ops@hyperlocal.invalid", pattern=r"^(mailto:|https://)")
    """The VAPID ``sub`` claim: how a push service reaches the operator."""
    notify_poll_s: float = Field(30.0, gt=0, le=600)
    """The notifier's safety-net look for due deliveries: it is woken by Postgres (LISTEN
    ``hl_outbox``) when one is queued and by its own timer when a retry it set is due; this
    poll finds what those miss (a lease another gateway left, a lost LISTEN connection)."""
    notify_gather_ms: float = Field(500.0, ge=0, le=10_000)
    """Woken by a queued delivery, the notifier waits this long before claiming, so a burst
    of inbox events is claimed and settled as one batch (two commits) rather than one each."""
    notify_retry_base_s: float = Field(30.0, gt=0)
    """First retry of a failed email or push after about this long, doubling (jittered)."""
    notify_retry_max_s: float = Field(3600.0, gt=0)
    """Longest wait between two attempts of one delivery."""
    notify_max_attempts: int = Field(8, ge=1, le=50)
    """After this many failed attempts a delivery is dead-lettered."""
    notify_rate_per_hour: int = Field(30, ge=1)
    """Emails (and, separately, pushes) one user is sent per clock hour at most; the rest are
    skipped (still in the notification centre). Account emails do not count."""
    notify_keep_days: int = Field(30, ge=1)
    """Finished deliveries are purged after this many days (notifications stay)."""
    account_token_ttl_s: int = Field(3600, ge=300, le=7 * 86400)
    """Lifetime of a password-reset or email-verification link."""
    promotion_daily_cap: int = Field(3, ge=0)
    """Promotions one vendor may send per day (UTC)."""
    promotion_nearby_daily_cap: int = Field(3, ge=0)
    """Promotions one user is sent per day (UTC) by nearby vendors they do not follow (their
    ``nearby`` setting); followers' promotions count only against the vendor's cap."""
    notify_digest_period_s: float = Field(86400.0, ge=1)
    """A user on ``digest: "daily"`` gets at most one digest email this often (what is unread
    and new since the last one; nothing new, no email)."""
    notify_digest_check_s: float = Field(60.0, gt=0)
    """How often the notifier looks for users whose digest is due."""
    notify_rate_per_s: float = Field(100.0, ge=0, le=100_000)
    """Sends (one email, one push to one device) the notifier makes per second at most: a
    token bucket holding a tenth of a second's worth, so a burst of deliveries is spread out
    rather than taking a core from the sockets beside it. 0: no limit."""
    notifier_actor_name: str = "hl-notifier"
    """Name of the detached notifier actor in ray_namespace (cluster/notifier.py)."""
    notifier_num_cpus: float = Field(0.25, ge=0, le=8)
    """Ray CPU reservation of the notifier actor."""
    notifier_db_pool_max: int = Field(10, ge=1, le=1000)
    """Postgres connections the notifier actor opens at most (it keeps one open at least)."""
    notifier_redis_max_connections: int = Field(20, ge=2, le=10_000)
    """Redis connections the notifier actor opens at most (a caller waits for a free one)."""
    notifier_niceness: int = Field(10, ge=0, le=19)
    """The notifier actor's process runs at this niceness over the process that starts it
    (``hyperlocal up``), every thread of it: on a core shared with the gateway, the shards and
    Postgres, the sockets win and delivery waits (it is on nobody's hot path). It can only
    raise its own niceness (lowering needs privileges)."""

    # -- admins (the control actor, docs/admin.md) ----------------------------------------------
    control_actor_name: str = "hl-control"
    """Name of the detached control actor in ray_namespace (admin REST and the CLI call it)."""
    control_call_timeout_s: float = Field(15.0, gt=0)
    """A call to the control actor that has not answered by then is ``unavailable``."""
    admin_sweep_s: float = Field(30.0, gt=0)
    """How often the control actor lifts suspensions whose ``until`` has passed."""
    report_hide_threshold: int = Field(3, ge=0)
    """Distinct reporters with an open report that hide a piece of content pending review
    (0: never hidden automatically)."""
    report_max_per_hour: int = Field(20, ge=1)
    """Reports one user may file per hour (more: ``rate_limited``)."""

    # -- recommendation -----------------------------------------------------------------------
    recommend_retrain_s: float = Field(900.0, ge=0)
    """Scheduled retrain period: `hyperlocal up` retrains in the background this often (from
    startup on), as does `hyperlocal recommend train --loop` (0: only on demand)."""
    recommend_retrain_idle_s: float = Field(60.0, gt=0)
    """After a scheduled run that stored no model (a fresh deployment, too little activity
    yet), the next run comes this soon instead of after recommend_retrain_s."""
    recommend_history_days: float = Field(30.0, gt=0)
    """Interactions younger than this train the rankers and feed their features."""
    recommend_max_events: int = Field(200_000, ge=100)
    """At most this many newest interactions per training scope or scored neighbourhood."""
    recommend_cell_min_events: int = Field(200, ge=2)
    """A cell (or parent cell) with this many interactions gets its own model."""
    recommend_parent_levels: int = Field(2, ge=0, le=8)
    """Parent cells (coarser resolutions) tried before the global model."""
    recommend_train_num_cpus: float = Field(0.5, gt=0, le=64)
    """Ray CPU reservation of each training task."""
    recommend_keep_versions: int = Field(3, ge=1)
    """Model versions kept per scope; older ones are deleted after a training run."""
    recommend_absent_ttl_s: float = Field(30.0, ge=0)
    """A gateway that found no model for a cell serves its feed newest-first and its listings
    by distance without asking again for this long (a new model is picked up within it)."""
    recommend_candidates: int = Field(200, ge=10, le=1000)
    """sort=relevance ranks this many candidates: the neighbourhood's newest posts (feed.get),
    its nearest matching listings (listings.nearby)."""
    recommend_context_ttl_s: float = Field(5.0, ge=0)
    """A shard reuses a neighbourhood's interaction snapshot this long before reloading it."""
    recommend_thread_min: int = Field(50, ge=0)
    """Batches of at least this many candidates are scored in a thread, off the shard's loop."""
    recommend_view_dedupe_s: float = Field(600.0, ge=0)
    """A buyer's repeated listing.get of one listing records one view per this many seconds."""

    # -- photo uploads (issue 16, docs/media.md) ------------------------------------------------
    media_backend: Literal["local", "s3"] = "local"
    """Where photo variants are kept: ``local`` (files under media_dir) or ``s3`` (a bucket of
    any S3-compatible object store)."""
    media_dir: Path | None = None
    """Folder of the local backend. Unset: data_dir/media."""
    media_s3_bucket: str | None = None
    """Bucket of the s3 backend (required with it; it must exist)."""
    media_s3_prefix: str = Field("media/", max_length=200)
    """Key prefix of every object in the bucket."""
    media_s3_endpoint_url: str | None = None
    """S3 endpoint (MinIO, R2, a local server). Unset: AWS's own for media_s3_region."""
    media_s3_region: str = "us-east-1"
    """Region the s3 backend signs requests for."""
    media_s3_access_key_id: str | None = None
    """Access key of the s3 backend. Unset: boto3's usual chain (AWS_* variables, profile,
    instance role)."""
    media_s3_secret_access_key: str | None = None
    """Secret key paired with media_s3_access_key_id."""
    media_base_url: str | None = Field(None, pattern=r"^https?://[^\s]+[^/\s]$")
    """Origin (and path) the media URLs handed to clients start with, e.g. a CDN fronting
    GET /media/ (``https://cdn.example.com``). Unset: public_url, else relative ``/media/...``."""
    media_max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1024, le=200 * 1024 * 1024)
    """Largest upload accepted (the whole multipart body); larger answers 413 ``too_large``
    without reading the rest."""
    media_max_pixels: int = Field(40_000_000, ge=10_000, le=500_000_000)
    """Decompression-bomb guard: an image whose header declares more pixels is refused
    (``too_many_pixels``) before any is decoded."""
    media_max_side_px: int = Field(12_000, ge=256, le=65_535)
    """Longest side an uploaded image may have, in pixels."""
    media_webp_quality: int = Field(80, ge=1, le=100)
    """WebP quality of the 256 and 1024 px variants."""
    media_workers: int = Field(2, ge=1, le=64)
    """Worker processes decoding and resizing uploads (off the event loop, rule 6); more
    uploads at once wait their turn."""
    media_worker_memory_mb: int = Field(1024, ge=0)
    """Address space a decoding worker may add once started (0: no cap): a bomb the pixel
    checks missed fails with MemoryError in the worker (``too_many_pixels``), not the gateway."""
    media_pending_ttl_s: float = Field(86_400.0, gt=0)
    """An upload no post, listing or profile uses within this long is deleted by the sweeper."""
    media_sweep_s: float = Field(60.0, gt=0, le=86_400)
    """How often a gateway deletes expired uploads and the variants nothing references (and
    looks at the next 200 used photos for ones nothing shows any more)."""
    media_release_grace_s: float = Field(7 * 86_400.0, ge=0)
    """A photo whose post, listing or avatar is gone (deleted, removed by a moderator) is
    private at once and deleted this long after a sweep finds it unused (a restore within
    it brings it back)."""
    media_public_max_age_s: int = Field(86_400, ge=0, le=31_536_000)
    """Cache-Control max-age of a shown photo: how long a browser or CDN may keep serving one
    deleted since (purge the CDN to end it sooner)."""

    # -- social: search and GraphQL (issue 16; docs/social.md, docs/graphql.md) ----------------
    search_max_limit: int = Field(50, ge=1, le=200)
    """Most results one search page returns."""
    search_max_offset: int = Field(500, ge=0, le=10_000)
    """Search pages end after this many results (deeper pages are bad_request)."""
    search_candidates: int = Field(1000, ge=10, le=100_000)
    """Each search match path (full text, trigram) reads at most this many matching rows
    before ranking: a query's work is bounded however common its words (a word matching more
    rows ranks this many of them, in index order)."""
    search_timeout_s: float = Field(2.0, gt=0)
    """A search query slower than this is cancelled and answered unavailable."""
    search_distance_scale_km: float = Field(2.0, gt=0)
    """Given a point, a match's relevance is divided by 1 + distance / this: at this
    distance a match needs twice the text relevance of one right here."""
    graphql_max_depth: int = Field(8, ge=2, le=32)
    """Deepest selection a GraphQL query may nest (introspection fields not counted)."""
    graphql_max_cost: int = Field(2000, ge=10)
    """Most a GraphQL query may cost: every field 1, a list's fields times the page size asked
    (or its default); more is bad_request before anything runs."""
    graphql_max_query_chars: int = Field(20_000, ge=100)
    """Longest GraphQL query document accepted (too_large)."""

    # -- vendor analytics and the warehouse export (issue 17; docs/analytics.md) ---------------
    analytics_rollup_interval_s: float = Field(60.0, ge=0)
    """`hyperlocal up` runs the incremental analytics rollup as a Ray task this often (the
    dashboards' figures are at most about this old; 0: only `hyperlocal analytics rollup`)."""
    analytics_rollup_overlap_s: float = Field(300.0, ge=0, le=86_400)
    """A rollup run also rereads rows changed this long before the last run's start: a write
    whose transaction began before it but committed after it read is still counted (re-reading
    is free: a run replaces whole days). Longer than the longest write transaction."""
    analytics_max_days: int = Field(366, ge=1, le=3660)
    """Widest from..to range of one analytics query or export, in days."""
    analytics_top_listings: int = Field(10, ge=1, le=100)
    """Listings in an analytics answer's top_listings."""
    analytics_export_chunk_rows: int = Field(5000, ge=100, le=1_000_000)
    """An export reads and writes this many order lines at a time (a Parquet row group each)."""
    warehouse_days_per_task: int = Field(7, ge=1, le=366)
    """Days of one table one task of the warehouse export's Ray Data job reads from Postgres."""

    @field_validator("jwt_previous_secrets", "data_previous_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(k.strip() for k in value.split(",") if k.strip())
        return value

    @field_validator("paypal_cert_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(h.strip().lower() for h in value.split(",") if h.strip())
        return value

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(o.strip().rstrip("/").lower() for o in value.split(",") if o.strip())
        return value

    @model_validator(mode="after")
    def _check_secret(self) -> Settings:
        for secret in (self.jwt_secret, *self.jwt_previous_secrets):
            if secret is not None and len(secret.encode()) < 32:
                raise ValueError("HL_JWT_SECRET (and previous ones) must be at least 32 bytes")
        for key in (self.data_key, *self.data_previous_keys):
            if key is not None and len(_b64_or_empty(key)) != 32:
                raise ValueError("HL_DATA_KEY (and previous ones) must be 32 bytes, base64")
        return self

    @field_validator("shard_count")
    @classmethod
    def _resolve_shard_count(cls, value: int) -> int:
        return value or min(max(len(os.sched_getaffinity(0)), 1), 256)

    @model_validator(mode="after")
    def _check_media(self) -> Settings:
        if self.media_backend == "s3" and not self.media_s3_bucket:
            raise ValueError("HL_MEDIA_BACKEND=s3 needs HL_MEDIA_S3_BUCKET")
        if self.login_needs_verified_email and not self.smtp_url:
            raise ValueError("HL_LOGIN_NEEDS_VERIFIED_EMAIL=1 needs HL_SMTP_URL (the links)")
        return self

    @model_validator(mode="after")
    def _check_pools(self) -> Settings:
        if self.db_pool_min > self.db_pool_max:
            raise ValueError(
                f"HL_DB_POOL_MIN={self.db_pool_min} is above HL_DB_POOL_MAX={self.db_pool_max}"
            )
        return self

    @property
    def push_fanout(self) -> bool:
        """Shards push committed events to gateways on the direct channel (``shard_push``)."""
        return self.shard_push and self.shard_transport == "direct"

    def shard_names(self) -> tuple[str, ...]:
        """Names of this deployment's shard actors."""
        return tuple(f"shard-{i}" for i in range(self.shard_count))


def _b64_or_empty(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error is one
        return b""


def env_name(field: str) -> str:
    """The environment variable that sets ``field``."""
    info = Settings.model_fields[field]
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"HL_{field.upper()}"


def config_markdown() -> str:
    """The table of every knob (docs/config.md is this output; a test keeps them in step)."""
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, info in Settings.model_fields.items():
        default = "" if info.default is None else str(info.default)
        if name == "allowed_origins":
            default = "(none)"
        meaning = " ".join((info.description or "").split()).replace("|", "\\|")
        lines.append(f"| `{env_name(name)}` | `{default}` | {meaning} |")
    return "\n".join(lines) + "\n"


def load_settings(**overrides: object) -> Settings:
    """Read the environment, apply explicit overrides (CLI flags, tests) and validate."""
    return Settings(**overrides)  # type: ignore[arg-type]
