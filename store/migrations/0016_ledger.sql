-- The double-entry ledger (docs/payments.md, "Ledger"): every capture, refund, commission, dispute
-- hold, balance release and payout is one balanced transaction of entries, written in the same
-- Postgres transaction as the state change that causes it. Append-only.
--
-- Sign: an entry's amount is + for a debit, - for a credit; a transaction's entries sum to zero
-- (hl_ledger_post refuses one that does not). A transaction is unique per (source, kind): a
-- replayed webhook or a retried step posts nothing the second time.
--
-- Captures, refunds and holds are posted by triggers on the rows whose change causes them
-- (payments.status -> captured, a refunds row and its move to succeeded, payout_holds), so every
-- code path and every provider (Stripe, the sandbox, PayPal, UPI, ...) gets its entries without
-- calling anything, inside the statement that changes the row: no extra round trip or commit.
-- Releases and payouts are posted by services/ledger.py and services/payouts.py through the same
-- function.

CREATE TABLE ledger_transactions (
    id         bigserial PRIMARY KEY,
    source     text NOT NULL,              -- order:<id>, refund:<id>, hold:<id>, payout:<id>
    kind       text NOT NULL CHECK (kind IN ('capture', 'refund', 'refund_paid', 'release',
                   'hold', 'unhold', 'payout', 'payout_paid', 'payout_failed')),
    currency   text NOT NULL,
    order_id   text,                       -- the order it is about (payouts: none)
    vendor_id  text,
    cell       text,                       -- the order's cell (revenue by cell)
    amount     bigint NOT NULL CHECK (amount > 0),   -- the sum of its debits
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source, kind)
);
CREATE INDEX ledger_transactions_at ON ledger_transactions (created_at)
    WHERE kind IN ('capture', 'refund');

CREATE TABLE ledger_entries (
    id       bigserial PRIMARY KEY,
    txn_id   bigint NOT NULL REFERENCES ledger_transactions(id),
    account  text NOT NULL CHECK (account IN ('provider_clearing', 'refunds_payable',
                 'platform_commission', 'vendor_pending', 'vendor_available', 'vendor_held',
                 'payouts_in_transit', 'payouts_settled')),
    owner    text NOT NULL DEFAULT '',     -- vendor_* / payouts_in_transit: the vendor id;
                                           -- provider_clearing, refunds_payable: the provider
    order_id text,                         -- vendor_* entries: the order whose money it is
    amount   bigint NOT NULL CHECK (amount <> 0),
    currency text NOT NULL
);
CREATE INDEX ledger_entries_txn ON ledger_entries (txn_id);
CREATE INDEX ledger_entries_owner ON ledger_entries (owner, account, currency);
CREATE INDEX ledger_entries_order ON ledger_entries (order_id, account) WHERE order_id IS NOT NULL;

CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only' USING ERRCODE = 'HLL02';
END $$;
CREATE TRIGGER ledger_transactions_no_update BEFORE UPDATE OR DELETE ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();

-- Post one transaction: legs [{account, owner?, order_id?, amount}] (zero legs are dropped).
-- Unbalanced legs raise HLL01 (the caller's transaction fails: nothing half written). Returns
-- the new transaction's id, or NULL when nothing moves or (source, kind) was posted before.
CREATE FUNCTION hl_ledger_post(p_source text, p_kind text, p_currency text, p_order text,
                               p_vendor text, p_cell text, p_legs jsonb) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_sum bigint;
    v_debits bigint;
    v_id bigint;
BEGIN
    SELECT coalesce(sum((l->>'amount')::bigint), 0),
           coalesce(sum(greatest((l->>'amount')::bigint, 0)), 0)
      INTO v_sum, v_debits FROM jsonb_array_elements(p_legs) l;
    IF v_sum <> 0 THEN
        RAISE EXCEPTION 'ledger transaction %/% does not balance (%)', p_source, p_kind, v_sum
            USING ERRCODE = 'HLL01';
    END IF;
    IF v_debits = 0 THEN
        RETURN NULL;
    END IF;
    INSERT INTO ledger_transactions (source, kind, currency, order_id, vendor_id, cell, amount)
    VALUES (p_source, p_kind, p_currency, p_order, p_vendor, p_cell, v_debits)
    ON CONFLICT (source, kind) DO NOTHING RETURNING id INTO v_id;
    IF v_id IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO ledger_entries (txn_id, account, owner, order_id, amount, currency)
    SELECT v_id, l->>'account', coalesce(l->>'owner', ''), coalesce(l->>'order_id', p_order),
           (l->>'amount')::bigint, p_currency
      FROM jsonb_array_elements(p_legs) l WHERE (l->>'amount')::bigint <> 0;
    RETURN v_id;
END $$;

-- What the vendor is owed of one order in one account (a liability: minus its entries' sum).
CREATE FUNCTION hl_ledger_owed(p_account text, p_vendor text, p_order text) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT -coalesce(sum(amount), 0)::bigint FROM ledger_entries
     WHERE order_id = p_order AND account = p_account AND owner = p_vendor
$$;

-- Capture: per order of the payment's group, the buyer's money reaches the provider's clearing
-- account and is owed to the vendor (pending) less the platform's commission, as computed at
-- checkout per category (models/ledger.py, stored in the group's parts).
CREATE FUNCTION hl_ledger_capture() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    o record;
    c bigint;
BEGIN
    FOR o IN SELECT r.id, r.vendor_id, r.cell, r.total,
                    (SELECT (part->>'commission')::bigint
                       FROM order_groups g, jsonb_array_elements(g.parts) part
                      WHERE g.id = r.group_id AND part->>'vendor_id' = r.vendor_id) AS commission
               FROM orders r WHERE r.group_id = NEW.group_id ORDER BY r.vendor_id
    LOOP
        c := least(greatest(coalesce(o.commission, 0), 0), o.total);
        PERFORM hl_ledger_post('order:' || o.id, 'capture', NEW.currency, o.id, o.vendor_id,
            o.cell, jsonb_build_array(
                jsonb_build_object('account', 'provider_clearing', 'owner', NEW.provider,
                                   'amount', o.total),
                jsonb_build_object('account', 'vendor_pending', 'owner', o.vendor_id,
                                   'amount', -(o.total - c)),
                jsonb_build_object('account', 'platform_commission', 'amount', -c)));
    END LOOP;
    RETURN NULL;
END $$;
CREATE TRIGGER payments_ledger_capture AFTER UPDATE OF status ON payments FOR EACH ROW
    WHEN (NEW.status = 'captured' AND OLD.status IS DISTINCT FROM 'captured')
    EXECUTE FUNCTION hl_ledger_capture();
CREATE TRIGGER payments_ledger_capture_new AFTER INSERT ON payments FOR EACH ROW
    WHEN (NEW.status = 'captured') EXECUTE FUNCTION hl_ledger_capture();

-- A refund paid back at the provider: refunds_payable -> provider clearing.
CREATE FUNCTION hl_ledger_refund_paid(p_refund text, p_amount bigint, p_provider text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t record;
BEGIN
    SELECT currency, order_id, vendor_id, cell INTO t FROM ledger_transactions
     WHERE source = 'refund:' || p_refund AND kind = 'refund';
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM hl_ledger_post('refund:' || p_refund, 'refund_paid', t.currency, t.order_id,
        t.vendor_id, t.cell, jsonb_build_array(
            jsonb_build_object('account', 'refunds_payable', 'owner', p_provider,
                               'amount', p_amount),
            jsonb_build_object('account', 'provider_clearing', 'owner', p_provider,
                               'amount', -p_amount)));
END $$;

-- A refund recorded (whole or partial): owed back to the buyer (refunds_payable), taken from the
-- vendor's share of the order (held first, then pending, then available, which may go below
-- zero after a payout: recovered from the next) and from the commission in proportion
-- (models/ledger.py: refund_commission, the same rule).
CREATE FUNCTION hl_ledger_refund() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    o record;
    cap bigint;
    c_total bigint;
    prev bigint;
    c_r bigint;
    left_ bigint;
    take bigint;
    acct text;
    legs jsonb;
    prov text;
BEGIN
    -- the order's row lock orders this against a release or payout reading its balances (the
    -- owner shard holds it already; those never wait for it: SKIP LOCKED)
    SELECT id, vendor_id, cell, total INTO o FROM orders WHERE id = NEW.order_id
       FOR NO KEY UPDATE;
    SELECT id INTO cap FROM ledger_transactions
     WHERE source = 'order:' || NEW.order_id AND kind = 'capture';
    IF cap IS NULL OR NEW.amount <= 0 OR o.total <= 0 THEN
        RETURN NULL;  -- captured before the ledger existed, or nothing to move
    END IF;
    SELECT provider INTO prov FROM payments WHERE id = NEW.payment_id;
    SELECT -coalesce(sum(amount), 0) INTO c_total FROM ledger_entries
     WHERE txn_id = cap AND account = 'platform_commission';
    SELECT coalesce(sum(amount), 0) INTO prev FROM refunds
     WHERE order_id = NEW.order_id AND id <> NEW.id;
    c_r := floor(c_total::numeric * least(prev + NEW.amount, o.total) / o.total)::bigint
         - floor(c_total::numeric * least(prev, o.total) / o.total)::bigint;
    c_r := least(c_r, NEW.amount);
    left_ := NEW.amount - c_r;
    legs := jsonb_build_array(
        jsonb_build_object('account', 'platform_commission', 'amount', c_r),
        jsonb_build_object('account', 'refunds_payable', 'owner', prov, 'amount', -NEW.amount));
    FOREACH acct IN ARRAY ARRAY['vendor_held', 'vendor_pending'] LOOP
        take := least(left_, greatest(hl_ledger_owed(acct, o.vendor_id, o.id), 0));
        IF take > 0 THEN
            legs := legs || jsonb_build_object('account', acct, 'owner', o.vendor_id,
                                               'amount', take);
            left_ := left_ - take;
        END IF;
    END LOOP;
    IF left_ > 0 THEN
        legs := legs || jsonb_build_object('account', 'vendor_available', 'owner', o.vendor_id,
                                           'amount', left_);
    END IF;
    PERFORM hl_ledger_post('refund:' || NEW.id, 'refund', (SELECT currency FROM ledger_transactions
        WHERE id = cap), o.id, o.vendor_id, o.cell, legs);
    IF NEW.status IN ('succeeded', 'external') THEN
        PERFORM hl_ledger_refund_paid(NEW.id, NEW.amount, prov);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER refunds_ledger AFTER INSERT ON refunds FOR EACH ROW
    EXECUTE FUNCTION hl_ledger_refund();

CREATE FUNCTION hl_ledger_refund_done() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM hl_ledger_refund_paid(NEW.id, NEW.amount,
                                  (SELECT provider FROM payments WHERE id = NEW.payment_id));
    RETURN NULL;
END $$;
CREATE TRIGGER refunds_ledger_done AFTER UPDATE OF status ON refunds FOR EACH ROW
    WHEN (NEW.status IN ('succeeded', 'external')
          AND OLD.status NOT IN ('succeeded', 'external'))
    EXECUTE FUNCTION hl_ledger_refund_done();

-- An order-level payout hold (a dispute's or an admin's) moves what the vendor is owed of the
-- order (pending and available) to vendor_held; the last open hold's release moves it back:
-- to available if the order's balance was released before, else to pending. A vendor-wide
-- hold moves nothing (payouts ask services/payout_holds.py: payout_blocked).
CREATE FUNCTION hl_ledger_hold() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    t record;
    pend bigint;
    avail bigint;
    held bigint;
    back text;
BEGIN
    IF NEW.order_id IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM 1 FROM orders WHERE id = NEW.order_id FOR NO KEY UPDATE;  -- as hl_ledger_refund
    SELECT currency, cell INTO t FROM ledger_transactions
     WHERE source = 'order:' || NEW.order_id AND kind = 'capture';
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        pend := greatest(hl_ledger_owed('vendor_pending', NEW.vendor_id, NEW.order_id), 0);
        avail := greatest(hl_ledger_owed('vendor_available', NEW.vendor_id, NEW.order_id), 0);
        PERFORM hl_ledger_post('hold:' || NEW.id, 'hold', t.currency, NEW.order_id,
            NEW.vendor_id, t.cell, jsonb_build_array(
                jsonb_build_object('account', 'vendor_pending', 'owner', NEW.vendor_id,
                                   'amount', pend),
                jsonb_build_object('account', 'vendor_available', 'owner', NEW.vendor_id,
                                   'amount', avail),
                jsonb_build_object('account', 'vendor_held', 'owner', NEW.vendor_id,
                                   'amount', -(pend + avail))));
    ELSIF NOT EXISTS (SELECT 1 FROM payout_holds WHERE order_id = NEW.order_id
                      AND released_at IS NULL AND id <> NEW.id) THEN
        held := greatest(hl_ledger_owed('vendor_held', NEW.vendor_id, NEW.order_id), 0);
        back := CASE WHEN EXISTS (SELECT 1 FROM ledger_transactions
                                   WHERE source = 'order:' || NEW.order_id AND kind = 'release')
                     THEN 'vendor_available' ELSE 'vendor_pending' END;
        PERFORM hl_ledger_post('hold:' || NEW.id, 'unhold', t.currency, NEW.order_id,
            NEW.vendor_id, t.cell, jsonb_build_array(
                jsonb_build_object('account', 'vendor_held', 'owner', NEW.vendor_id,
                                   'amount', held),
                jsonb_build_object('account', back, 'owner', NEW.vendor_id, 'amount', -held)));
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER payout_holds_ledger AFTER INSERT ON payout_holds FOR EACH ROW
    EXECUTE FUNCTION hl_ledger_hold();
CREATE TRIGGER payout_holds_ledger_release AFTER UPDATE OF released_at ON payout_holds
    FOR EACH ROW WHEN (OLD.released_at IS NULL AND NEW.released_at IS NOT NULL)
    EXECUTE FUNCTION hl_ledger_hold();

-- Fulfilment starts the hold period of an order's pending balance: the order joins the queue
-- the release sweep reads (services/ledger.py), leaving it when its balance is released.
ALTER TABLE orders ADD COLUMN fulfilled_at timestamptz;
CREATE TABLE ledger_release_queue (
    order_id     text PRIMARY KEY REFERENCES orders(id),
    vendor_id    text NOT NULL,
    fulfilled_at timestamptz NOT NULL
);
CREATE INDEX ledger_release_queue_due ON ledger_release_queue (fulfilled_at);
CREATE FUNCTION hl_order_fulfilled() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.fulfilled_at := now();
    INSERT INTO ledger_release_queue (order_id, vendor_id, fulfilled_at)
    VALUES (NEW.id, NEW.vendor_id, NEW.fulfilled_at) ON CONFLICT (order_id) DO NOTHING;
    RETURN NEW;
END $$;
CREATE TRIGGER orders_fulfilled_at BEFORE UPDATE OF status ON orders FOR EACH ROW
    WHEN (NEW.status IN ('fulfilled', 'completed') AND OLD.fulfilled_at IS NULL)
    EXECUTE FUNCTION hl_order_fulfilled();

-- Payouts: one per vendor and currency of a batch; a Stripe Connect transfer when the vendor
-- has a connected account, else a record the operator pays and marks paid.
ALTER TABLE vendors ADD COLUMN payout_account text;   -- Stripe connected account (acct_...)
CREATE TABLE payouts (
    id           text PRIMARY KEY,           -- also the transfer's idempotency key
    vendor_id    text NOT NULL REFERENCES vendors(id),
    currency     text NOT NULL,
    amount       bigint NOT NULL CHECK (amount > 0),
    method       text NOT NULL CHECK (method IN ('stripe_transfer', 'manual')),
    destination  text,
    status       text NOT NULL CHECK (status IN ('pending', 'paid', 'failed')),
    reference    text,                       -- the transfer id, or the operator's reference
    error        text,
    attempts     integer NOT NULL DEFAULT 0,
    orders       text[] NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    paid_at      timestamptz
);
CREATE INDEX payouts_vendor ON payouts (vendor_id, created_at DESC, id DESC);
CREATE INDEX payouts_pending ON payouts (created_at) WHERE status = 'pending';
