-- Connection lifecycle: when the status last changed (dormant accounts are purged after a
-- retention period), and revocations still owed to CMS after an unlink.

ALTER TABLE connections ADD COLUMN status_changed_at timestamptz NOT NULL DEFAULT now();

-- An unlink deletes the data at once; the call to CMS that ends the grant may have to
-- wait for BB2. Until it succeeds, the (encrypted) refresh token waits here, and nowhere else.
CREATE TABLE pending_revocations (
    connection_id      text PRIMARY KEY,
    refresh_token_enc  text NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    attempts           integer NOT NULL DEFAULT 0,
    last_error         text
);
