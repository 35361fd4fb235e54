import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import orjson
import pytest

from tests.integration.conftest import DATABASE_URL
from worker.crypto import TokenCipher, generate_key
from worker.errors import ConnectionRevoked, DecryptionError
from worker.store import connections, grants, resources, sync_runs
from worker.store import tokens as token_store
from worker.store.grants import Grant
from worker.store.migrate import Migration, load_migrations, migrate
from worker.store.resources import ResourceRow
from worker.store.tokens import Tokens
from worker.sync.model import FULL, Cursor

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def row(rid: str, value: int) -> ResourceRow:
    resource = {
        "resourceType": "ExplanationOfBenefit",
        "id": rid,
        "meta": {"lastUpdated": "x"},
        "v": value,
    }
    return ResourceRow(rid, resource, T0)


async def test_upsert_inserts_updates_and_leaves_unchanged_rows_alone(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await connections.create_pending(conn, "c1", "default")
        first = await resources.upsert(
            conn, "c1", "ExplanationOfBenefit", [row("a", 1), row("b", 1)]
        )
        assert (first.inserted, first.updated, first.unchanged) == (2, 0, 0)
        xmin_b = await conn.fetchval(
            "SELECT xmin::text FROM fhir_resources WHERE resource_id = 'b'"
        )
        second = await resources.upsert(
            conn, "c1", "ExplanationOfBenefit", [row("a", 2), row("b", 1)]
        )
        assert (second.inserted, second.updated, second.unchanged) == (0, 1, 1)
        assert (
            await conn.fetchval("SELECT xmin::text FROM fhir_resources WHERE resource_id = 'b'")
            == xmin_b
        )  # the unchanged row was not rewritten
        stored = await conn.fetchval("SELECT resource FROM fhir_resources WHERE resource_id = 'a'")
        assert stored["v"] == 2


async def test_duplicate_ids_in_one_batch_keep_the_last(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await connections.create_pending(conn, "c1", "default")
        counts = await resources.upsert(conn, "c1", "Coverage", [row("a", 1), row("a", 2)])
        assert counts.inserted == 1
        assert (await conn.fetchval("SELECT resource FROM fhir_resources"))["v"] == 2


async def test_tokens_are_encrypted_at_rest(pool: asyncpg.Pool, encryption_key: str) -> None:
    cipher = TokenCipher.from_setting(encryption_key)
    tokens = Tokens("access-secret", "refresh-secret", T0)
    grant = Grant(
        "default", "client", "sandbox", tokens, "-1", ("patient/Coverage.read",), None, "h"
    )
    async with pool.acquire() as conn:
        await connections.create_pending(conn, "c1", "default")
        assert await grants.save_grant(conn, cipher, "c1", grant, seen_at=T0)
        dump = await conn.fetchval("SELECT row_to_json(c)::text FROM connections c")
        assert "access-secret" not in dump
        assert "refresh-secret" not in dump
        # A stored grant moves the token generation on (refreshes swap against it).
        assert await token_store.load_tokens(conn, cipher, "c1") == replace(tokens, generation=1)
        with pytest.raises(DecryptionError):
            await token_store.load_tokens(conn, TokenCipher.from_setting(generate_key()), "c1")
        # Bound to their row and column: copied onto another row, or swapped, they fail.
        await connections.create_pending(conn, "c2", "default")
        await conn.execute(
            "UPDATE connections SET (access_token_enc, refresh_token_enc) ="
            " (SELECT access_token_enc, refresh_token_enc FROM connections"
            " WHERE connection_id = 'c1') WHERE connection_id = 'c2'"
        )
        with pytest.raises(DecryptionError):
            await token_store.load_tokens(conn, cipher, "c2")
        await conn.execute(
            "UPDATE connections SET access_token_enc = refresh_token_enc,"
            " refresh_token_enc = access_token_enc WHERE connection_id = 'c1'"
        )
        with pytest.raises(DecryptionError):
            await token_store.load_tokens(conn, cipher, "c1")


async def test_revoked_connection_refuses_writes(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await connections.create_pending(conn, "c1", "default")
        await conn.execute("UPDATE connections SET status = 'revoked'")
        with pytest.raises(ConnectionRevoked):
            await connections.lock_live(conn, "c1")
        await connections.set_status(conn, "c1", "active")
        assert (await connections.get(conn, "c1")).status == "revoked"  # type: ignore[union-attr]


async def test_migrations_are_recorded_and_safe_to_rerun(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        assert await migrate(conn) == []
        versions = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in versions] == [m.version for m in load_migrations()]


async def test_concurrent_migrations_apply_once(migrated: str, tmp_path: Path) -> None:
    schema = f"mig_{id(tmp_path)}"
    admin = await asyncpg.connect(DATABASE_URL)
    await admin.execute(f"CREATE SCHEMA {schema}")
    try:
        plan = [Migration("900_probe", f"CREATE TABLE {schema}.probe (x int)")]
        conns = [await asyncpg.connect(DATABASE_URL) for _ in range(3)]
        try:
            results = await asyncio.gather(*(migrate(c, plan) for c in conns))
        finally:
            for c in conns:
                await c.close()
        assert sorted(len(r) for r in results) == [0, 0, 1]
    finally:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.execute("DELETE FROM schema_migrations WHERE version = '900_probe'")
        await admin.close()


async def test_a_full_pass_deletes_unseen_rows_only_of_the_types_it_read(
    pool: asyncpg.Pool,
) -> None:
    await pool.execute("INSERT INTO connections (connection_id, app) VALUES ('c', 'default')")
    async with pool.acquire() as conn:
        for kind in ("Patient", "ExplanationOfBenefit"):
            rows = [ResourceRow(f"{kind}-old", {"id": f"{kind}-old"}, datetime.now(UTC))]
            await resources.upsert(conn, "c", kind, rows)
        run = await sync_runs.start_or_resume(conn, "c", "resync", FULL)
        await sync_runs.skip_type(conn, "c", run.run_id, "Patient", None)  # withheld: 403
        assert await sync_runs.delete_unseen(conn, run.run_id, "c") == 1
    left = await pool.fetch("SELECT resource_type FROM fhir_resources")
    assert [row["resource_type"] for row in left] == ["Patient"]


async def test_a_run_closes_once_and_takes_no_page_once_closed(pool: asyncpg.Pool) -> None:
    """A pass that did not close its run (another did) must not delete; a page written
    after the close leaves no seen ids (nothing would delete them) and no cursor."""
    await pool.execute("INSERT INTO connections (connection_id, app) VALUES ('c', 'default')")
    async with pool.acquire() as conn:
        run = await sync_runs.start_or_resume(conn, "c", "resync", FULL)
        assert await sync_runs.finish(conn, "c", run.run_id) == sync_runs.Changes(0, 0)
        assert await sync_runs.finish(conn, "c", run.run_id) is None
        await sync_runs.remember_seen(conn, "c", run.run_id, "Patient", ["p"])
        cursor = Cursor("ExplanationOfBenefit", "https://bb2/next?patient=-1")
        await sync_runs.record_page(conn, "c", run.run_id, resources.UpsertCounts(1, 0, 0), cursor)
        await sync_runs.fail_running(conn, "c", "unlinked")
    assert await pool.fetchval("SELECT count(*) FROM sync_seen") == 0
    closed = await pool.fetchrow("SELECT status, pages, cursor_url FROM sync_runs")
    assert tuple(closed) == ("succeeded", 0, None)


async def test_a_stored_resource_is_the_json_bb2_sent(pool: asyncpg.Pool) -> None:
    """Sent once as canonical JSON (sorted keys), stored as jsonb: the same document."""
    raw = b'{"resourceType":"Coverage","id":"part-a","z":[1.5,{"b":null,"a":"\\u00e9"}],"meta":{}}'
    resource = orjson.loads(raw)
    async with pool.acquire() as conn:
        await connections.create_pending(conn, "c1", "default")
        await resources.upsert(conn, "c1", "Coverage", [ResourceRow("part-a", resource, T0)])
        assert await conn.fetchval(
            "SELECT resource = $1::text::jsonb FROM fhir_resources", raw.decode()
        )
        assert await conn.fetchval("SELECT resource FROM fhir_resources") == resource


async def test_the_same_id_under_two_types_is_two_resources(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await connections.create_pending(conn, "c1", "default")
        await resources.upsert(conn, "c1", "Coverage", [row("a", 1)])
        counts = await resources.upsert(conn, "c1", "ExplanationOfBenefit", [row("a", 1)])
        assert (counts.inserted, counts.updated, counts.unchanged) == (1, 0, 0)
        again = await resources.upsert(conn, "c1", "Coverage", [row("a", 2), row("b", 1)])
        assert (again.inserted, again.updated, again.unchanged) == (1, 1, 0)


async def test_a_page_of_unchanged_resources_writes_nothing(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await connections.create_pending(conn, "c1", "default")
        page = [row(f"r{n}", n) for n in range(10)]
        await resources.upsert(conn, "c1", "ExplanationOfBenefit", page)
        before = await conn.fetch("SELECT resource_id, xmin::text FROM fhir_resources ORDER BY 1")
        # Duplicates within the page too: the last of each id counts.
        counts = await resources.upsert(conn, "c1", "ExplanationOfBenefit", [row("r0", 5), *page])
        assert (counts.inserted, counts.updated, counts.unchanged) == (0, 0, 10)
        after = await conn.fetch("SELECT resource_id, xmin::text FROM fhir_resources ORDER BY 1")
        assert after == before
