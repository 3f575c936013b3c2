-- Admins, the money side (docs/admin.md): partial refunds, payout holds, and what a vendor's
-- suspension does to its listings.

-- Several refunds per order (partial refunds), each its own row run at the provider under its
-- own idempotency key; no longer one per order.
ALTER TABLE refunds DROP CONSTRAINT refunds_order_id_key;
CREATE INDEX refunds_order ON refunds (order_id, created_at);

-- What of an order has been refunded (or is owed back): written by the order's owner shard with
-- each refund row. The CHECK is the backstop against a refund of more than was paid.
ALTER TABLE orders ADD COLUMN refunded bigint NOT NULL DEFAULT 0;
UPDATE orders o SET refunded = LEAST(o.total,
    (SELECT coalesce(sum(r.amount), 0) FROM refunds r WHERE r.order_id = o.id));
ALTER TABLE orders ADD CONSTRAINT orders_refunded_check
    CHECK (refunded >= 0 AND refunded <= total);

-- A suspended vendor: set and cleared by the vendor's cell owner shard, with every listing of
-- the vendor flagged in the same transaction (read ops leave flagged listings out; checkout
-- refuses them). Cleared when the suspension ends.
ALTER TABLE vendors ADD COLUMN suspended_at timestamptz;
ALTER TABLE listings ADD COLUMN vendor_suspended boolean NOT NULL DEFAULT false;

-- A hold on a vendor's payouts: of one order (a dispute places one when it opens and releases
-- it when it closes), or of all of them (order_id NULL: an admin's hold). Payouts (issue 17)
-- ask services/payout_holds.py: payout_blocked before paying anything out.
CREATE TABLE payout_holds (
    id           text PRIMARY KEY,
    vendor_id    text NOT NULL REFERENCES vendors(id),
    order_id     text REFERENCES orders(id),
    dispute_id   text REFERENCES disputes(id),
    reason       text NOT NULL,
    actor_id     text REFERENCES users(id),          -- NULL: the system or the operator
    created_at   timestamptz NOT NULL DEFAULT now(),
    released_at  timestamptz,
    released_by  text REFERENCES users(id),
    release_note text
);
-- One open hold per vendor, order and source (a dispute's, or an admin's).
CREATE UNIQUE INDEX payout_holds_one_open
    ON payout_holds (vendor_id, coalesce(order_id, ''), coalesce(dispute_id, ''))
    WHERE released_at IS NULL;
CREATE INDEX payout_holds_vendor ON payout_holds (vendor_id, created_at DESC);
