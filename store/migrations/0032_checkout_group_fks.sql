-- A checkout's orders no longer check a foreign key to their group or their vendor, its
-- payment none to its group, a ledger entry none to its transaction (issue 20,
-- docs/benchmarks.md "Eighth session"), as 0031 did for users. Each check was a `SELECT 1 FROM
-- ONLY <table> WHERE id = $1 FOR KEY SHARE` per row, run by a trigger: 10.3 of the 15.2
-- statements triggers ran per checkout in the flash sale (the group's and the ledger's; the
-- vendor's 4.4 next), each a tuple lock on the group's row (two shards reserving for one group
-- make it a multixact), on the hot vendor's row (every order of its listings) or on the ledger
-- transaction just written.
--
-- Who guarantees the row exists, case by case:
-- * orders.group_id: an order is written only by `order.reserve` in the vendor's owner shard,
--   and the only sender of that command is the checkout (services/checkout.py `_reserve`),
--   with the id of a group it has read back or just written and seen committed (the
--   coalesced insert answers only after its commit). Groups are never deleted (no code path
--   deletes one; a failed checkout's group stays, `failed`).
-- * orders.vendor_id: the owner shard writes an order for the vendor row it read itself
--   (actors/market_ops.py `_vendor`: by id, from Postgres, kept once read), and vendors are
--   never deleted (a vendor is suspended, its row stays).
-- * payments.group_id: a payment row is inserted only by the statement that inserts its group
--   (`_OPENED`: from that insert's RETURNING) or, for a group from before that, by
--   `INSERT ... SELECT ... FROM order_groups WHERE id = $3` (no row, no payment). Its UNIQUE
--   stays: one payment per group.
-- * ledger_entries.txn_id: every insert of entries takes txn_id from the RETURNING of the
--   ledger_transactions insert of the same statement (hl_ledger_post, hl_ledger_capture,
--   store/ledger_store.py post_releases), and the ledger is append-only (its triggers refuse
--   UPDATE and DELETE), so the transaction cannot go away.
-- Every other foreign key stays.
ALTER TABLE orders DROP CONSTRAINT orders_group_id_fkey,
    DROP CONSTRAINT orders_vendor_id_fkey;
ALTER TABLE payments DROP CONSTRAINT payments_group_id_fkey;
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_txn_id_fkey;
