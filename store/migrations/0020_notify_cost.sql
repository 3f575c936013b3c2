-- Notifications made cheap (issue 15, docs/notifications.md "What it costs"): the trigger
-- writes a delivery row only for a channel that can deliver it, and one NOTIFY per transaction
-- wakes the notifiers (LISTEN hl_outbox) instead of their polling.

-- Every kind's defaults, as models/notifications.py KINDS has them (the source: each gateway
-- writes its table here at start, store/notifications_store.py sync_kinds; seeded here so the
-- trigger knows them before any gateway ran). `digest`: a daily digest replaces its emails.
CREATE TABLE notification_kinds (
    kind   text PRIMARY KEY,
    inapp  boolean NOT NULL,
    email  boolean NOT NULL,
    push   boolean NOT NULL,
    digest boolean NOT NULL
);
INSERT INTO notification_kinds (kind, inapp, email, push, digest) VALUES
    ('comment.created', true, false, true, true),
    ('post.liked', true, false, false, true),
    ('user.followed', true, false, true, true),
    ('post.shared', true, false, false, true),
    ('room.opened', true, false, true, true),
    ('room.added', true, false, true, true),
    ('chat.message', true, false, true, false),
    ('order.status', true, true, true, false),
    ('order.vendor', true, true, true, false),
    ('dispute.updated', true, true, true, false),
    ('promotion', false, false, false, true),
    ('moderation', true, true, false, false),
    ('appeal.decided', true, true, false, false);

-- The channels a notification of kind `k` to `uid` can be delivered on, decided with the
-- facts Postgres has (what models/notifications.py Preferences.wants says, plus the account
-- and the devices): none for a disabled account; email when the global switch and the kind's
-- email are on and no daily digest takes it; push when push is on for the kind and the user
-- has a push subscription. What changes with time (quiet hours, the hourly cap, a direct
-- message to someone online, SMTP configured) is still the notifier's call.
CREATE FUNCTION hl_notify_channels(uid text, k text, prefs jsonb) RETURNS text[]
    LANGUAGE plpgsql STABLE AS $$
DECLARE
    key text := CASE WHEN k LIKE 'moderation.%' THEN 'moderation' ELSE k END;
    d   notification_kinds;
    out text[] := '{}';
BEGIN
    IF EXISTS (SELECT 1 FROM users WHERE id = uid AND disabled_at IS NOT NULL) THEN
        RETURN out;
    END IF;
    SELECT * INTO d FROM notification_kinds WHERE kind = key;
    IF coalesce((prefs ->> 'email')::boolean, true)
       AND coalesce((prefs -> 'kinds' -> key ->> 'email')::boolean, d.email, false)
       AND NOT coalesce(prefs ->> 'digest' = 'daily' AND d.digest, false) THEN
        out := out || 'email'::text;
    END IF;
    IF coalesce((prefs ->> 'push')::boolean, true)
       AND coalesce((prefs -> 'kinds' -> key ->> 'push')::boolean, d.push, false)
       AND EXISTS (SELECT 1 FROM push_subscriptions WHERE user_id = uid) THEN
        out := out || 'push'::text;
    END IF;
    RETURN out;
END $$;

-- As 0012's, with the channels above instead of always both, and a kind's in-app default
-- (`promotion` is off in-app unless turned on) honoured for the read mark.
CREATE OR REPLACE FUNCTION hl_notify() RETURNS trigger LANGUAGE plpgsql AS $$
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
    SELECT settings INTO prefs FROM notification_settings WHERE user_id = uid;
    IF NEW.ev = 'chat.message' THEN
        IF NEW.data -> 'message' ->> 'sender_id' = uid THEN
            RETURN NULL;
        END IF;
        INSERT INTO notification_deliveries (user_id, kind, channel, source, payload)
        SELECT uid, 'chat.message', ch, src, NEW.data
        FROM unnest(hl_notify_channels(uid, 'chat.message', prefs)) ch
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
    IF NOT coalesce(
        (prefs -> 'kinds' -> (CASE WHEN k LIKE 'moderation.%' THEN 'moderation' ELSE k END)
         ->> 'inapp')::boolean,
        (SELECT inapp FROM notification_kinds
         WHERE kind = CASE WHEN k LIKE 'moderation.%' THEN 'moderation' ELSE k END),
        true) THEN
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
        SELECT uid, k, ch, src, nid, NEW.data FROM unnest(hl_notify_channels(uid, k, prefs)) ch
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END $$;

-- Promotions to nearby users who do not follow the vendor (services/notifications.py): who
-- set a `nearby` cell, and how many such promotions each had today.
CREATE INDEX notification_settings_nearby
    ON notification_settings ((settings -> 'nearby' ->> 'cell')) WHERE settings ? 'nearby';
CREATE INDEX notifications_promotions ON notifications (user_id, created_at)
    WHERE kind = 'promotion';

-- The notifiers' wake-up: one NOTIFY per statement that queued a delivery, and Postgres folds
-- the identical ones of a transaction into one, so a shard's batch of many inbox events wakes
-- each listening notifier once, at its commit (and never for a rolled-back one). The payload,
-- the transaction's id, only tells wake-ups apart (tests, debugging); the notifier ignores it.
CREATE FUNCTION hl_outbox_wake() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM hl_queued) THEN
        PERFORM pg_notify('hl_outbox', pg_current_xact_id()::text);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER notification_deliveries_wake AFTER INSERT ON notification_deliveries
    REFERENCING NEW TABLE AS hl_queued
    FOR EACH STATEMENT EXECUTE FUNCTION hl_outbox_wake();
