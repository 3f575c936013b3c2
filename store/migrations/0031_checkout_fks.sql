-- A checkout's own rows no longer check a foreign key to users (issue 20, docs/benchmarks.md
-- "Seventh session"), as chat messages and posts stopped doing in 0029. Each check was a
-- `SELECT 1 FROM users WHERE id = $1 FOR KEY SHARE` per row: a tuple lock on the buyer's and on
-- the vendor's user row (one more WAL record and dirtied page each), and in a flash sale every
-- order of a hot listing locks the same vendor user's row. What the keys guarded cannot happen
-- here: users are never deleted (an account is disabled or suspended, its row stays), the
-- buyer of a group and of its orders is the signed-in user of the session (checked before any
-- command leaves the gateway), and an order's vendor user is read from its vendor's row, whose
-- own key to users stays (`vendors.user_id`). Every other reference to users keeps its key.
ALTER TABLE orders DROP CONSTRAINT orders_buyer_id_fkey,
    DROP CONSTRAINT orders_vendor_user_id_fkey;
ALTER TABLE order_groups DROP CONSTRAINT order_groups_buyer_id_fkey;
