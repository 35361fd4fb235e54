-- Several Blue Button apps in one deployment. The BB_* settings define the app named
-- 'default'; every other app is registered here (`bbingest apps add`).
CREATE TABLE apps (
    name               text PRIMARY KEY
                       CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$' AND name <> 'default'),
    environment        text NOT NULL CHECK (environment IN ('sandbox', 'production')),
    base_url           text NOT NULL,
    client_id          text NOT NULL CHECK (length(client_id) BETWEEN 1 AND 256),
    -- Encrypted like the tokens (worker.crypto), bound to the app and client id.
    client_secret_enc  text NOT NULL,
    rate_limit         integer NOT NULL CHECK (rate_limit BETWEEN 1 AND 1000),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- The registrations an app had before its client changed (say, sandbox to production):
-- connections authorized through them keep being served by them, since their tokens are
-- only good with the client that issued them. Removed with the app.
CREATE TABLE app_clients_retired (
    app                text NOT NULL REFERENCES apps ON DELETE CASCADE ON UPDATE CASCADE,
    client_id          text NOT NULL,
    environment        text NOT NULL CHECK (environment IN ('sandbox', 'production')),
    base_url           text NOT NULL,
    client_secret_enc  text NOT NULL,
    rate_limit         integer NOT NULL CHECK (rate_limit BETWEEN 1 AND 1000),
    retired_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app, client_id)
);

-- The client (and so the environment) that issued a connection's tokens. NULL for rows
-- from before apps existed: they belong to the default app's configured client.
ALTER TABLE connections
    ADD COLUMN client_id text,
    ADD COLUMN environment text CHECK (environment IN ('sandbox', 'production'));

CREATE INDEX connections_app ON connections (app, status);
