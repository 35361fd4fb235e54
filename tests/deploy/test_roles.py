"""deploy/postgres/roles.sql on the real local Postgres: each role can do its job and no
more, and the audit log is append-only (migration 008) for every role, the owner included.

Runs in a scratch database of its own (``<test database>_roles_<pid>``, so that two test
runs on one server never share it), dropped afterwards; the
roles are cluster-wide and the file is idempotent, so a second run finds them in place.
Roles are taken with SET ROLE, so no password or pg_hba entry is needed.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from tests.integration.conftest import DATABASE_URL
from worker.status import load_status
from worker.store import audit, connections, unlinks
from worker.store.db import init_connection
from worker.store.migrate import migrate

ROLES_SQL = Path(__file__).resolve().parents[2] / "deploy" / "postgres" / "roles.sql"


def _scratch_dsn() -> tuple[str, str]:
    parts = urlsplit(DATABASE_URL)
    name = f"{parts.path.lstrip('/')}_roles_{os.getpid()}"
    return name, urlunsplit(parts._replace(path="/" + name))


@pytest.fixture
async def roles_db() -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection on a fresh database: roles.sql, migrations as the owner, and
    roles.sql again (as the deployment runs them)."""
    name, dsn = _scratch_dsn()
    admin = await asyncpg.connect(DATABASE_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
        conn = await asyncpg.connect(dsn)
        try:
            await init_connection(conn)
            await conn.execute(ROLES_SQL.read_text(encoding="utf-8"))
            await conn.execute("SET ROLE bbingest_owner")
            await migrate(conn)
            await conn.execute("RESET ROLE")
            await conn.execute(ROLES_SQL.read_text(encoding="utf-8"))
            await conn.execute("INSERT INTO connections (connection_id) VALUES ('c1')")
            await conn.execute(
                "INSERT INTO audit_log (connection_id, event) VALUES ('c1', 'authorized')"
            )
            yield conn
        finally:
            await conn.close()
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _as(conn: asyncpg.Connection, role: str, sql: str) -> None:
    """Run ``sql`` as ``role`` in a transaction that is rolled back."""
    transaction = conn.transaction()
    await transaction.start()
    try:
        await conn.execute(f"SET LOCAL ROLE {role}")
        await conn.execute(sql)
    finally:
        await transaction.rollback()


ALLOWED = {
    "bbingest_worker": [
        "SELECT * FROM connections",
        "UPDATE connections SET status = 'active'",
        "INSERT INTO connections (connection_id) VALUES ('c2')",
        "DELETE FROM fhir_resources",
        "INSERT INTO audit_log (connection_id, event) VALUES ('c1', 'synced')",
        "SELECT * FROM audit_log",
    ],
    "bbingest_intake": [
        "SELECT connection_id, app, status, refresh_token_enc IS NOT NULL FROM connections",
        "SELECT connection_id, resource_type, count(*) FROM fhir_resources"
        " GROUP BY connection_id, resource_type",
    ],
}
REFUSED = {
    "bbingest_worker": [
        "CREATE TABLE extra (id int)",
        "ALTER TABLE connections ADD COLUMN extra int",
        "DROP TABLE sync_seen",
        "UPDATE audit_log SET event = 'x'",
        "DELETE FROM audit_log",
        "DELETE FROM schema_migrations",
    ],
    "bbingest_intake": [
        "CREATE TABLE extra (id int)",
        "UPDATE connections SET status = 'revoked'",
        "INSERT INTO connections (connection_id) VALUES ('c2')",
        "DELETE FROM connections",
        "SELECT resource FROM fhir_resources",
        "SELECT * FROM audit_log",
        "SELECT * FROM apps",
    ],
    "bbingest_owner": [
        "UPDATE audit_log SET event = 'x'",
        "DELETE FROM audit_log",
    ],
}


@pytest.mark.parametrize(
    ("role", "sql"), [(role, sql) for role, queries in ALLOWED.items() for sql in queries]
)
async def test_each_role_can_do_its_job(roles_db: asyncpg.Connection, role: str, sql: str) -> None:
    await _as(roles_db, role, sql)


@pytest.mark.parametrize(
    ("role", "sql"), [(role, sql) for role, queries in REFUSED.items() for sql in queries]
)
async def test_each_role_can_do_no_more(roles_db: asyncpg.Connection, role: str, sql: str) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await _as(roles_db, role, sql)


async def test_the_tables_belong_to_the_owner(roles_db: asyncpg.Connection) -> None:
    owners = await roles_db.fetch(
        "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"
    )
    assert [row["tableowner"] for row in owners] == ["bbingest_owner"]


async def test_the_intake_role_serves_a_status_read(roles_db: asyncpg.Connection) -> None:
    """What GET /v1/connections/{id} runs (worker.intake.routes), as the intake role."""
    async with roles_db.transaction():
        await roles_db.execute("SET LOCAL ROLE bbingest_intake")
        found = await connections.get(roles_db, "c1")
        (status,) = await load_status(roles_db, "c1")
    assert found is not None
    assert status.as_json()["connection_id"] == "c1"


async def test_the_worker_role_unlinks_and_audits(roles_db: asyncpg.Connection) -> None:
    """An unlink writes connections, resources, runs and the audit log, never updating it."""
    async with roles_db.transaction():
        await roles_db.execute("SET LOCAL ROLE bbingest_worker")
        unlinked = await unlinks.unlink(roles_db, "c1")
        await audit.record(roles_db, "c1", "unlinked")
    assert unlinked is not None
