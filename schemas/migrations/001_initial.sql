-- Connections, stored FHIR resources, sync runs and an audit trail without personal data.

CREATE TABLE connections (
    connection_id        text PRIMARY KEY CHECK (length(connection_id) BETWEEN 1 AND 128),
    -- Room for several BB2 apps in one deployment; 'default' is the BB_* settings' app.
    app                  text NOT NULL DEFAULT 'default',
    patient_id           text,
    status               text NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'active', 'needs_reauth', 'revoked', 'error')),
    scopes               text[] NOT NULL DEFAULT '{}',
    -- Tokens only ever in encrypted form (worker.crypto), bound to this row.
    access_token_enc     text,
    refresh_token_enc    text,
    access_expires_at    timestamptz,
    consent_expires_at   timestamptz,
    -- sha256 of the last authorization code exchanged: a redelivered connect job
    -- must not spend a single-use code twice.
    code_sha256          text,
    last_synced_at       timestamptz,
    last_error           text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX connections_status ON connections (status);

CREATE TABLE fhir_resources (
    connection_id  text NOT NULL REFERENCES connections ON DELETE CASCADE,
    resource_type  text NOT NULL,
    resource_id    text NOT NULL,
    resource       jsonb NOT NULL,
    -- sha256 of the canonical JSON: unchanged resources are never rewritten.
    content_hash   bytea NOT NULL,
    last_updated   timestamptz NOT NULL,
    fetched_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connection_id, resource_type, resource_id)
);

CREATE TABLE sync_runs (
    run_id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    connection_id        text NOT NULL REFERENCES connections ON DELETE CASCADE,
    kind                 text NOT NULL CHECK (kind IN ('connect', 'resync')),
    status               text NOT NULL DEFAULT 'running'
                         CHECK (status IN ('running', 'succeeded', 'failed')),
    started_at           timestamptz NOT NULL DEFAULT now(),
    finished_at          timestamptz,
    -- Where a re-run resumes: the resource type in progress and its next page
    -- (NULL url: that type's first page).
    cursor_type          text,
    cursor_url           text,
    pages                integer NOT NULL DEFAULT 0,
    inserted             integer NOT NULL DEFAULT 0,
    updated              integer NOT NULL DEFAULT 0,
    unchanged            integer NOT NULL DEFAULT 0,
    skipped_types        text[] NOT NULL DEFAULT '{}',
    error                text
);

-- At most one sync in flight per connection; a re-run resumes it.
CREATE UNIQUE INDEX sync_runs_one_running ON sync_runs (connection_id) WHERE status = 'running';
CREATE INDEX sync_runs_connection ON sync_runs (connection_id, started_at DESC);

-- What happened to a connection, for operators and auditors. No tokens, codes or
-- personal data: ids, events and counts only. Not tied to connections by a foreign
-- key, so that the record of a deletion outlives what was deleted.
CREATE TABLE audit_log (
    audit_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT now(),
    connection_id  text NOT NULL,
    event          text NOT NULL,
    detail         jsonb NOT NULL DEFAULT '{}'
);

CREATE INDEX audit_log_connection ON audit_log (connection_id, at);
