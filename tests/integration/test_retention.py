"""Data kept no longer than needed (issue 13): an unlink leaves nothing naming the person,
cursors end with their run, and connections in error are purged after ERROR_RETENTION_DAYS."""

from __future__ import annotations

import asyncpg
import pytest
from redis.asyncio import Redis

from tests.integration.conftest import Start, connected, ctx
from tests.integration.support import patient_id, run_cli
from worker.constants import QUEUE_BULK
from worker.emulator.config import EmulatorConfig
from worker.jobs.unlink import unlink
from worker.store import sync_runs
from worker.sync.model import FULL

CONFIG = EmulatorConfig(beneficiaries=2, claims_per_beneficiary=3)
# Every table a connection's rows live in, as text: what an operator's query could show.
TABLES = ("connections", "sync_runs", "sync_seen", "pending_revocations", "audit_log")


async def everything_stored(pool: asyncpg.Pool) -> str:
    texts = [
        await pool.fetchval(f"SELECT coalesce(json_agg(t)::text, '') FROM {table} t")
        for table in TABLES
    ]
    return "\n".join(texts)


async def test_runs_keep_no_cursor_once_ended(pool: asyncpg.Pool, start: Start) -> None:
    await connected(start, CONFIG)

    assert await pool.fetchval("SELECT count(*) FROM sync_runs WHERE status = 'succeeded'") == 1
    assert await pool.fetchval("SELECT count(*) FROM sync_runs WHERE cursor_url IS NOT NULL") == 0


async def test_after_an_unlink_no_column_or_cursor_names_the_person(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    _, _, services = await connected(start, CONFIG)
    patient = patient_id(1)
    assert patient in await everything_stored(pool)
    # A resync in flight, its cursor a next link that names the patient.
    async with pool.acquire() as conn:
        run = await sync_runs.start_or_resume(conn, "conn-1", "resync", FULL)
        await conn.execute(
            "UPDATE sync_runs SET cursor_type = 'ExplanationOfBenefit', cursor_url = $2"
            " WHERE run_id = $1",
            run.run_id,
            f"https://bb2.example/v2/fhir/ExplanationOfBenefit/?patient={patient}&startIndex=10",
        )

    assert (await unlink(ctx(services), "conn-1"))["status"] == "revoked"

    assert patient not in await everything_stored(pool)
    row = await pool.fetchrow("SELECT * FROM connections WHERE connection_id = 'conn-1'")
    assert row["patient_id"] is None
    assert row["scopes"] == []
    assert row["consent_expires_at"] is None
    assert row["code_sha256"] is None


async def test_connections_in_error_are_purged_after_the_retention_period(
    env: None,
    pool: asyncpg.Pool,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ERROR_RETENTION_DAYS", "10")
    await pool.execute(
        """INSERT INTO connections (connection_id, status, status_changed_at) VALUES
           ('old-error', 'error', now() - interval '11 days'),
           ('new-error', 'error', now() - interval '9 days'),
           ('old-reauth', 'needs_reauth', now() - interval '31 days'),
           ('old-active', 'active', now() - interval '90 days')"""
    )

    assert await run_cli("purge", "--dry-run") == 0
    shown = capsys.readouterr().out
    assert await redis.zcard(QUEUE_BULK) == 0
    assert await run_cli("purge") == 0

    assert "old-error error since" in shown
    assert "old-reauth needs_reauth since" in shown
    assert "new-error" not in shown
    assert "old-active" not in shown
    assert "2 connections would be unlinked" in shown
    queued = sorted(job.decode() for job in await redis.zrange(QUEUE_BULK, 0, -1))
    assert queued == ["unlink:old-error:purge", "unlink:old-reauth:purge"]
