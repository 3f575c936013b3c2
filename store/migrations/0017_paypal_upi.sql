-- PayPal and UPI (issue 17): what a buyer needs to finish a redirect or scan payment, and the
-- providers' webhook events already applied (each takes effect once, as stripe_events).

-- `requires_action` details shown to the buyer: PayPal's {approve_url}, UPI's {upi_uri, qr_svg}.
ALTER TABLE payments ADD COLUMN action jsonb;

CREATE TABLE provider_events (
    provider    text NOT NULL,               -- 'paypal', 'upi'
    id          text NOT NULL,               -- the provider's event id
    type        text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, id)
);
