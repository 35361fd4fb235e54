"""Retention purges and the unlink's audit row: a purge the nightly run queued unlinks only a
connection still due when it runs (a re-consent meanwhile stands, and nothing is told), an
upstream's unlink never collapses into a queued purge or revocation retry, and an unlink
commits or rolls back with the audit row its relink check reads."""

from __future__ import annotations

import asyncpg
import pytest
from redis.asyncio import Redis

from tests.integration.conftest import Start, connected, ctx
from tests.integration.event_checks import emitted
from tests.integration.support import (
    authorized_job,
    bb2_unreachable,
    emulator_post,
    patient_id,
    served_resources,
    stored_resources,
    unlink_rolled_back,
)
from tests.integration.test_resync import expire_access_token
from worker.constants import JOB_MAX_TRIES, QUEUE_BULK
from worker.emulator.config import EmulatorConfig
from worker.emulator.server import RunningEmulator
from worker.jobs.connect import connect
from worker.jobs.nightly import nightly
from worker.jobs.payloads import UnlinkJob
from worker.jobs.queue import enqueue, open_queue
from worker.jobs.resync import resync
from worker.jobs.unlink import unlink
from worker.jobs.worker import run_replica
from worker.local import CLIENT_ID
from worker.runtime.services import Services
from worker.settings import Settings
from worker.store import unlinks

CONFIG = EmulatorConfig(beneficiaries=2, claims_per_beneficiary=5)
# Postgres refuses the unlink's audit row, as a crash at that moment would lose it.
REFUSE_UNLINKED_AUDIT = """
CREATE FUNCTION refuse_unlinked_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.event = 'unlinked' THEN RAISE EXCEPTION 'audit row refused'; END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_unlinked_audit BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION refuse_unlinked_audit();
"""
ALLOW_UNLINKED_AUDIT = """
DROP TRIGGER refuse_unlinked_audit ON audit_log;
DROP FUNCTION refuse_unlinked_audit();
"""


async def dormant(pool: asyncpg.Pool, emulator: RunningEmulator, services: Services) -> None:
    """BBUser00001's consent lapsed (``needs_reauth``) two months ago, past the 30 days of
    DORMANT_RETENTION_DAYS."""
    await emulator_post(emulator.base_url, "/_emulator/grants/lapse", {"patient_id": patient_id(1)})
    await expire_access_token(pool)
    assert (await resync(ctx(services), "conn-1"))["status"] == "needs_reauth"
    await pool.execute("UPDATE connections SET status_changed_at = now() - interval '60 days'")


async def run_nightly(settings: Settings, services: Services) -> None:
    queue = await open_queue(settings.redis_url)
    try:
        await nightly({"services": services, "redis": queue})
    finally:
        await queue.aclose()


async def reconsent(emulator: RunningEmulator, services: Services) -> None:
    """BBUser00001 authorizes the app again: the connect job completes."""
    job = await authorized_job(emulator.base_url, 1)
    assert (await connect(ctx(services), **job.model_dump()))["status"] == "active"


async def unlink_asked_then_worked(settings: Settings) -> str | None:
    """The person asks to unlink conn-1 (queued as the intake queues it), then a replica works
    every lane until they are empty; the job id queued, None if arq dropped it."""
    queue = await open_queue(settings.redis_url)
    try:
        queued = await enqueue(queue, UnlinkJob(connection_id="conn-1"))
    finally:
        await queue.aclose()
    await run_replica(settings, burst=True)
    return queued


async def assert_unlinked(pool: asyncpg.Pool, emulator: RunningEmulator) -> None:
    assert await pool.fetchval("SELECT status FROM connections") == "revoked"
    assert await pool.fetchval("SELECT count(*) FROM fhir_resources") == 0
    assert emulator.state.grant(CLIENT_ID, patient_id(1)) is None  # ended at CMS


async def revoked_events(pool: asyncpg.Pool) -> int:
    return sum(e["type"] == "connection.revoked" for e in await emitted(pool, "conn-1"))


async def unlinked_rows(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM audit_log WHERE event = 'unlinked'"))


async def test_a_reconsent_after_the_nightly_run_queued_its_purge_stands(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, settings, services = await connected(start, CONFIG)
    await dormant(pool, emulator, services)
    await run_nightly(settings, services)
    assert await redis.zrange(QUEUE_BULK, 0, -1) == [b"unlink:conn-1:purge"]
    await reconsent(emulator, services)  # before the bulk lane reaches the purge
    await run_replica(settings, burst=True)
    row = await pool.fetchrow("SELECT status, refresh_token_enc, patient_id FROM connections")
    assert row["status"] == "active"
    assert row["refresh_token_enc"] is not None
    assert row["patient_id"] == patient_id(1)
    assert await stored_resources(pool, "conn-1") == served_resources(CONFIG, 1)
    assert emulator.state.grant(CLIENT_ID, patient_id(1)) is not None
    # The purge still settled what CMS was owed: the lapsed grant's tokens, not the grant.
    assert await pool.fetchval("SELECT count(*) FROM pending_revocations") == 0
    assert (await unlinked_rows(pool), await revoked_events(pool)) == (0, 0)
    assert await redis.zrange(QUEUE_BULK, 0, -1) == []
    assert (await resync(ctx(services), "conn-1"))["status"] == "active"


async def test_a_purge_still_due_when_it_runs_purges_once(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, settings, services = await connected(start, CONFIG)
    await dormant(pool, emulator, services)
    stored = len(await stored_resources(pool, "conn-1"))
    await run_nightly(settings, services)
    await run_replica(settings, burst=True)
    row = await pool.fetchrow("SELECT status, refresh_token_enc, patient_id FROM connections")
    assert tuple(row) == ("revoked", None, None)
    assert await pool.fetchval("SELECT count(*) FROM fhir_resources") == 0
    assert emulator.state.grant(CLIENT_ID, patient_id(1)) is None  # ended at CMS
    audit = await pool.fetchrow("SELECT detail FROM audit_log WHERE event = 'unlinked'")
    assert audit["detail"] == {"resources_deleted": stored, "tokens_dropped": True, "purge": True}
    # The same purge again (a redelivery) finds nothing due, and tells nothing more.
    assert await unlink(ctx(services), "conn-1", purge=True) == {"status": "not_due", "cms": []}
    assert (await unlinked_rows(pool), await revoked_events(pool)) == (1, 1)


async def test_an_unlink_asked_while_a_purge_waits_is_queued_and_stands(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    """The person re-consents, then unlinks, before the bulk lane reaches the purge: their
    unlink is a job of its own (had it collapsed into the purge, nothing would unlink)."""
    emulator, settings, services = await connected(start, CONFIG)
    await dormant(pool, emulator, services)
    await run_nightly(settings, services)
    await reconsent(emulator, services)
    assert await unlink_asked_then_worked(settings) == "unlink:conn-1"
    await assert_unlinked(pool, emulator)
    assert (await unlinked_rows(pool), await revoked_events(pool)) == (1, 1)


async def test_an_unlink_asked_while_a_revocation_retry_waits_is_queued_and_stands(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    """An unlink left CMS's revocation owed; the nightly run queues its retry; the person
    relinks, then unlinks, before the bulk lane reaches the retry: their unlink is a job of
    its own (had it collapsed into the retry, which leaves a relink alone, nothing would
    unlink), and the retry still never undoes the relink for itself."""
    emulator, settings, services = await connected(start, CONFIG)
    async with bb2_unreachable(services) as offline:
        assert (await unlink(ctx(offline, job_try=JOB_MAX_TRIES), "conn-1"))["status"] == "revoked"
    await run_nightly(settings, services)
    assert await redis.zrange(QUEUE_BULK, 0, -1) == [b"unlink:conn-1:retry"]
    await reconsent(emulator, services)
    queued = await unlink_asked_then_worked(settings)
    await assert_unlinked(pool, emulator)
    assert await pool.fetchval("SELECT count(*) FROM pending_revocations") == 0
    # One unlink before the relink, one after it: one connection.revoked each, no more.
    assert (await unlinked_rows(pool), await revoked_events(pool)) == (2, 2)
    assert queued == "unlink:conn-1"
    assert await redis.zrange(QUEUE_BULK, 0, -1) == []


async def test_an_unlink_and_its_audit_row_commit_or_roll_back_together(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    _, _, services = await connected(start, CONFIG)
    await unlink_rolled_back(pool, "conn-1")
    assert await unlinked_rows(pool) == 0
    # The audit row cannot be written: the unlink is not done either, and its job fails
    # (to be tried again) rather than leave an unlink no relink check would see.
    await pool.execute(REFUSE_UNLINKED_AUDIT)
    try:
        with pytest.raises(asyncpg.PostgresError, match="audit row refused"):
            await unlink(ctx(services), "conn-1")
    finally:
        await pool.execute(ALLOW_UNLINKED_AUDIT)
    row = await pool.fetchrow("SELECT status, refresh_token_enc FROM connections")
    assert row["status"] == "active"
    assert row["refresh_token_enc"] is not None
    assert await stored_resources(pool, "conn-1") == served_resources(CONFIG, 1)
    assert await pool.fetchval("SELECT count(*) FROM pending_revocations") == 0
    assert await revoked_events(pool) == 0
    # Once committed, the row is there as the unlink returns: no later statement writes it.
    async with pool.acquire() as conn:
        assert await unlinks.unlink(conn, "conn-1") is not None
    assert (await unlinked_rows(pool), await revoked_events(pool)) == (1, 1)
