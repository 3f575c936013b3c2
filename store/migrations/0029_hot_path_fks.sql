-- The two rows the real-time path appends most, a chat message and a post, no longer check a
-- foreign key to users (issue 11, docs/benchmarks.md "Sixth session"). Each check was a
-- `SELECT 1 FROM users WHERE id = $1 FOR KEY SHARE` per row inside the shard's batch
-- statement: a tuple lock on the author's users row, so one more WAL record (Heap/LOCK) and
-- one more dirtied page per message, and a lock every later message of that user waits on
-- (about 13 % of the WAL records of a chat run). What the key guarded cannot happen here:
-- users are never deleted (an account is disabled or suspended, its row stays), and the
-- writer of both rows is the signed-in user of the session, whose row exists (services
-- check the token and the user before any command leaves the gateway). Every other
-- reference to users keeps its key.
ALTER TABLE messages DROP CONSTRAINT messages_sender_id_fkey;
ALTER TABLE posts DROP CONSTRAINT posts_author_id_fkey;
