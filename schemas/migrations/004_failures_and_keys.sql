-- Jobs that failed for good (a payload that can never succeed, or a crash), for operators:
-- `bbingest failures` lists them. No payload is kept: it may hold a code or a verifier.
CREATE TABLE job_failures (
    failure_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    job          text NOT NULL,
    job_id       text NOT NULL,
    job_try      integer NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('invalid', 'crashed')),
    reason       text NOT NULL
);

CREATE INDEX job_failures_at ON job_failures (at DESC);
