-- A refund the provider refused for good (e.g. Stripe: already refunded, amount too large) is
-- `failed`: terminal, never retried by the sweeper; `error` says why, for an admin to settle.
ALTER TABLE refunds DROP CONSTRAINT refunds_status_check;
ALTER TABLE refunds ADD CONSTRAINT refunds_status_check
    CHECK (status IN ('pending', 'succeeded', 'external', 'failed'));
ALTER TABLE refunds ADD COLUMN error text;
