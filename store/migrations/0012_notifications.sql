-- Notifications (issue 15): the notification centre, its delivery outbox (email, Web Push),
-- preferences, push subscriptions, account tokens (password reset, email verification) and
-- the deployment's generated secrets. docs/notifications.md explains every table.

-- Per-user preferences as sent by PUT /api/v1/me/notification-settings, validated by
-- models/notifications.py (defaults live there; a user without a row has the defaults).
CREATE TABLE notification_settings (
    user_id        text PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    settings       jsonb NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    last_digest_at timestamptz                   -- the last daily digest queued for the user
);

-- The notification centre: one row per notification, written by the trigger below in the
-- transaction that writes its inbox event. `source` is that event (`user:<id>@<offset>`): at
-- most one notification per event. A burst folds: the newest row of an unread group
-- (`group_key`) is its `head`, carrying how many rows it stands for and the latest actors;
-- the rows it folds stay (head = false).
CREATE TABLE notifications (
    id          bigserial PRIMARY KEY,
    user_id     text NOT NULL,
    kind        text NOT NULL,
    group_key   text NOT NULL,
    actor_id    text,
    data        jsonb NOT NULL,
    source      text NOT NULL UNIQUE,
    head        boolean NOT NULL DEFAULT true,
    fold_count  integer NOT NULL DEFAULT 1,
    fold_actors text[] NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    read_at     timestamptz
);
CREATE INDEX notifications_list ON notifications (user_id, id DESC) WHERE head;
CREATE INDEX notifications_unread ON notifications (user_id, group_key) WHERE read_at IS NULL;

-- The delivery outbox: one row per (event, channel), written with the notification (same
-- transaction), claimed by the notifier (services/notifier.py) with FOR UPDATE SKIP LOCKED and
-- a lease. pending -> sent | skipped (a preference, the rate limit, no address or device) |
-- dead (permanent failure, or attempts exhausted). `done` lists the push endpoints that
-- already accepted it (a retry goes only to the others).
CREATE TABLE notification_deliveries (
    id              bigserial PRIMARY KEY,
    user_id         text NOT NULL,
    kind            text NOT NULL,
    channel         text NOT NULL CHECK (channel IN ('email', 'push')),
    source          text NOT NULL,
    notification_id bigint,
    payload         jsonb NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sent', 'skipped', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    next_at         timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    done            text[] NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    UNIQUE (source, channel)
);
CREATE INDEX notification_deliveries_due ON notification_deliveries (next_at)
    WHERE status = 'pending';
CREATE INDEX notification_deliveries_user ON notification_deliveries (user_id, channel, finished_at);

-- Web Push subscriptions, one per device (a W3C PushSubscription); a 404/410 from the push
-- service deletes the row.
CREATE TABLE push_subscriptions (
    endpoint   text PRIMARY KEY,
    user_id    text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    p256dh     text NOT NULL,
    auth       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX push_subscriptions_user ON push_subscriptions (user_id);

-- Secrets the deployment generates once (the VAPID key pair, the unsubscribe-link key),
-- sealed with the data key (models/sealing.py, context "app:<name>").
CREATE TABLE app_secrets (
    name       text PRIMARY KEY,
    value      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Single-use account tokens sent by email: only their SHA-256 digest is kept.
CREATE TABLE account_tokens (
    digest     text PRIMARY KEY,
    user_id    text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    purpose    text NOT NULL CHECK (purpose IN ('password_reset', 'email_verify')),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX account_tokens_user ON account_tokens (user_id, purpose);

ALTER TABLE users ADD COLUMN email_verified_at timestamptz;

-- Promotions a vendor sent (the per-day cap counts these).
CREATE TABLE promotions (
    id         text PRIMARY KEY,
    vendor_id  text NOT NULL,
    key        text,                             -- Idempotency-Key: a retry sends nothing
    title      text NOT NULL,
    body       text NOT NULL,
    recipients integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX promotions_vendor ON promotions (vendor_id, created_at);
CREATE UNIQUE INDEX promotions_key ON promotions (vendor_id, key) WHERE key IS NOT NULL;

-- The producer: every inbox event that is a notification (`notification`, `order.updated`,
-- `dispute.updated`) becomes a notification row and its two delivery rows in the
-- statement that inserts the event, so in its transaction: no producer calls anything, the
-- shard's batch statement gains no round trip. A direct chat message in the recipient's inbox
-- (`chat.message` on `user:<id>`, not the sender's own copy) gets delivery rows only (the room
-- is its list); whether to push it (the recipient offline?) is the notifier's call.
CREATE FUNCTION hl_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    uid      text := substr(NEW.stream, 6);
    src      text := NEW.stream || '@' || NEW."offset";
    k        text;
    grp      text;
    actor    text;
    prefs    jsonb;
    nid      bigint;
    prev_n   integer;
    prev_a   text[];
    read_now timestamptz;
BEGIN
    IF NEW.ev = 'chat.message' THEN
        IF NEW.data -> 'message' ->> 'sender_id' = uid THEN
            RETURN NULL;
        END IF;
        INSERT INTO notification_deliveries (user_id, kind, channel, source, payload)
        SELECT uid, 'chat.message', ch, src, NEW.data FROM unnest(ARRAY['email', 'push']) ch
        ON CONFLICT DO NOTHING;
        RETURN NULL;
    END IF;
    k := CASE NEW.ev
        WHEN 'notification' THEN coalesce(NEW.data ->> 'kind', 'notification')
        WHEN 'order.updated' THEN CASE WHEN NEW.data -> 'order' ->> 'buyer_id' = uid
                                       THEN 'order.status' ELSE 'order.vendor' END
        ELSE NEW.ev END;
    actor := NEW.data ->> 'by';
    grp := CASE
        WHEN k IN ('post.liked', 'comment.created') THEN k || ':' || coalesce(NEW.data ->> 'post_id', '')
        WHEN k = 'user.followed' THEN k
        ELSE src END;
    SELECT settings INTO prefs FROM notification_settings WHERE user_id = uid;
    IF prefs -> 'kinds' -> k ->> 'inapp' = 'false' THEN
        read_now := now();  -- listed, never unread: the user turned this kind off in-app
    END IF;
    IF read_now IS NULL AND grp <> src THEN
        WITH prev AS (
            UPDATE notifications SET head = false
            WHERE user_id = uid AND group_key = grp AND head AND read_at IS NULL
            RETURNING fold_count, fold_actors
        )
        SELECT (SELECT sum(fold_count)::integer FROM prev),
               (SELECT (array_agg(a))[1:3] FROM prev, unnest(prev.fold_actors) a)
        INTO prev_n, prev_a;
    END IF;
    INSERT INTO notifications
        (user_id, kind, group_key, actor_id, data, source, fold_count, fold_actors, read_at)
    VALUES (
        uid, k, grp, actor, NEW.data, src, coalesce(prev_n, 0) + 1,
        (CASE WHEN actor IS NULL THEN '{}'::text[] ELSE ARRAY[actor] END
         || array_remove(coalesce(prev_a, '{}'::text[]), actor))[1:3],
        read_now
    )
    ON CONFLICT (source) DO NOTHING
    RETURNING id INTO nid;
    IF nid IS NOT NULL THEN
        INSERT INTO notification_deliveries (user_id, kind, channel, source, notification_id, payload)
        SELECT uid, k, ch, src, nid, NEW.data FROM unnest(ARRAY['email', 'push']) ch
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER stream_events_notify AFTER INSERT ON stream_events
    FOR EACH ROW
    WHEN (NEW.stream LIKE 'user:%'
          AND NEW.ev IN ('notification', 'order.updated', 'dispute.updated', 'chat.message'))
    EXECUTE FUNCTION hl_notify();
