"""Migration 010 and ``bbingest partition-resources``: fhir_resources hash-partitioned by
connection_id, every unique key led by connection_id, and the online move of a populated
table while syncs keep writing to it."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from tests.integration.conftest import DATABASE_URL
from tests.integration.support import run_cli
from worker.store import resources
from worker.store.db import init_connection
from worker.store.migrate import load_migrations, migrate
from worker.store.partitioning import PARTITIONS, is_partitioned, move_online
from worker.store.resources import ResourceRow

T0 = datetime(2024, 1, 1, tzinfo=UTC)
EOB = "ExplanationOfBenefit"
BEFORE_010 = [m for m in load_migrations() if m.version < "010"]


def row(rid: str, value: int) -> ResourceRow:
    return ResourceRow(rid, {"resourceType": EOB, "id": rid, "v": value}, T0)


async def test_a_fresh_database_gets_the_partitioned_table(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        assert await is_partitioned(conn)
        parts = await conn.fetchval(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'fhir_resources'::regclass"
        )
        assert parts == PARTITIONS
        # Rows spread over the partitions by connection.
        for n in range(40):
            await conn.execute("INSERT INTO connections (connection_id) VALUES ($1)", f"c{n}")
            big = ResourceRow(
                "a", {"resourceType": EOB, "id": "a", "v": n, "text": "EOB " * 2000}, T0
            )
            await resources.upsert(conn, f"c{n}", EOB, [big])
        used = await conn.fetchval("SELECT count(DISTINCT tableoid) FROM fhir_resources")
        assert used > PARTITIONS // 2
        methods = await conn.fetchval(
            "SELECT array_agg(DISTINCT pg_column_compression(resource)) FROM fhir_resources"
        )
        assert methods == [await conn.fetchval("SELECT fhir_resources_compression()")]


GLOBAL_TABLES = {"events", "webhook_deliveries"}


async def test_every_unique_key_is_led_by_connection_id(pool: asyncpg.Pool) -> None:
    """What Citus needs to shard each per-connection table on connection_id unchanged."""
    keys = await pool.fetch(
        """SELECT i.indrelid::regclass::text AS tbl, a.attname AS lead
           FROM pg_index i
           JOIN pg_class t ON t.oid = i.indrelid AND t.relnamespace = current_schema()::regnamespace
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
           WHERE i.indisunique AND EXISTS (
               SELECT FROM pg_attribute c WHERE c.attrelid = i.indrelid
               AND c.attname = 'connection_id' AND NOT c.attisdropped)"""
    )
    assert {k["tbl"] for k in keys} >= {"connections", "fhir_resources", "sync_runs", "sync_seen"}
    # The events outbox is one feed of the whole service, read in commit order across
    # connections (GET /v1/events): a Citus deployment keeps it a local (coordinator) table,
    # and its webhook deliveries (filled by a trigger on it) with it.
    per_connection = [k for k in keys if k["tbl"] not in GLOBAL_TABLES]
    assert [k["tbl"] for k in per_connection if k["lead"] != "connection_id"] == []


@pytest.fixture
async def old_schema(migrated: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to a schema of its own, migrated up to 009 only (a deployment from
    before partitioning); dropped afterwards."""
    name = f"pre010_{random.randrange(10**9)}"
    admin = await asyncpg.connect(DATABASE_URL)
    await admin.execute(f"CREATE SCHEMA {name}")
    conn = await asyncpg.connect(DATABASE_URL, server_settings={"search_path": name})
    await init_connection(conn)
    try:
        await migrate(conn, BEFORE_010)
        yield conn
    finally:
        await conn.close()
        await admin.execute(f"DROP SCHEMA {name} CASCADE")
        await admin.close()


async def test_a_populated_table_is_left_for_the_online_move(
    old_schema: asyncpg.Connection,
) -> None:
    conn = old_schema
    await conn.execute("INSERT INTO connections (connection_id) VALUES ('c1')")
    await resources.upsert(conn, "c1", EOB, [row("a", 1)])
    notices: list[str] = []
    conn.add_log_listener(lambda _c, message: notices.append(str(message)))
    assert "010_partitioned_resources" in await migrate(conn)  # later ones may follow
    assert not await is_partitioned(conn)
    assert any("bbingest partition-resources" in n for n in notices)
    # The store works on the old table as before, sync_seen included.
    await resources.upsert(conn, "c1", EOB, [row("a", 2), row("b", 1)])
    assert await conn.fetchval("SELECT count(*) FROM fhir_resources") == 2


async def test_the_online_move_keeps_every_write_made_while_it_runs(
    old_schema: asyncpg.Connection,
) -> None:
    conn = old_schema
    schema = await conn.fetchval("SELECT current_schema()")
    ids = [f"c{n}" for n in range(6)]
    await conn.executemany(
        "INSERT INTO connections (connection_id) VALUES ($1)", [(i,) for i in ids]
    )
    expected: dict[tuple[str, str], int] = {}
    for cid in ids:
        await resources.upsert(conn, cid, EOB, [row(f"r{n}", 0) for n in range(30)])
        expected.update({(cid, f"r{n}"): 0 for n in range(30)})
    await migrate(conn)

    writer = await asyncpg.connect(DATABASE_URL, server_settings={"search_path": schema})
    await init_connection(writer)
    moved = asyncio.Event()
    rng = random.Random(16)

    async def write_meanwhile() -> int:
        """Insert, update and delete, one committed change at a time, until after the move."""
        for step in itertools.count():
            cid, rid = rng.choice(ids), f"r{rng.randrange(40)}"
            if rng.random() < 0.25:
                await writer.execute(
                    "DELETE FROM fhir_resources WHERE connection_id = $1 AND resource_id = $2",
                    cid,
                    rid,
                )
                expected.pop((cid, rid), None)
            else:
                async with writer.transaction():
                    await resources.upsert(writer, cid, EOB, [row(rid, step + 1)])
                expected[(cid, rid)] = step + 1
            if moved.is_set() and step > 50:
                return step
            await asyncio.sleep(0)
        raise AssertionError("unreachable")

    task = asyncio.create_task(write_meanwhile())
    try:
        copied = await move_online(conn, batch=7)
        moved.set()
        steps = await task
    finally:
        await writer.close()
    assert copied is not None
    assert copied > 0
    assert steps > 50
    assert await is_partitioned(conn)
    stored = await conn.fetch("SELECT connection_id, resource_id, resource FROM fhir_resources")
    assert {(r["connection_id"], r["resource_id"]): r["resource"]["v"] for r in stored} == expected
    assert await conn.fetchval("SELECT to_regclass('fhir_resources_unpartitioned') IS NOT NULL")
    assert await move_online(conn) is None  # a second run has nothing to do


async def test_migrate_says_so_and_the_command_moves_the_table(
    old_schema: asyncpg.Connection,
    env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``bbingest migrate`` names the move; ``bbingest partition-resources`` makes it."""
    conn = old_schema
    schema = await conn.fetchval("SELECT current_schema()")
    monkeypatch.setenv("DATABASE_URL", f"{DATABASE_URL}?search_path={schema}")
    await conn.execute("INSERT INTO connections (connection_id) VALUES ('c1')")
    await resources.upsert(conn, "c1", EOB, [row("a", 1), row("b", 2)])
    role = f"{schema}_reader"  # a role is cluster-wide: named after the test's own schema
    await conn.execute(f"CREATE ROLE {role}")
    try:
        await conn.execute(f"GRANT SELECT, INSERT ON fhir_resources TO {role}")
        assert await run_cli("migrate") == 0
        assert "bbingest partition-resources" in capsys.readouterr().out
        assert await run_cli("partition-resources", "--batch", "1") == 0
        grants = await conn.fetchval(
            "SELECT array_agg(privilege_type::text ORDER BY privilege_type)"
            " FROM pg_class c, aclexplode(c.relacl) a"
            " WHERE c.oid = 'fhir_resources'::regclass AND a.grantee = $1::regrole",
            role,
        )
        assert grants == ["INSERT", "SELECT"]  # the application role keeps its grants
    finally:
        await conn.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {role}")
        await conn.execute(f"DROP ROLE {role}")
    out = capsys.readouterr().out
    assert "copied 2 rows" in out
    assert "fhir_resources_unpartitioned" in out
    assert await is_partitioned(conn)
    assert await conn.fetchval("SELECT count(*) FROM fhir_resources") == 2
    assert await run_cli("partition-resources") == 0
    assert "partitioned already" in capsys.readouterr().out
