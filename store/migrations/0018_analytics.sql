-- Vendor analytics (docs/analytics.md): rollups of orders and interactions, so a dashboard query
-- reads a few hundred rows of these instead of a vendor's raw orders. Written only by the rollup
-- run (store/analytics_store.py: rollup), which recomputes every (vendor, UTC day) touched since
-- its watermark from the raw rows and replaces that day's rollup rows: re-running it changes
-- nothing. Every time is UTC. Money in minor units; a counted order is one that is paid,
-- accepted, fulfilled or completed (models/analytics.py: COUNTED).

-- Cart adds join the interactions the funnel reads (views and purchases were recorded already).
ALTER TABLE interactions DROP CONSTRAINT interactions_kind_check;
ALTER TABLE interactions ADD CONSTRAINT interactions_kind_check
    CHECK (kind IN ('view', 'like', 'comment', 'purchase', 'checkin', 'cart'));

-- What the rollup run scans for (rows changed since its watermark, a listing's events of a
-- day) and the warehouse export reads by (a table's rows of some days).
CREATE INDEX orders_updated ON orders (updated_at);
CREATE INDEX orders_created ON orders (created_at);
CREATE INDEX interactions_time ON interactions (created_at);
CREATE INDEX interactions_item_time ON interactions (item_id, created_at);

-- Counted orders per vendor, UTC hour and currency: the series and the hour x weekday heatmap.
CREATE TABLE analytics_hourly (
    vendor_id text NOT NULL,
    hour      timestamptz NOT NULL,
    currency  text NOT NULL,
    orders    integer NOT NULL,
    units     bigint NOT NULL,
    revenue   bigint NOT NULL,                   -- order totals less what was refunded
    PRIMARY KEY (vendor_id, hour, currency)
);

-- Counted order lines per vendor, UTC day and listing: the top listings.
CREATE TABLE analytics_listing_days (
    vendor_id  text NOT NULL,
    day        date NOT NULL,
    listing_id text NOT NULL,
    currency   text NOT NULL,
    orders     integer NOT NULL,
    units      bigint NOT NULL,
    revenue    bigint NOT NULL,                  -- qty x unit price of the lines
    PRIMARY KEY (vendor_id, day, listing_id, currency)
);

-- Counted orders per vendor, UTC day and buyer: the repeat-customer rate of any range.
CREATE TABLE analytics_buyer_days (
    vendor_id text NOT NULL,
    day       date NOT NULL,
    buyer_id  text NOT NULL,
    orders    integer NOT NULL,
    PRIMARY KEY (vendor_id, day, buyer_id)
);

-- Listing views and cart adds per vendor and UTC day: the funnel's first two steps.
CREATE TABLE analytics_funnel_days (
    vendor_id text NOT NULL,
    day       date NOT NULL,
    views     integer NOT NULL,
    carts     integer NOT NULL,
    PRIMARY KEY (vendor_id, day)
);

-- The rollup's watermark: the start of the last run that committed. The next run looks at rows
-- changed after it less HL_ANALYTICS_ROLLUP_OVERLAP_S (a transaction that began before the mark
-- may commit after the run read).
CREATE TABLE analytics_watermarks (
    name       text PRIMARY KEY,
    mark       timestamptz NOT NULL,
    runs       bigint NOT NULL DEFAULT 1,
    updated_at timestamptz NOT NULL DEFAULT now()
);
