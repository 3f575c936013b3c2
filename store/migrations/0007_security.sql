-- Security (issue 14): two-factor sign-in and idempotency fingerprints.

-- TOTP two-factor (RFC 6238). One row per user who set it up; enabled once a first code
-- checked. `secret` is sealed (models/sealing.py: AES-256-GCM, associated data
-- "totp:<user_id>"), never stored in the clear. `last_step` is the highest time step accepted:
-- a code of that step or an earlier one is refused, so each code works once.
CREATE TABLE user_totp (
    user_id    text PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    secret     text NOT NULL,
    enabled_at timestamptz,
    last_step  bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Ten single-use recovery codes per enabling: only their digests are kept (80 random bits
-- each, so a digest cannot be searched back to its code).
CREATE TABLE user_recovery_codes (
    user_id   text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_hash text NOT NULL,
    used_at   timestamptz,
    PRIMARY KEY (user_id, code_hash)
);

-- Rule 1 with fingerprints: a key reused with other data answers `conflict` instead of the
-- first result. NULL for records written before fingerprints (compared by op only).
ALTER TABLE idempotency ADD COLUMN fingerprint text;
