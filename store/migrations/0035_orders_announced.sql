-- Whether an order's inboxes have heard of it (issue 20, twelfth/thirteenth sessions).
--
-- A checkout reserves its orders unannounced (`announced` false) and puts them on the buyer's
-- and the vendor's inboxes at the payment's outcome (actors/market_ops.py). The owner shard
-- remembers which pending orders are unannounced, but its memory does not survive a restart:
-- kept here, a restarted owner still releases a never-announced order quietly, and announces a
-- waiting one (order.announce) exactly once. Every order before this column was announced when
-- it was made, hence the default. Only a pending order can be unannounced: a step out of
-- pending_payment is an outcome and is always announced.
ALTER TABLE orders ADD COLUMN announced boolean NOT NULL DEFAULT true;
