-- Shards of their own (issue 13: a hot cell pinned to a shard): rendezvous hashing places no
-- key on a dedicated shard; it owns only the keys the table's overrides give it.
ALTER TABLE placement ADD COLUMN dedicated text[] NOT NULL DEFAULT '{}';
