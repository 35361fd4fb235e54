-- Refresh without a database lock across HTTP (issue 14, point 5).
--
-- A refresh used to hold its connection row FOR UPDATE, and a pooled connection, across the
-- request to CMS and its budget wait (minutes in a 429 cool-down). Refreshes of a connection
-- are now serialised by a renewed, fenced Redis lock (worker/jobs/refresh_lock.py), and the
-- new tokens are written with a compare-and-swap on this counter: ciphertexts cannot be
-- compared (each encryption draws a new nonce). Every write of new tokens moves it on: a
-- refresh, a grant stored by a code exchange, an unlink dropping the tokens.
ALTER TABLE connections ADD COLUMN token_generation bigint NOT NULL DEFAULT 0;
