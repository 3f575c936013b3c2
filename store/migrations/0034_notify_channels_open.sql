-- No email delivery row when the deployment has no SMTP server (issue 20, docs/benchmarks.md
-- "Ninth session: Postgres per checkout, counted"; docs/notifications.md "How a notification is
-- made"). Without `HL_SMTP_URL` every email row the trigger wrote was claimed by the notifier
-- and settled `skipped` ("no SMTP server configured"), and the statement that queued it sent
-- `NOTIFY hl_outbox`, which every LISTENing backend reads in a transaction of its own: in the
-- flash sale ~0.6 NOTIFYs a checkout (a confirmation's `order.updated` to the buyer and to the
-- vendor, email on by default), and the rows, their index entries and the notifier's claims
-- and settlements with them. What a deployment can deliver is now a fact Postgres has, as the
-- kinds' defaults are (0020): `notification_channels`, which the notifier (the one process
-- that delivers) writes from its settings each time it opens (store/notifications_store.py
-- `sync_channels`: email open only with an SMTP server; push always, with the deployment's own
-- VAPID keys). Seeded open, so a database no notifier has opened on yet behaves as before. Nothing that would have gone out
-- is lost: the notification itself is in the centre either way, and an email row without SMTP
-- was only ever `skipped`.
CREATE TABLE notification_channels (
    channel text PRIMARY KEY CHECK (channel IN ('email', 'push')),
    open    boolean NOT NULL
);
INSERT INTO notification_channels (channel, open) VALUES ('email', true), ('push', true);

-- As 0020's, and nothing on a channel the deployment cannot deliver (the folding kinds').
CREATE OR REPLACE FUNCTION hl_notify_channels(uid text, k text, prefs jsonb) RETURNS text[]
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
    IF coalesce((SELECT open FROM notification_channels WHERE channel = 'email'), true)
       AND coalesce((prefs ->> 'email')::boolean, true)
       AND coalesce((prefs -> 'kinds' -> key ->> 'email')::boolean, d.email, false)
       AND NOT coalesce(prefs ->> 'digest' = 'daily' AND d.digest, false) THEN
        out := out || 'email'::text;
    END IF;
    IF coalesce((SELECT open FROM notification_channels WHERE channel = 'push'), true)
       AND coalesce((prefs ->> 'push')::boolean, true)
       AND coalesce((prefs -> 'kinds' -> key ->> 'push')::boolean, d.push, false)
       AND EXISTS (SELECT 1 FROM push_subscriptions WHERE user_id = uid) THEN
        out := out || 'push'::text;
    END IF;
    RETURN out;
END $$;

-- As 0030's, with the same channel rule (`f.email_open`, `f.push_open`: read once a statement).
CREATE OR REPLACE FUNCTION hl_notify_batch() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM hl_new_events WHERE stream LIKE 'user:%') THEN
        RETURN NULL;
    END IF;
    -- the folding kinds first and in order, as their row trigger ran before this one
    FOR r IN SELECT n.stream, n."offset", n.data FROM hl_new_events n
              WHERE n.stream LIKE 'user:%' AND n.ev = 'notification'
                AND n.data ->> 'kind' IN ('post.liked', 'comment.created', 'user.followed')
              ORDER BY n.stream, n."offset" LOOP
        PERFORM hl_notify_fold(r.stream, r."offset", r.data);
    END LOOP;
    WITH e AS (
        SELECT n.stream, n."offset", n.ev, n.data, substr(n.stream, 6) AS uid,
               n.stream || '@' || n."offset" AS src,
               CASE n.ev
                   WHEN 'notification' THEN coalesce(n.data ->> 'kind', 'notification')
                   WHEN 'order.updated' THEN
                       CASE WHEN n.data -> 'order' ->> 'buyer_id' = substr(n.stream, 6)
                            THEN 'order.status' ELSE 'order.vendor' END
                   ELSE n.ev END AS k
          FROM hl_new_events n
         WHERE n.stream LIKE 'user:%'
           AND n.ev IN ('notification', 'order.updated', 'dispute.updated', 'chat.message')
           AND NOT (n.ev = 'order.updated'
                    AND n.data -> 'order' ->> 'status' = 'pending_payment')
           AND NOT (n.ev = 'notification'
                    AND n.data ->> 'kind' IN ('post.liked', 'comment.created', 'user.followed'))
           AND NOT (n.ev = 'chat.message'
                    AND n.data -> 'message' ->> 'sender_id' = substr(n.stream, 6))
    ), f AS (
        -- each event with what decides its channels (hl_notify_channels) and its read mark
        SELECT e.*, s.settings AS prefs, d.email AS d_email, d.push AS d_push,
               d.digest AS d_digest, d.inapp AS d_inapp, u.disabled_at IS NOT NULL AS disabled,
               coalesce((SELECT o.open FROM notification_channels o WHERE o.channel = 'email'),
                        true) AS email_open,
               coalesce((SELECT o.open FROM notification_channels o WHERE o.channel = 'push'),
                        true) AS push_open,
               EXISTS (SELECT 1 FROM push_subscriptions p WHERE p.user_id = e.uid) AS subscribed,
               CASE WHEN e.k LIKE 'moderation.%' THEN 'moderation' ELSE e.k END AS key
          FROM e
          LEFT JOIN notification_settings s ON s.user_id = e.uid
          LEFT JOIN users u ON u.id = e.uid
          LEFT JOIN notification_kinds d
                 ON d.kind = CASE WHEN e.k LIKE 'moderation.%' THEN 'moderation' ELSE e.k END
    ), c AS (
        SELECT f.*, array_remove(ARRAY[
                   CASE WHEN NOT f.disabled AND f.email_open
                         AND coalesce((f.prefs ->> 'email')::boolean, true)
                         AND coalesce((f.prefs -> 'kinds' -> f.key ->> 'email')::boolean,
                                      f.d_email, false)
                         AND NOT coalesce(f.prefs ->> 'digest' = 'daily' AND f.d_digest, false)
                        THEN 'email' END,
                   CASE WHEN NOT f.disabled AND f.push_open
                         AND coalesce((f.prefs ->> 'push')::boolean, true)
                         AND coalesce((f.prefs -> 'kinds' -> f.key ->> 'push')::boolean,
                                      f.d_push, false)
                         AND f.subscribed
                        THEN 'push' END], NULL) AS channels
          FROM f
    ), made AS (
        INSERT INTO notifications
            (user_id, kind, group_key, actor_id, data, source, fold_count, fold_actors, read_at)
        SELECT c.uid, c.k, c.src, c.data ->> 'by', c.data, c.src, 1,
               CASE WHEN c.data ->> 'by' IS NULL THEN '{}'::text[]
                    ELSE ARRAY[c.data ->> 'by'] END,
               CASE WHEN NOT coalesce((c.prefs -> 'kinds' -> c.key ->> 'inapp')::boolean,
                                      c.d_inapp, true)
                    THEN now() END  -- listed, never unread: the user turned it off in-app
          FROM c WHERE c.ev <> 'chat.message'
         ORDER BY c.stream, c."offset"
        ON CONFLICT (source) DO NOTHING
        RETURNING id, source
    )
    INSERT INTO notification_deliveries (user_id, kind, channel, source, notification_id, payload)
    SELECT c.uid, c.k, ch, c.src, made.id, c.data
      FROM c LEFT JOIN made ON made.source = c.src
     CROSS JOIN LATERAL unnest(c.channels) ch
     WHERE c.ev = 'chat.message' OR made.id IS NOT NULL  -- a notification seen before: no more
     ORDER BY c.stream, c."offset", ch
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
