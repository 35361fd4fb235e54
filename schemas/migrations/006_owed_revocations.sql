-- Owed revocations, one row each: a second one for a connection (a relink's old tokens, a
-- grant dropped after an unlink) no longer overwrites the first. Each row keeps what it
-- takes to end the grant at CMS: /v2/o/revoke/ ends it only with a live ACCESS token.
ALTER TABLE pending_revocations DROP CONSTRAINT pending_revocations_pkey;
ALTER TABLE pending_revocations
    ADD COLUMN revocation_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Encrypted like the connection's tokens, bound to the connection id and kind.
    ADD COLUMN access_token_enc text,
    -- true: end the grant (an unlink); false: revoke these tokens only (a relink's old ones).
    ADD COLUMN end_grant boolean NOT NULL DEFAULT true,
    ADD COLUMN app text,
    ADD COLUMN client_id text,
    -- sha256 of the patient id: enough to find another live connection sharing the grant.
    ADD COLUMN patient_sha256 text,
    -- Times a freshly refreshed access token still got a 500 from /v2/o/revoke/: CMS
    -- failing for real (not a lost answer, not a token rotated away).
    ADD COLUMN grant_refusals integer NOT NULL DEFAULT 0;

UPDATE pending_revocations p
   SET app = c.app, client_id = c.client_id,
       patient_sha256 = encode(sha256(convert_to(c.patient_id, 'UTF8')), 'hex')
  FROM connections c
 WHERE c.connection_id = p.connection_id;

-- A row whose connection is gone was the default app's (the only one before apps).
UPDATE pending_revocations SET app = 'default' WHERE app IS NULL;
ALTER TABLE pending_revocations ALTER COLUMN app SET NOT NULL;

CREATE INDEX pending_revocations_connection ON pending_revocations (connection_id);
