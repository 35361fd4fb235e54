-- One row per authorization code (and connection) a job tried to exchange (issue 11). A code lives 60 s at
-- CMS: the row says when its event arrived, when its token request left (a re-run that
-- finds started_at set, and no tokens, knows the code may have died in flight), and how it
-- ended. Only the code's sha256 is kept, never the code.
CREATE TABLE code_exchanges (
    code_sha256    text NOT NULL,
    connection_id  text NOT NULL,
    app            text NOT NULL,
    received_at    timestamptz NOT NULL,
    started_at     timestamptz,
    finished_at    timestamptz,
    outcome        text CHECK (outcome IN
                     ('exchanged', 'expired', 'refused', 'lost_in_flight', 'failed')),
    age_seconds    double precision,
    PRIMARY KEY (connection_id, code_sha256)
);
