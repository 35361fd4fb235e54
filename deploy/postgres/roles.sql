-- Least privilege in Postgres (README, Security): three login roles, one per workload.
--
--   bbingest_owner   owns the tables; only `bbingest migrate` (the migrate Job) uses it.
--   bbingest_worker  the workers and operator commands: reads and writes rows (DML), no DDL;
--                    audit_log is INSERT and SELECT only (migration 008 also refuses
--                    UPDATE and DELETE to every role).
--   bbingest_intake  `bbingest serve`: reads what GET /v1/connections/{id} serves (the
--                    connection row, and only the type and owner of stored resources, never
--                    a resource itself); it writes nothing to Postgres (events go to Redis).
--
-- Run as a superuser (or a role with CREATEROLE) in the service's database, before the
-- first `bbingest migrate` (it creates the roles) and again after every migration (it grants
-- on the tables that exist); safe to run any number of times, e.g.
--     psql "$SUPERUSER_DSN" -v ON_ERROR_STOP=1 -f deploy/postgres/roles.sql
-- Then give each role a password (psql: \password bbingest_worker) and put one DSN per role
-- in the Secret (deploy/kubernetes/configmap.yaml).

DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['bbingest_owner', 'bbingest_worker', 'bbingest_intake'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
            EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE', role_name);
        END IF;
    END LOOP;
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format(
        'GRANT CONNECT ON DATABASE %I TO bbingest_owner, bbingest_worker, bbingest_intake',
        current_database()
    );
END
$$;

-- Only the owner creates objects in the schema.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA public TO bbingest_owner;
GRANT USAGE ON SCHEMA public TO bbingest_worker, bbingest_intake;

-- Tables the owner creates later (each migration): DML for the worker, nothing for the intake.
ALTER DEFAULT PRIVILEGES FOR ROLE bbingest_owner IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO bbingest_worker;
ALTER DEFAULT PRIVILEGES FOR ROLE bbingest_owner IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO bbingest_worker;

-- Tables that exist already (a second run, after migrations).
DO $$
BEGIN
    IF to_regclass('public.connections') IS NULL THEN
        RETURN;  -- before the first migration: the default privileges above apply
    END IF;
    GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO bbingest_worker;
    GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO bbingest_worker;
    REVOKE UPDATE, DELETE ON audit_log FROM bbingest_worker;
    REVOKE INSERT, UPDATE, DELETE ON schema_migrations FROM bbingest_worker;
    GRANT SELECT ON connections TO bbingest_intake;
    GRANT SELECT (connection_id, resource_type) ON fhir_resources TO bbingest_intake;
END
$$;
