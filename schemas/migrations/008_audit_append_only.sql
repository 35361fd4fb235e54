-- The audit log is append-only (issue 13): no role, not even the owner, may change or
-- delete a row once written. deploy/postgres/roles.sql also grants it INSERT and SELECT
-- only; this trigger holds for every role. (TRUNCATE, an owner's operation, is not a row
-- change: tests empty the table with it.)
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
