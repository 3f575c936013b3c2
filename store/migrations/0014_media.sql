-- Photo uploads (issue 16, docs/media.md). One row per accepted upload of one user; its
-- variants (WebP, metadata stripped) are objects of the media store named by their sha256, so
-- two uploads of the same picture share them.
CREATE TABLE media (
    id            text PRIMARY KEY,                 -- m + 32 base32 (unguessable)
    owner_id      text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    source_sha256 text NOT NULL,                    -- of the uploaded bytes: a re-upload is the same media
    format        text NOT NULL CHECK (format IN ('jpeg', 'png', 'webp')),  -- sniffed
    width         integer NOT NULL CHECK (width > 0),   -- of the largest variant
    height        integer NOT NULL CHECK (height > 0),
    variants      jsonb NOT NULL,                   -- [{size, width, height, bytes, sha256}]
    created_at    timestamptz NOT NULL DEFAULT now(),
    attached_at   timestamptz,                      -- first used by a post, listing or profile
    expires_at    timestamptz,                      -- unused until then: the sweeper deletes it
    CHECK ((attached_at IS NULL) <> (expires_at IS NULL)),
    UNIQUE (owner_id, source_sha256)
);

-- The sweeper's scan: unused uploads by expiry.
CREATE INDEX media_expiring ON media (expires_at) WHERE attached_at IS NULL;
-- Is an object still referenced by some media (variants @> '[{"sha256": ...}]')?
CREATE INDEX media_variant_objects ON media USING gin (variants jsonb_path_ops);
