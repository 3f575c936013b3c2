-- What Postgres does per post (issue 11, docs/benchmarks.md "Seventh session: Postgres per chat
-- message"): `posts_author` (author_id) duplicates `posts_author_recent` (author_id,
-- created_at, id WHERE removed_at IS NULL, migration 0013) for every query that reads posts by
-- author: each of them (the following feed, a profile's post count, media in use) also asks
-- `removed_at IS NULL`, and the foreign key the plain index once served went in 0029. One
-- btree insert, one WAL record and two buffer visits less per post (bench.pg_batch_cost
-- --kind post: 12.40 -> 11.39 WAL records a post).
DROP INDEX posts_author;

-- The notification triggers of stream_events (0027) cost every batch that writes events, chat
-- and posts included, two set-ups: the row trigger's WHEN clause (read and compiled once per
-- statement before any row is tested) and the statement trigger's plpgsql call. The row
-- trigger served only the three kinds that fold a burst into one unread head; they now run
-- from the statement trigger, one call each in (stream, offset) order, before the set-based
-- rest, as the row trigger ran before it. A batch of room or feed events still leaves at the
-- function's first check.
CREATE FUNCTION hl_notify_fold(p_stream text, p_offset bigint, p_data jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    uid      text := substr(p_stream, 6);
    src      text := p_stream || '@' || p_offset;
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
    k := coalesce(p_data ->> 'kind', 'notification');
    actor := p_data ->> 'by';
    grp := CASE
        WHEN k IN ('post.liked', 'comment.created') THEN k || ':' || coalesce(p_data ->> 'post_id', '')
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
        uid, k, grp, actor, p_data, src, coalesce(prev_n, 0) + 1,
        (CASE WHEN actor IS NULL THEN '{}'::text[] ELSE ARRAY[actor] END
         || array_remove(coalesce(prev_a, '{}'::text[]), actor))[1:3],
        read_now
    )
    ON CONFLICT (source) DO NOTHING
    RETURNING id INTO nid;
    IF nid IS NOT NULL THEN
        INSERT INTO notification_deliveries (user_id, kind, channel, source, notification_id, payload)
        SELECT uid, k, ch, src, nid, p_data FROM unnest(hl_notify_channels(uid, k, prefs)) ch
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN;
END $$;

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

DROP TRIGGER stream_events_notify ON stream_events;
DROP FUNCTION hl_notify();
