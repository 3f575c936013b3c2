-- Admins through the control actor (docs/admin.md): suspensions, moderation, reports, appeals,
-- disputes and the append-only audit log.

-- A suspension is users.disabled_at (which every sign-in check already honours) plus why and
-- until when; the control actor lifts expired ones (HL_ADMIN_SWEEP_S).
ALTER TABLE users ADD COLUMN suspended_until timestamptz;
ALTER TABLE users ADD COLUMN suspension_reason text;

-- Removed content leaves every read op; the row stays for its author's moderation notices.
ALTER TABLE comments ADD COLUMN removed_at timestamptz;
ALTER TABLE messages ADD COLUMN removed_at timestamptz;
ALTER TABLE listings ADD COLUMN removed_at timestamptz;

-- Every admin and ops action, appended in the same transaction as the action itself.
CREATE TABLE audit_log (
    seq       bigserial PRIMARY KEY,             -- the listing cursor: newest first
    id        text NOT NULL UNIQUE,
    actor_id  text,                              -- NULL: the system (e.g. an expired suspension)
    action    text NOT NULL,                     -- e.g. roles.set, user.suspend, content.remove
    target    text NOT NULL,                     -- "<kind>:<id>", e.g. user:abc, post:<id>
    reason    text,
    result    jsonb NOT NULL DEFAULT '{}',
    at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_actor ON audit_log (actor_id, seq DESC);
CREATE INDEX audit_log_target ON audit_log (target, seq DESC);

-- Append-only, enforced by the database: no code path (or stray SQL) updates or deletes.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- A moderation action that affects one user and can be appealed (and reversed).
CREATE TABLE moderation_actions (
    id           text PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('remove', 'suspend')),
    target_kind  text NOT NULL CHECK (target_kind IN ('post', 'comment', 'listing', 'message',
                     'user')),
    target_id    text NOT NULL,
    user_id      text NOT NULL REFERENCES users(id),  -- the affected user (author / suspended)
    actor_id     text REFERENCES users(id),
    reason       text NOT NULL,
    until        timestamptz,                         -- suspensions: when it ends (NULL: never)
    created_at   timestamptz NOT NULL DEFAULT now(),
    reversed_at  timestamptz,
    reversed_by  text REFERENCES users(id)
);
CREATE INDEX moderation_actions_user ON moderation_actions (user_id, created_at DESC);

CREATE TABLE reports (
    id            text PRIMARY KEY,
    reporter_id   text NOT NULL REFERENCES users(id),
    target_kind   text NOT NULL CHECK (target_kind IN ('post', 'comment', 'listing', 'message',
                      'user')),
    target_id     text NOT NULL,
    target_user   text REFERENCES users(id),          -- the author of the reported object
    reason        text NOT NULL CHECK (reason IN ('spam', 'scam', 'harassment', 'illegal',
                      'other')),
    note          text,
    severity      smallint NOT NULL,
    status        text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    resolution    text CHECK (resolution IN ('dismiss', 'remove', 'suspend')),
    resolved_by   text REFERENCES users(id),
    resolved_note text,
    idem_key      text,                               -- the client's key: a retry finds it
    created_at    timestamptz NOT NULL DEFAULT now(),
    resolved_at   timestamptz
);
CREATE UNIQUE INDEX reports_key ON reports (reporter_id, idem_key) WHERE idem_key IS NOT NULL;
-- One open report per reporter and target.
CREATE UNIQUE INDEX reports_one_open ON reports (reporter_id, target_kind, target_id)
    WHERE status = 'open';
CREATE INDEX reports_target ON reports (target_kind, target_id) WHERE status = 'open';
CREATE INDEX reports_reporter_recent ON reports (reporter_id, created_at DESC);

CREATE TABLE appeals (
    id          text PRIMARY KEY,
    action_id   text NOT NULL REFERENCES moderation_actions(id),
    user_id     text NOT NULL REFERENCES users(id),
    text        text NOT NULL,
    status      text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'accepted', 'rejected')),
    decided_by  text REFERENCES users(id),
    note        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    decided_at  timestamptz
);
-- One open appeal per action.
CREATE UNIQUE INDEX appeals_one_open ON appeals (action_id) WHERE status = 'open';

CREATE TABLE disputes (
    id           text PRIMARY KEY,
    order_id     text NOT NULL REFERENCES orders(id),
    buyer_id     text NOT NULL REFERENCES users(id),
    vendor_id    text NOT NULL REFERENCES vendors(id),
    vendor_user  text NOT NULL REFERENCES users(id),
    reason       text NOT NULL CHECK (reason IN ('not_received', 'not_as_described', 'other')),
    text         text NOT NULL,
    status       text NOT NULL CHECK (status IN ('open', 'responded', 'refunded', 'rejected')),
    response     text,
    outcome_note text,
    amount       bigint,
    idem_key     text,                               -- the buyer's key: a retry finds it
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
-- One dispute per order, ever (a rejected one is final).
CREATE UNIQUE INDEX disputes_order ON disputes (order_id);
CREATE INDEX disputes_vendor ON disputes (vendor_id, created_at DESC);
