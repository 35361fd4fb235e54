-- Ready for more than one Postgres (issue 16, point 6; README "Storage at scale").
--
-- 1. Every unique key is led by connection_id, so that a distributed Postgres (Citus) can
--    shard every per-connection table on it unchanged. run_id and audit_id stay unique by
--    their identity; a plain index keeps the lookups by run_id fast.
-- 2. Stored documents are compressed with lz4 where the server has it: measured by
--    tests/bench/store.py, Postgres spends about 40% less CPU storing a 20 KB EOB with lz4
--    than with pglz (0.33 against 0.54 ms), for about 3% more disk.
-- 3. fhir_resources is hash-partitioned by connection_id (16 partitions) when it is empty,
--    that is on a fresh deployment. A populated table is left as it is: rewriting it here
--    would lock it for as long as the copy takes. `bbingest partition-resources` moves it
--    online with the functions below (a copy in batches, then a short lock to swap names).

-- sync_seen rows live only while a full pass runs; they now name their connection.
ALTER TABLE sync_seen ADD COLUMN connection_id text;
UPDATE sync_seen s SET connection_id = r.connection_id FROM sync_runs r WHERE r.run_id = s.run_id;
ALTER TABLE sync_seen ALTER COLUMN connection_id SET NOT NULL;
ALTER TABLE sync_seen DROP CONSTRAINT sync_seen_run_id_fkey;
ALTER TABLE sync_seen DROP CONSTRAINT sync_seen_pkey;

ALTER TABLE sync_runs DROP CONSTRAINT sync_runs_pkey;
ALTER TABLE sync_runs ADD PRIMARY KEY (connection_id, run_id);
CREATE INDEX sync_runs_run ON sync_runs (run_id);

ALTER TABLE sync_seen ADD PRIMARY KEY (connection_id, run_id, resource_type, resource_id);
ALTER TABLE sync_seen ADD FOREIGN KEY (connection_id, run_id)
    REFERENCES sync_runs (connection_id, run_id) ON DELETE CASCADE;

ALTER TABLE audit_log DROP CONSTRAINT audit_log_pkey;
ALTER TABLE audit_log ADD PRIMARY KEY (connection_id, audit_id);

-- Any other table with a connection_id column (pending_revocations, say, keyed by its own
-- identity) gets its primary key led by connection_id too; another unique key not led by it
-- stops the migration, to be redesigned rather than silently left unshardable.
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT c.conrelid::regclass AS tbl, c.conname,
               (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY k.ord)
                  FROM unnest(c.conkey) WITH ORDINALITY k(attnum, ord)
                  JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum) AS cols
          FROM pg_constraint c
          JOIN pg_attribute lead ON lead.attrelid = c.conrelid AND lead.attnum = c.conkey[1]
         WHERE c.contype = 'p' AND c.connamespace = current_schema()::regnamespace
           AND lead.attname <> 'connection_id'
           AND EXISTS (SELECT FROM pg_attribute x WHERE x.attrelid = c.conrelid
                       AND x.attname = 'connection_id' AND NOT x.attisdropped)
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', t.tbl, t.conname);
        EXECUTE format('ALTER TABLE %s ADD PRIMARY KEY (connection_id, %s)', t.tbl, t.cols);
    END LOOP;
    FOR t IN
        SELECT i.indexrelid::regclass AS idx
          FROM pg_index i
          JOIN pg_class r ON r.oid = i.indrelid AND r.relnamespace = current_schema()::regnamespace
          JOIN pg_attribute lead ON lead.attrelid = i.indrelid AND lead.attnum = i.indkey[0]
         WHERE i.indisunique AND lead.attname <> 'connection_id'
           AND EXISTS (SELECT FROM pg_attribute x WHERE x.attrelid = i.indrelid
                       AND x.attname = 'connection_id' AND NOT x.attisdropped)
    LOOP
        RAISE EXCEPTION 'unique index % is not led by connection_id: Citus could not shard it', t.idx;
    END LOOP;
END $$;

-- Creates `name` with the columns, defaults, checks, indexes and grants of fhir_resources,
-- hash-partitioned by connection_id into `name`_p00, _p01, ... with `method` compression.
CREATE FUNCTION fhir_resources_create_partitioned(name text, partitions int, method text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    g record;
BEGIN
    EXECUTE format('CREATE TABLE %I (LIKE fhir_resources INCLUDING ALL)'
                   ' PARTITION BY HASH (connection_id)', name);
    -- Foreign keys are named per table: this one has its final name from the start.
    EXECUTE format('ALTER TABLE %I ADD CONSTRAINT fhir_resources_connection_id_fkey'
                   ' FOREIGN KEY (connection_id) REFERENCES connections ON DELETE CASCADE', name);
    -- Partitions take the compression their parent has when they are created.
    EXECUTE format('ALTER TABLE %I ALTER COLUMN resource SET COMPRESSION %s', name, method);
    -- LIKE copies no privileges: a restricted application role keeps its grants.
    FOR g IN SELECT a.grantee, a.privilege_type FROM pg_class c, aclexplode(c.relacl) a
              WHERE c.oid = 'fhir_resources'::regclass AND a.grantee <> c.relowner LOOP
        EXECUTE format('GRANT %s ON %I TO %s', g.privilege_type, name,
                       CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE g.grantee::regrole::text END);
    END LOOP;
    FOR i IN 0 .. partitions - 1 LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES WITH (MODULUS %s, REMAINDER %s)',
                       name || '_p' || lpad(i::text, 2, '0'), name, partitions, i);
    END LOOP;
END $$;

-- Gives table `name` (made by the function above) the name fhir_resources, with its key and
-- partitions named to match. The caller holds fhir_resources' name free.
CREATE FUNCTION fhir_resources_take_name(name text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    part record;
BEGIN
    EXECUTE format('ALTER TABLE %I RENAME TO fhir_resources', name);
    EXECUTE format('ALTER TABLE fhir_resources RENAME CONSTRAINT %I TO fhir_resources_pkey',
                   name || '_pkey');
    FOR part IN SELECT inhrelid::regclass::text AS old FROM pg_inherits
                 WHERE inhparent = 'fhir_resources'::regclass LOOP
        EXECUTE format('ALTER TABLE %I RENAME TO %I', part.old,
                       'fhir_resources' || substr(part.old, length(name) + 1));
    END LOOP;
END $$;

-- lz4 when this server was built with it, else pglz.
CREATE FUNCTION fhir_resources_compression() RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('default_toast_compression', 'lz4', true);
    RETURN 'lz4';
EXCEPTION WHEN invalid_parameter_value THEN
    RETURN 'pglz';
END $$;

DO $$
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = 'fhir_resources'::regclass) = 'p' THEN
        RETURN;
    END IF;
    EXECUTE format('ALTER TABLE fhir_resources ALTER COLUMN resource SET COMPRESSION %s',
                   fhir_resources_compression());
    IF EXISTS (SELECT FROM fhir_resources) THEN
        RAISE NOTICE 'fhir_resources holds rows, so it stays unpartitioned for now: move it'
                     ' online with `bbingest partition-resources` (README, Storage at scale)';
        RETURN;
    END IF;
    PERFORM fhir_resources_create_partitioned('fhir_resources_next', 16,
                                              fhir_resources_compression());
    DROP TABLE fhir_resources;
    PERFORM fhir_resources_take_name('fhir_resources_next');
END $$;

-- The online move (`bbingest partition-resources`). Start: create the partitioned table and
-- mirror every later write into it. Copy: batches in key order, each row share-locked while
-- it is copied, so a concurrent update or delete either waits for the batch or is mirrored
-- after it. Finish: under a short exclusive lock, drop the mirror and swap the names; the old
-- table stays as fhir_resources_unpartitioned until an operator drops it.
CREATE FUNCTION fhir_resources_mirror() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        DELETE FROM fhir_resources_next WHERE connection_id = OLD.connection_id
            AND resource_type = OLD.resource_type AND resource_id = OLD.resource_id;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO fhir_resources_next SELECT (NEW).*
            ON CONFLICT (connection_id, resource_type, resource_id) DO NOTHING;
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION fhir_resources_move_start(partitions int) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = 'fhir_resources'::regclass) = 'p' THEN
        RETURN false;  -- already partitioned
    END IF;
    IF to_regclass('fhir_resources_next') IS NULL THEN
        PERFORM fhir_resources_create_partitioned('fhir_resources_next', partitions,
                                                  fhir_resources_compression());
        CREATE TRIGGER fhir_resources_mirror AFTER INSERT OR UPDATE OR DELETE ON fhir_resources
            FOR EACH ROW EXECUTE FUNCTION fhir_resources_mirror();
    END IF;
    RETURN true;
END $$;

-- Copies up to `batch` rows after the key (c, t, i); returns how many and the last key.
CREATE FUNCTION fhir_resources_move_batch(
    c text, t text, i text, batch int,
    OUT copied int, OUT last_c text, OUT last_t text, OUT last_i text)
LANGUAGE plpgsql AS $$
BEGIN
    WITH picked AS (
        SELECT * FROM fhir_resources r
         WHERE (r.connection_id, r.resource_type, r.resource_id) > (c, t, i)
         ORDER BY r.connection_id, r.resource_type, r.resource_id
         LIMIT batch FOR SHARE
    ), copied_rows AS (
        INSERT INTO fhir_resources_next SELECT * FROM picked
            ON CONFLICT (connection_id, resource_type, resource_id) DO NOTHING
    )
    SELECT count(*) OVER (), p.connection_id, p.resource_type, p.resource_id
      INTO copied, last_c, last_t, last_i
      FROM picked p
     ORDER BY p.connection_id DESC, p.resource_type DESC, p.resource_id DESC LIMIT 1;
    copied := coalesce(copied, 0);
END $$;

CREATE FUNCTION fhir_resources_move_finish() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE fhir_resources IN ACCESS EXCLUSIVE MODE;
    DROP TRIGGER fhir_resources_mirror ON fhir_resources;
    ALTER TABLE fhir_resources RENAME TO fhir_resources_unpartitioned;
    ALTER TABLE fhir_resources_unpartitioned
        RENAME CONSTRAINT fhir_resources_pkey TO fhir_resources_unpartitioned_pkey;
    PERFORM fhir_resources_take_name('fhir_resources_next');
END $$;
