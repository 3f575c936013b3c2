-- Fraud scoring (issue 14, item 3): a risk score on every checkout, `held` orders whose
-- payment is authorised but not captured until an admin releases them (docs/security.md).

-- What a checkout came with, kept on its group: the risk (score and its signals), who paid
-- with what from where. `card_fp` is a digest of the payment instrument (the sandbox card, the
-- Stripe PaymentMethod), `request_fp` a digest of the whole payment details (a retry of the
-- key with other details is a conflict), `client_addr` / `device` the socket's address and
-- its `X-Device-Id` digest, `buyer_lat` / `buyer_lng` the buyer's located point.
ALTER TABLE order_groups
    ADD COLUMN risk        jsonb,
    ADD COLUMN card_fp     text,
    ADD COLUMN request_fp  text,
    ADD COLUMN client_addr text,
    ADD COLUMN device      text,
    ADD COLUMN buyer_lat   double precision,
    ADD COLUMN buyer_lng   double precision,
    ADD COLUMN review      jsonb,                 -- the admin's decision on a held checkout
    DROP CONSTRAINT order_groups_status_check,
    ADD CONSTRAINT order_groups_status_check
        CHECK (status IN ('open', 'awaiting_payment', 'held', 'completed', 'failed'));

-- The velocity signals read these by time, per key (the checkout's one facts statement).
CREATE INDEX order_groups_buyer_recent ON order_groups (buyer_id, created_at DESC);
CREATE INDEX order_groups_card_recent ON order_groups (card_fp, created_at DESC)
    WHERE card_fp IS NOT NULL;
CREATE INDEX order_groups_addr_recent ON order_groups (client_addr, created_at DESC)
    WHERE client_addr IS NOT NULL;
CREATE INDEX order_groups_device_recent ON order_groups (device, created_at DESC)
    WHERE device IS NOT NULL;

-- An order carries its checkout's risk `{score, reasons}`; `held` waits for review.
ALTER TABLE orders
    ADD COLUMN risk jsonb,
    DROP CONSTRAINT orders_status_check,
    ADD CONSTRAINT orders_status_check CHECK (status IN ('pending_payment', 'held', 'paid',
        'accepted', 'fulfilled', 'completed', 'cancelled', 'refunded'));
CREATE INDEX orders_held ON orders (updated_at, id) WHERE status = 'held';

-- `authorized`: the provider holds the money, nothing is captured (a held checkout).
ALTER TABLE payments
    DROP CONSTRAINT payments_status_check,
    ADD CONSTRAINT payments_status_check CHECK (status IN ('pending', 'requires_action',
        'authorized', 'captured', 'declined', 'cancelled'));
