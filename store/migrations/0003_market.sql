-- Marketplace: vendors, listings (stock), carts, order groups and orders, payments, refunds,
-- Stripe event dedup, vendor OAuth apps, REST hooks and their transactional outbox.
-- Listings and orders live in their vendor's cell and are written only by that cell's owner
-- shard; `CHECK (stock >= 0)` is the backstop against oversell (rule 2).

CREATE TABLE vendors (
    id         text PRIMARY KEY,                 -- cell-scoped id: routes to the vendor's cell
    user_id    text NOT NULL UNIQUE REFERENCES users(id),
    name       text NOT NULL,
    category   text NOT NULL,
    cell       text NOT NULL,
    lat        double precision NOT NULL,
    lng        double precision NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE listings (
    id          text PRIMARY KEY,                -- cell-scoped id (the vendor's cell)
    vendor_id   text NOT NULL REFERENCES vendors(id),
    cell        text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('product', 'service')),
    title       text NOT NULL,
    description text NOT NULL DEFAULT '',
    category    text NOT NULL,
    price       bigint NOT NULL CHECK (price >= 0),        -- minor units (cents)
    currency    text NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
    stock       integer NOT NULL CHECK (stock >= 0),
    images      jsonb NOT NULL DEFAULT '[]',
    active      boolean NOT NULL DEFAULT true,
    lat         double precision NOT NULL,
    lng         double precision NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    search      tsvector GENERATED ALWAYS AS (
        to_tsvector('english', title || ' ' || description || ' ' || category)
    ) STORED
);
CREATE INDEX listings_cell_recent ON listings (cell, created_at DESC, id DESC)
    WHERE deleted_at IS NULL AND active;
CREATE INDEX listings_search ON listings USING gin (search);
CREATE INDEX listings_vendor ON listings (vendor_id, created_at DESC, id DESC);

CREATE TABLE cart_items (
    user_id    text NOT NULL REFERENCES users(id),
    listing_id text NOT NULL REFERENCES listings(id),
    qty        integer NOT NULL CHECK (qty BETWEEN 1 AND 999),
    added_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, listing_id)
);

-- One checkout: the cart snapshot split per vendor, and its final answer (for retries by key).
CREATE TABLE order_groups (
    id         text PRIMARY KEY,
    buyer_id   text NOT NULL REFERENCES users(id),
    idem_key   text NOT NULL,
    status     text NOT NULL CHECK (status IN ('open', 'awaiting_payment', 'completed', 'failed')),
    parts      jsonb NOT NULL,
    amount     bigint NOT NULL CHECK (amount >= 0),
    currency   text NOT NULL,
    result     jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (buyer_id, idem_key)
);

CREATE TABLE orders (
    id             text PRIMARY KEY,             -- cell-scoped id (the vendor's cell)
    group_id       text NOT NULL REFERENCES order_groups(id),
    buyer_id       text NOT NULL REFERENCES users(id),
    vendor_id      text NOT NULL REFERENCES vendors(id),
    vendor_user_id text NOT NULL REFERENCES users(id),
    cell           text NOT NULL,
    status         text NOT NULL CHECK (status IN ('pending_payment', 'paid', 'accepted',
                       'fulfilled', 'completed', 'cancelled', 'refunded')),
    total          bigint NOT NULL CHECK (total >= 0),
    currency       text NOT NULL,
    reserved_until timestamptz,                  -- set while pending_payment
    reason         text,                         -- why cancelled / refunded
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (group_id, vendor_id)
);
CREATE INDEX orders_buyer ON orders (buyer_id, created_at DESC, id DESC);
CREATE INDEX orders_vendor ON orders (vendor_id, created_at DESC, id DESC);
CREATE INDEX orders_group ON orders (group_id);
CREATE INDEX orders_reserved ON orders (reserved_until) WHERE status = 'pending_payment';

CREATE TABLE order_lines (
    order_id   text NOT NULL REFERENCES orders(id),
    listing_id text NOT NULL REFERENCES listings(id),
    title      text NOT NULL,
    qty        integer NOT NULL CHECK (qty > 0),
    unit_price bigint NOT NULL CHECK (unit_price >= 0),
    PRIMARY KEY (order_id, listing_id)
);

CREATE TABLE payments (
    id              text PRIMARY KEY,            -- also the provider idempotency key
    group_id        text NOT NULL UNIQUE REFERENCES order_groups(id),
    provider        text NOT NULL,
    provider_ref    text,                        -- e.g. the Stripe PaymentIntent id
    amount          bigint NOT NULL CHECK (amount >= 0),
    currency        text NOT NULL,
    status          text NOT NULL CHECK (status IN ('pending', 'requires_action', 'captured',
                        'declined', 'cancelled')),
    refunded_amount bigint NOT NULL DEFAULT 0 CHECK (refunded_amount >= 0),
    client_secret   text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX payments_provider_ref ON payments (provider, provider_ref)
    WHERE provider_ref IS NOT NULL;

-- A refund owed for one order: written with the order's move to `refunded`, then executed at
-- the provider (idempotency key = id) and retried by the sweeper until it succeeds.
CREATE TABLE refunds (
    id           text PRIMARY KEY,
    order_id     text NOT NULL UNIQUE REFERENCES orders(id),
    payment_id   text NOT NULL REFERENCES payments(id),
    amount       bigint NOT NULL CHECK (amount >= 0),
    status       text NOT NULL CHECK (status IN ('pending', 'succeeded', 'external')),
    provider_ref text,
    attempts     integer NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refunds_pending ON refunds (updated_at) WHERE status = 'pending';

-- Stripe webhook events already applied (inserted in the same transaction as their effect).
CREATE TABLE stripe_events (
    id          text PRIMARY KEY,
    type        text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

-- OAuth2 client-credentials apps of a vendor; the secret is stored as its sha256 digest.
CREATE TABLE vendor_apps (
    client_id   text PRIMARY KEY,
    vendor_id   text NOT NULL REFERENCES vendors(id),
    secret_hash text NOT NULL,
    name        text NOT NULL,
    scopes      text[] NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX vendor_apps_vendor ON vendor_apps (vendor_id);

-- REST hooks: a vendor's subscriptions and the outbox of deliveries.
CREATE TABLE hooks (
    id              text PRIMARY KEY,
    vendor_id       text NOT NULL REFERENCES vendors(id),
    target_url      text NOT NULL,
    events          text[] NOT NULL,
    secret          text NOT NULL,               -- whsec_<base64>: needed to sign, so kept
    active          boolean NOT NULL DEFAULT true,
    disabled_reason text,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX hooks_vendor ON hooks (vendor_id) WHERE active;

-- The outbox: one row per (event, subscribed hook), inserted in the transaction that made the
-- event. The dispatcher claims due rows (SKIP LOCKED), delivers, and records the outcome.
CREATE TABLE hook_deliveries (
    id           text PRIMARY KEY,               -- the Standard Webhooks `webhook-id`
    hook_id      text NOT NULL REFERENCES hooks(id),
    event_type   text NOT NULL,
    payload      jsonb NOT NULL,
    status       text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'dead', 'gone')),
    attempts     integer NOT NULL DEFAULT 0,
    next_at      timestamptz NOT NULL DEFAULT now(),
    last_status  integer,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz
);
CREATE INDEX hook_deliveries_due ON hook_deliveries (next_at) WHERE status = 'pending';
CREATE INDEX hook_deliveries_hook ON hook_deliveries (hook_id, created_at DESC);
