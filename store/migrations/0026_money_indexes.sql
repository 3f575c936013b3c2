-- The money code's correctness pass (docs/payments.md).
--
-- 1. A payout batch pages through every vendor with an available balance in vendor id order
--    (store/ledger_store.py ``vendors_with_available``: keyset on owner, a page at a time):
--    this partial index serves each page in order, an index-only scan that stops at the
--    page's end, instead of aggregating the whole entries table and taking the first 500.
CREATE INDEX ledger_entries_available ON ledger_entries (owner, currency) INCLUDE (amount)
    WHERE account = 'vendor_available';

-- 2. The release sweep asks, for a whole batch of orders at once, which have an open hold of
--    their own (services/payout_holds.py ``orders_held``).
CREATE INDEX payout_holds_open_order ON payout_holds (order_id)
    WHERE released_at IS NULL AND order_id IS NOT NULL;
