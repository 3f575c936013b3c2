-- Signup that tells nothing (issue 14): a signup of an address that already has an account
-- still creates an account of its own, with a session, but one that does not claim the
-- address (email_norm NULL): it cannot sign in with the address, is never verified by it,
-- and receives no email; the address's owner is told instead. The unique index stays: one
-- claim per address (NULLs are distinct).
ALTER TABLE users ALTER COLUMN email_norm DROP NOT NULL;
