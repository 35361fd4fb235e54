-- Webhook delivery (issue 15): where each app's events are POSTed, and one delivery row per
-- event and endpoint.
--
-- Secrets are sealed by worker/crypto.py (the token key, bound to the endpoint's app and URL).
-- During a rotation two are valid: `secret` signs as the current one and `previous_secret`
-- is also signed with until `previous_until`, so receivers can switch at their own pace.
CREATE TABLE webhook_endpoints (
    endpoint_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app                  text NOT NULL,
    url                  text NOT NULL,
    secret_enc           text NOT NULL,
    previous_secret_enc  text,
    previous_until       timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (app, url)
);

-- One row per event × endpoint of its app. `seq` is the event's: a connection's deliveries
-- to one endpoint go out in seq order, the oldest undelivered one first (the head); a
-- dead-lettered row no longer blocks the ones after it. `pending_since` is when the row was
-- queued until its first attempt fails, then when that attempt was made: the give-up clock
-- (a replay restarts it). A claimed row is leased by moving `next_attempt_at` past the
-- send's timeout, so the head of a chain has one sender at a time across replicas.
CREATE TABLE webhook_deliveries (
    delivery_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id      bigint NOT NULL REFERENCES webhook_endpoints ON DELETE CASCADE,
    event_id         uuid NOT NULL REFERENCES events ON DELETE CASCADE,
    seq              bigint NOT NULL,
    connection_id    text,
    attempts         integer NOT NULL DEFAULT 0,
    pending_since    timestamptz NOT NULL DEFAULT now(),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_status      integer,
    last_error       text,
    delivered_at     timestamptz,
    dead_at          timestamptz,
    UNIQUE (endpoint_id, event_id)
);
-- The dispatcher's heads: the oldest pending row of each (endpoint, connection).
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (endpoint_id, connection_id, seq)
    WHERE delivered_at IS NULL AND dead_at IS NULL;
-- `bbingest webhooks failures` and the purge of delivered rows.
CREATE INDEX webhook_deliveries_dead ON webhook_deliveries (dead_at) WHERE dead_at IS NOT NULL;
CREATE INDEX webhook_deliveries_delivered ON webhook_deliveries (delivered_at)
    WHERE delivered_at IS NOT NULL;

-- The fan-out runs in the event's own transaction: an event that commits has its deliveries,
-- one that rolls back has none, and no event is ever missed by a dispatcher that was down.
CREATE FUNCTION webhook_fan_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (endpoint_id, event_id, seq, connection_id)
    SELECT endpoint_id, NEW.event_id, NEW.seq, NEW.connection_id
    FROM webhook_endpoints WHERE app = NEW.app;
    RETURN NULL;
END $$;
CREATE TRIGGER events_webhook_fan_out AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION webhook_fan_out();
