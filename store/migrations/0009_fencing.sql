-- Fencing tokens (issue 13, rule 2): every batch a shard commits checks, inside its own
-- statement, that the placement version it believes is still the one in force, holding a share
-- lock on its shard's row until it commits. A placement change updates every row (waiting for
-- the batches in flight), so a stale owner's later batch fails with SQLSTATE HLF01 and writes
-- nothing; the shard reloads the table and its callers re-route (`moved`).
CREATE TABLE shard_fences (
    shard   text PRIMARY KEY,
    version bigint NOT NULL
);
INSERT INTO shard_fences (shard, version)
SELECT unnest(shards), version FROM placement WHERE id = 1;

CREATE FUNCTION hl_fence(p_shard text, p_version bigint) RETURNS integer
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM shard_fences WHERE shard = p_shard AND version = p_version FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'shard % is fenced: placement version % is no longer in force',
            p_shard, p_version USING ERRCODE = 'HLF01';
    END IF;
    RETURN 1;
END
$$;
