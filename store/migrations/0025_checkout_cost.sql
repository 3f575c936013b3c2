-- What a checkout costs Postgres (issue 20, docs/benchmarks.md "Flash sale"): two triggers on
-- its path made set-based or skipped where they do nothing anyone reads.

-- 1. An order waiting for its payment (`pending_payment`: reserved, the buyer still in the
-- checkout that made it) is not news to anyone: the buyer is looking at the checkout's answer
-- and the vendor has nothing to do until it is paid. Its `order.updated` still goes to both
-- inboxes (live clients see it, docs/protocol.md); it makes no notification row and no email
-- or push (docs/notifications.md "Kinds"). The vendor's "new order" is the `paid` step. The
-- WHEN clause keeps the event out of plpgsql altogether.
DROP TRIGGER stream_events_notify ON stream_events;
CREATE TRIGGER stream_events_notify AFTER INSERT ON stream_events
    FOR EACH ROW
    WHEN (NEW.stream LIKE 'user:%'
          AND NEW.ev IN ('notification', 'order.updated', 'dispute.updated', 'chat.message')
          AND NOT (NEW.ev = 'order.updated'
                   AND NEW.data -> 'order' ->> 'status' = 'pending_payment'))
    EXECUTE FUNCTION hl_notify();

-- 2. The capture's ledger entries in one statement for the whole group (was one
-- hl_ledger_post per order: a jsonb legs array built, summed and unpacked per order). Same
-- entries, same ids per (source, kind), balanced by construction: the buyer's money at the
-- provider's clearing account (+total) owed to the vendor less the commission (-(total - c))
-- and the platform's commission (-c); zero legs dropped, a zero order posts nothing, a
-- replayed capture posts nothing (ON CONFLICT on (source, kind)).
CREATE OR REPLACE FUNCTION hl_ledger_capture() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH o AS (
        SELECT r.id, r.vendor_id, r.cell, r.total,
               least(greatest(coalesce(
                   (SELECT (part->>'commission')::bigint
                      FROM jsonb_array_elements(g.parts) part
                     WHERE part->>'vendor_id' = r.vendor_id), 0), 0), r.total) AS c
          FROM orders r JOIN order_groups g ON g.id = r.group_id
         WHERE r.group_id = NEW.group_id AND r.total > 0
    ), t AS (
        INSERT INTO ledger_transactions (source, kind, currency, order_id, vendor_id, cell, amount)
        SELECT 'order:' || o.id, 'capture', NEW.currency, o.id, o.vendor_id, o.cell, o.total
          FROM o ORDER BY o.vendor_id
        ON CONFLICT (source, kind) DO NOTHING
        RETURNING id, order_id
    )
    INSERT INTO ledger_entries (txn_id, account, owner, order_id, amount, currency)
    SELECT t.id, l.account, l.owner, o.id, l.amount, NEW.currency
      FROM t JOIN o ON o.id = t.order_id
     CROSS JOIN LATERAL (VALUES ('provider_clearing', NEW.provider::text, o.total),
                                ('vendor_pending', o.vendor_id, -(o.total - o.c)),
                                ('platform_commission', '', -o.c)) AS l(account, owner, amount)
     WHERE l.amount <> 0;
    RETURN NULL;
END $$;

-- 3. Buy now (`checkout {lines}`): a group made from the lines the buyer sent, not from the
-- cart; its settling leaves the cart alone (services/checkout.py). Groups from before: carts.
ALTER TABLE order_groups ADD COLUMN from_cart boolean NOT NULL DEFAULT true;
