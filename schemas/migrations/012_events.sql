-- The transactional outbox of issue 15: one row per event, written in the same transaction as
-- the state change it reports, so that a rolled-back change never produces one and a committed
-- change never loses one.
--
-- Two orders matter:
-- * seq (a sequence drawn at insert time) orders the events of one connection: every event of
--   a connection is written while its connections row is locked (worker/store/outbox.py), so
--   the later insert is the later commit. Deliveries of one connection follow seq.
-- * (xid, seq) is the position GET /v1/events pages by. A reader only sees events whose
--   transaction id is below its snapshot's xmin, so every transaction that could still commit
--   an earlier position has finished: a reader never skips an event that committed after a
--   later-numbered one. A long open transaction delays the feed; it never reorders it.
CREATE TABLE events (
    event_id       uuid PRIMARY KEY,
    xid            xid8 NOT NULL DEFAULT pg_current_xact_id(),
    seq            bigint GENERATED ALWAYS AS IDENTITY,
    app            text NOT NULL,
    connection_id  text,
    type           text NOT NULL,
    version        integer NOT NULL,
    data           jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_position ON events (xid, seq);
CREATE INDEX events_connection ON events (connection_id, seq);
CREATE INDEX events_app_created ON events (app, created_at);
