-- Foundation: users and auth, the stream event log, idempotency, the social graph and feed.
-- Ids are opaque text (see models/ids.py). Every geo row carries its H3 cell as text.

CREATE TABLE users (
    id            text PRIMARY KEY,
    email         text NOT NULL,
    email_norm    text NOT NULL UNIQUE,          -- lower(trim(email)): one account per address
    password_hash text NOT NULL,                 -- argon2id
    display_name  text NOT NULL,
    roles         text[] NOT NULL DEFAULT '{user}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    disabled_at   timestamptz
);

-- A refresh-token family is one login; every refresh rotates the token inside the family.
-- Presenting an already-used token (reuse) revokes the whole family.
CREATE TABLE token_families (
    id             text PRIMARY KEY,
    user_id        text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    revoked_reason text
);
CREATE INDEX token_families_user ON token_families (user_id);

CREATE TABLE refresh_tokens (
    token_hash text PRIMARY KEY,                 -- sha256 of the token; the token itself is never stored
    family_id  text NOT NULL REFERENCES token_families(id) ON DELETE CASCADE,
    issued_at  timestamptz NOT NULL DEFAULT now(),
    used_at    timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

-- Streams: every followable stream has an epoch and a monotonically increasing offset.
CREATE TABLE streams (
    name        text PRIMARY KEY,                -- feed:<cell>, room:<id>, user:<id>
    epoch       text NOT NULL,
    last_offset bigint NOT NULL DEFAULT 0
);

-- The per-stream event log that recovery reads from.
CREATE TABLE stream_events (
    stream     text NOT NULL,
    "offset"   bigint NOT NULL,
    ev         text NOT NULL,
    data       jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, "offset")
);

-- Rule 1: a retried mutation returns its first result. Unique per user.
CREATE TABLE idempotency (
    user_id    text NOT NULL,
    key        text NOT NULL,
    op         text NOT NULL,
    result     jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);

CREATE TABLE posts (
    id            text PRIMARY KEY,
    cell          text NOT NULL,
    author_id     text NOT NULL REFERENCES users(id),
    text          text NOT NULL,
    lat           double precision NOT NULL,
    lng           double precision NOT NULL,
    media         jsonb NOT NULL DEFAULT '[]',
    like_count    integer NOT NULL DEFAULT 0 CHECK (like_count >= 0),
    comment_count integer NOT NULL DEFAULT 0 CHECK (comment_count >= 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    removed_at    timestamptz
);
CREATE INDEX posts_cell_recent ON posts (cell, created_at DESC, id DESC);
CREATE INDEX posts_author ON posts (author_id);

CREATE TABLE comments (
    id         text PRIMARY KEY,
    post_id    text NOT NULL REFERENCES posts(id),
    cell       text NOT NULL,
    author_id  text NOT NULL REFERENCES users(id),
    text       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX comments_post ON comments (post_id, created_at);

CREATE TABLE likes (
    post_id    text NOT NULL REFERENCES posts(id),
    user_id    text NOT NULL REFERENCES users(id),
    cell       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (post_id, user_id)
);

CREATE TABLE follows (
    follower_id text NOT NULL REFERENCES users(id),
    followee_id text NOT NULL REFERENCES users(id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (follower_id, followee_id),
    CHECK (follower_id <> followee_id)
);
CREATE INDEX follows_followee ON follows (followee_id);

-- Placement of cells on shards: rendezvous hashing over `shards` plus explicit overrides.
-- One row; `version` grows on every change so stale routers can be told `moved`.
CREATE TABLE placement (
    id        integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    version   bigint NOT NULL,
    shards    text[] NOT NULL,
    overrides jsonb NOT NULL DEFAULT '{}'
);
