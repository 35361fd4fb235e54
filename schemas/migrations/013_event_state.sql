-- State the events of issue 15 need to be sent exactly once per transition.
--
-- consent_expiring_sent_at: when connection.consent_expiring was written for the current
-- consent; a re-consent (a new grant) clears it, arming the event again.
ALTER TABLE connections ADD COLUMN consent_expiring_sent_at timestamptz;

-- Apps CMS holds inactive, as the events saw them: a row is inserted with app.paused and
-- deleted with app.resumed, in the same transaction, so each transition is told once however
-- many replicas meet it at once. (The fast shared flag the jobs consult stays in Redis,
-- worker/pauses.py.)
CREATE TABLE app_pauses (
    app        text PRIMARY KEY,
    paused_at  timestamptz NOT NULL DEFAULT now()
);
