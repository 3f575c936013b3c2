-- What a shard's batch statement costs (issue 20, docs/benchmarks.md "Sixth session"): its
-- inbox events' notifications made set-based. Before, every inbox event of a batch ran
-- hl_notify() on its own (a plpgsql call and about eight statements: the settings, the
-- account, the kind, the push subscriptions, the notification, its deliveries); now one
-- trigger per statement writes the notifications of all its events in one INSERT and their
-- deliveries in one more, the channels decided by joins with the same rules as
-- hl_notify_channels (0020). The kinds that fold a burst into one unread head (post.liked,
-- comment.created, user.followed) still run hl_notify() row by row: each fold reads the head
-- the previous event of its group left, so their order matters; nothing else folds
-- (their group is their own event), so the set-based rows need no order but their ids'.

-- 1. The folding kinds only, row by row, as before.
DROP TRIGGER stream_events_notify ON stream_events;
CREATE TRIGGER stream_events_notify AFTER INSERT ON stream_events
    FOR EACH ROW
    WHEN (NEW.stream LIKE 'user:%' AND NEW.ev = 'notification'
          AND NEW.data ->> 'kind' IN ('post.liked', 'comment.created', 'user.followed'))
    EXECUTE FUNCTION hl_notify();

-- 2. Every other inbox event that notifies (the rest of 0025's WHEN), per statement.
-- A statement of feed or room events only (the chat and post hot paths) returns at the first
-- check.
CREATE FUNCTION hl_notify_batch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM hl_new_events WHERE stream LIKE 'user:%') THEN
        RETURN NULL;
    END IF;
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
               EXISTS (SELECT 1 FROM push_subscriptions p WHERE p.user_id = e.uid) AS subscribed,
               CASE WHEN e.k LIKE 'moderation.%' THEN 'moderation' ELSE e.k END AS key
          FROM e
          LEFT JOIN notification_settings s ON s.user_id = e.uid
          LEFT JOIN users u ON u.id = e.uid
          LEFT JOIN notification_kinds d
                 ON d.kind = CASE WHEN e.k LIKE 'moderation.%' THEN 'moderation' ELSE e.k END
    ), c AS (
        SELECT f.*, array_remove(ARRAY[
                   CASE WHEN NOT f.disabled
                         AND coalesce((f.prefs ->> 'email')::boolean, true)
                         AND coalesce((f.prefs -> 'kinds' -> f.key ->> 'email')::boolean,
                                      f.d_email, false)
                         AND NOT coalesce(f.prefs ->> 'digest' = 'daily' AND f.d_digest, false)
                        THEN 'email' END,
                   CASE WHEN NOT f.disabled
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

CREATE TRIGGER stream_events_notify_batch AFTER INSERT ON stream_events
    REFERENCING NEW TABLE AS hl_new_events
    FOR EACH STATEMENT EXECUTE FUNCTION hl_notify_batch();
