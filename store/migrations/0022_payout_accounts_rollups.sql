-- Issue 17, the rest: where a vendor's payouts go (docs/payments.md, "Payout account"), and
-- the analytics rollups that keep every dashboard query off rows proportional to orders
-- (docs/analytics.md, "What a query reads").

-- A vendor's payout destination: payout_account (0016) holds a Stripe connected account id;
-- a bank account for manual payouts is payout_bank, the details sealed (AES-GCM, models/
-- sealing.py, context payout:<vendor id>), with payout_bank_hint its masked form
-- ("DE ••••3000") that payout records and the vendor see. At most one of the two is set.
ALTER TABLE vendors ADD COLUMN payout_bank text;
ALTER TABLE vendors ADD COLUMN payout_bank_hint text;
ALTER TABLE vendors ADD COLUMN payout_set_at timestamptz;
ALTER TABLE vendors ADD CONSTRAINT vendors_one_payout_destination
    CHECK (payout_account IS NULL OR payout_bank IS NULL);

-- The repeat-customer rate from one row per customer: each buyer's days split time into spans
-- (prev_day, day]; exactly one of them holds a range's first day, and the buyer is a customer
-- of [from, to] iff that span's day is <= to, a repeat one iff that day has 2+ orders or its
-- next_day is <= to. prev_day / next_day are the buyer's neighbouring days with counted orders
-- of the vendor (NULL: none), kept by the rollup run for every buyer whose days it touched.
CREATE EXTENSION IF NOT EXISTS btree_gist;
ALTER TABLE analytics_buyer_days ADD COLUMN prev_day date;
ALTER TABLE analytics_buyer_days ADD COLUMN next_day date;
UPDATE analytics_buyer_days a SET prev_day = w.prev_day, next_day = w.next_day
  FROM (SELECT vendor_id, buyer_id, day,
               lag(day) OVER (PARTITION BY vendor_id, buyer_id ORDER BY day) AS prev_day,
               lead(day) OVER (PARTITION BY vendor_id, buyer_id ORDER BY day) AS next_day
          FROM analytics_buyer_days) w
 WHERE a.vendor_id = w.vendor_id AND a.buyer_id = w.buyer_id AND a.day = w.day;
CREATE INDEX analytics_buyer_spans ON analytics_buyer_days
    USING gist (vendor_id, daterange(prev_day, day, '(]'));

-- Counted order lines per vendor, month and listing: the top listings of a long range read
-- whole months here and only the partial months' days from analytics_listing_days. Made by the
-- rollup run from analytics_listing_days for every month it touched (replace, never add).
CREATE TABLE analytics_listing_months (
    vendor_id  text NOT NULL,
    month      date NOT NULL,                    -- its first day
    listing_id text NOT NULL,
    currency   text NOT NULL,
    orders     integer NOT NULL,
    units      bigint NOT NULL,
    revenue    bigint NOT NULL,
    PRIMARY KEY (vendor_id, month, listing_id, currency)
);
INSERT INTO analytics_listing_months
SELECT vendor_id, date_trunc('month', day)::date, listing_id, currency, sum(orders), sum(units),
       sum(revenue)
  FROM analytics_listing_days GROUP BY 1, 2, 3, 4;

-- Counted orders per vendor, month, weekday and hour: the heatmap of a long range reads whole
-- months here (168 rows a month at most) and only the partial months' hours from
-- analytics_hourly; the series reads analytics_days (one row per day and currency).
CREATE TABLE analytics_heat_months (
    vendor_id text NOT NULL,
    month     date NOT NULL,
    isodow    smallint NOT NULL,                 -- 1 = Monday
    hour      smallint NOT NULL,                 -- UTC
    orders    integer NOT NULL,
    PRIMARY KEY (vendor_id, month, isodow, hour)
);
INSERT INTO analytics_heat_months
SELECT vendor_id, date_trunc('month', hour AT TIME ZONE 'UTC')::date,
       extract(isodow FROM hour AT TIME ZONE 'UTC'), extract(hour FROM hour AT TIME ZONE 'UTC'),
       sum(orders)
  FROM analytics_hourly GROUP BY 1, 2, 3, 4;

CREATE TABLE analytics_days (
    vendor_id text NOT NULL,
    day       date NOT NULL,
    currency  text NOT NULL,
    orders    integer NOT NULL,
    units     bigint NOT NULL,
    revenue   bigint NOT NULL,
    PRIMARY KEY (vendor_id, day, currency)
);
INSERT INTO analytics_days
SELECT vendor_id, (hour AT TIME ZONE 'UTC')::date, currency, sum(orders), sum(units), sum(revenue)
  FROM analytics_hourly GROUP BY 1, 2, 3;

-- Refunds made at the provider (docs/payments.md, "Refunds made at the provider"): each is
-- mirrored into an order once, its row carrying the provider's refund id. The mirror's keyed
-- commands make it once already; this is the backstop.
CREATE UNIQUE INDEX refunds_external_once ON refunds (order_id, provider_ref)
    WHERE status = 'external' AND provider_ref IS NOT NULL;
