-- Resync: full passes (which also find deletions) and incremental ones (_lastUpdated).

ALTER TABLE sync_runs ADD COLUMN mode text NOT NULL DEFAULT 'full'
    CHECK (mode IN ('full', 'incremental'));
-- An incremental pass asks for resources updated after this instant; kept on the run so
-- that a resumed run asks the same question.
ALTER TABLE sync_runs ADD COLUMN since timestamptz;

-- Ids a full pass has seen, to delete afterwards what BB2 no longer serves. Written with
-- each page (so a resumed run still knows them) and dropped when the run ends.
CREATE TABLE sync_seen (
    run_id         bigint NOT NULL REFERENCES sync_runs ON DELETE CASCADE,
    resource_type  text NOT NULL,
    resource_id    text NOT NULL,
    PRIMARY KEY (run_id, resource_type, resource_id)
);

CREATE INDEX sync_runs_succeeded ON sync_runs (connection_id, mode, started_at DESC)
    WHERE status = 'succeeded';
CREATE INDEX connections_due ON connections (last_synced_at) WHERE status = 'active';
