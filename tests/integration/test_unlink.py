"""The unlink job: data gone at once, the grant ended at CMS, and unlink wins every race."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from arq import Retry
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from tests.integration.conftest import Start, connected, ctx
from tests.integration.support import (
    authorized_job,
    bb2_unreachable,
    http_of,
    patient_id,
    served_resources,
    stored_resources,
    sync_in_flight,
)
from worker.bluebutton.endpoints import TOKEN_PATH
from worker.constants import JOB_MAX_TRIES
from worker.emulator.config import EmulatorConfig
from worker.jobs.connect import connect
from worker.jobs.payloads import UnlinkJob
from worker.jobs.queue import enqueue, open_queue
from worker.jobs.resync import resync
from worker.jobs.unlink import unlink
from worker.jobs.worker import run_replica
from worker.local import CLIENT_ID, emulator_stats
from worker.runtime import lanes
from worker.store import unlinks
from worker.sync.revocation import settle_owed

CONFIG = EmulatorConfig(beneficiaries=2, claims_per_beneficiary=60)


async def test_unlink_deletes_everything_and_ends_the_grant(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await connected(start, CONFIG)
    stored = await pool.fetchval("SELECT count(*) FROM fhir_resources")
    assert stored == 60 + 4 + 1
    await emulator_stats(emulator.base_url, reset=True)
    result = await unlink(ctx(services), "conn-1")
    assert result == {"status": "revoked", "cms": ["grant ended at CMS"]}
    row = await pool.fetchrow("SELECT * FROM connections WHERE connection_id = 'conn-1'")
    assert row["status"] == "revoked"
    assert row["access_token_enc"] is None
    assert row["refresh_token_enc"] is None
    assert await pool.fetchval("SELECT count(*) FROM fhir_resources") == 0
    assert await pool.fetchval("SELECT count(*) FROM pending_revocations") == 0
    audit = await pool.fetchrow("SELECT detail FROM audit_log WHERE event = 'unlinked'")
    assert audit["detail"] == {"resources_deleted": stored, "tokens_dropped": True}
    assert (await emulator_stats(emulator.base_url))["by_endpoint"] == {"revoke": 1}
    assert emulator.state.grant(CLIENT_ID, patient_id(1)) is None  # the grant is gone at CMS


async def test_unlink_twice_and_of_unknown_ids_is_harmless(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await connected(start, CONFIG)
    await unlink(ctx(services), "conn-1")
    await emulator_stats(emulator.base_url, reset=True)
    assert await unlink(ctx(services), "conn-1") == {"status": "revoked", "cms": []}
    assert await unlink(ctx(services), "never-seen") == {"status": "unknown"}
    assert (await emulator_stats(emulator.base_url))["total"] == 0
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE event = 'unlinked'") == 1


async def test_data_goes_at_once_even_when_cms_is_unreachable(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    _, _, services = await connected(start, CONFIG)
    async with bb2_unreachable(services) as offline:
        with pytest.raises(Retry):
            await unlink(ctx(offline), "conn-1")
    assert await pool.fetchval("SELECT count(*) FROM fhir_resources") == 0
    assert await pool.fetchval("SELECT status FROM connections") == "revoked"
    pending = await pool.fetchrow("SELECT attempts, last_error FROM pending_revocations")
    assert pending["attempts"] == 1
    assert "unreachable" in pending["last_error"]
    # The retried job owes CMS only the revocation, and pays it.
    assert (await unlink(ctx(services, job_try=2), "conn-1"))["cms"] == ["grant ended at CMS"]
    assert await pool.fetchval("SELECT count(*) FROM pending_revocations") == 0


async def test_a_retried_unlink_leaves_a_relink_made_since_alone(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    """The unlink deleted everything, CMS failed the revocation (the job comes back later);
    meanwhile the person connected again: the retry settles what is owed, and the new
    link, the later word, stays."""
    emulator, _, services = await connected(start, CONFIG)
    asked = {**ctx(services), "enqueue_time": datetime.now(UTC), "job_id": "unlink:conn-1"}
    async with bb2_unreachable(services) as offline:
        with pytest.raises(Retry):
            await unlink({**asked, "services": offline}, "conn-1")
    again = await authorized_job(emulator.base_url, 1)
    assert (await connect(ctx(services), **again.model_dump()))["status"] == "active"
    retried = await unlink({**asked, "job_try": 2}, "conn-1")
    assert retried["status"] == "superseded"
    assert await pool.fetchval("SELECT status FROM connections") == "active"
    assert await stored_resources(pool, "conn-1") == served_resources(CONFIG, 1)
    assert await pool.fetchval("SELECT count(*) FROM pending_revocations") == 0
    # The grant the relink holds stays at CMS: only the unlinked tokens were revoked.
    assert (await resync(ctx(services), "conn-1"))["status"] == "active"


async def test_the_nightly_unlink_of_an_owed_revocation_leaves_a_relink_alone(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    """The nightly run queues the unlink of a connection still owed a revocation; the
    person connects again before the bulk lane reaches it: the new link stays."""
    emulator, _, services = await connected(start, CONFIG)
    async with bb2_unreachable(services) as offline:
        assert (await unlink(ctx(offline, job_try=JOB_MAX_TRIES), "conn-1"))["status"] == "revoked"
    nightly_asked = {**ctx(services), "enqueue_time": datetime.now(UTC)}
    again = await authorized_job(emulator.base_url, 1)
    assert (await connect(ctx(services), **again.model_dump()))["status"] == "active"
    assert (await unlink(nightly_asked, "conn-1"))["status"] == "superseded"
    assert await pool.fetchval("SELECT status FROM connections") == "active"
    assert await stored_resources(pool, "conn-1") == served_resources(CONFIG, 1)
    assert await pool.fetchval("SELECT count(*) FROM pending_revocations") == 0


async def test_an_unlink_asked_of_a_live_link_stands_however_late_a_grant_comes(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    """A grant stored after the unlink was asked, but before it ran, replaced a live link:
    no unlink preceded it, so the unlink stands (its code may even have come before the
    unlink: the store keeps no arrival time of a grant, and in doubt the person's unlink
    wins over their data)."""
    emulator, _, services = await connected(start, CONFIG)
    asked = {**ctx(services), "enqueue_time": datetime.now(UTC)}
    again = await authorized_job(emulator.base_url, 1)
    assert (await connect(ctx(services), **again.model_dump()))["status"] == "active"
    assert (await unlink(asked, "conn-1"))["status"] == "revoked"
    assert await pool.fetchval("SELECT count(*) FROM fhir_resources") == 0


async def test_unlink_wins_against_a_sync_in_flight(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, services, job, sync = await sync_in_flight(start, pool)
    await unlink(ctx(services), "conn-0")
    assert await sync == {"status": "revoked"}
    assert await pool.fetchval("SELECT count(*) FROM fhir_resources") == 0
    assert await pool.fetchval("SELECT status FROM connections") == "revoked"
    run = await pool.fetchrow("SELECT status, error FROM sync_runs")
    assert (run["status"], run["error"]) == ("failed", "unlinked")
    assert await pool.fetchval("SELECT count(*) FROM sync_seen") == 0  # ids of the patient
    # No later job of the connection fetches anything: the old connect job comes again.
    await emulator_stats(emulator.base_url, reset=True)
    await connect(ctx(services), **job.model_dump())
    stats = await emulator_stats(emulator.base_url)
    assert set(stats["by_endpoint"]) <= {"token"}
    assert await pool.fetchval("SELECT status FROM connections") == "revoked"
    assert await pool.fetchval("SELECT count(*) FROM fhir_resources") == 0
    assert emulator.state.grant(CLIENT_ID, patient_id(0)) is None  # the grant is gone at CMS


async def test_a_connect_event_older_than_the_unlink_does_not_relink(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await connected(start, CONFIG)
    again = await authorized_job(emulator.base_url, 1)  # consented again, event queued...
    queued_at = datetime.now(UTC)
    await unlink(ctx(services), "conn-1")  # ...but the unlink is processed first
    await emulator_stats(emulator.base_url, reset=True)
    stale = {**ctx(services), "enqueue_time": queued_at}
    assert (await connect(stale, **again.model_dump()))["status"] == "revoked"
    assert (await emulator_stats(emulator.base_url))["total"] == 0
    assert await pool.fetchval("SELECT status FROM connections") == "revoked"
    # A connect event that comes after the unlink is a new consent, and links again.
    renewed = await authorized_job(emulator.base_url, 1)
    fresh = {**ctx(services), "enqueue_time": datetime.now(UTC)}
    assert (await connect(fresh, **renewed.model_dump()))["status"] == "active"
    assert await stored_resources(pool, "conn-1") == served_resources(CONFIG, 1)


async def test_an_unlink_during_the_code_exchange_stands_and_ends_the_new_grant(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await start(EmulatorConfig(beneficiaries=1))
    job = await authorized_job(emulator.base_url, 0)
    unlinked: list[dict[str, Any]] = []

    async def unlink_when_tokens_arrive(response: httpx.Response) -> None:
        if response.request.url.path == TOKEN_PATH and not unlinked:
            unlinked.append(await unlink(ctx(services), "conn-0"))

    (await http_of(services)).event_hooks["response"].append(unlink_when_tokens_arrive)
    assert (await connect(ctx(services), **job.model_dump()))["status"] == "revoked"
    assert unlinked == [{"status": "revoked", "cms": []}]
    row = await pool.fetchrow("SELECT status, refresh_token_enc FROM connections")
    assert (row["status"], row["refresh_token_enc"]) == ("revoked", None)
    assert await pool.fetchval("SELECT count(*) FROM fhir_resources") == 0
    assert await pool.fetchval("SELECT count(*) FROM pending_revocations") == 0  # revoked
    assert emulator.state.grant(CLIENT_ID, patient_id(0)) is None  # the new grant ended too
    events = await pool.fetch("SELECT event FROM audit_log ORDER BY audit_id")
    assert [e["event"] for e in events][-2:] == ["grant_dropped_after_unlink", "revoked_at_cms"]


async def test_an_unlink_queued_in_the_bulk_lane_runs_there(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, settings, _ = await connected(start, CONFIG)
    queue = await open_queue(settings.redis_url)
    try:
        await enqueue(queue, UnlinkJob(connection_id="conn-1"), lane=lanes.BULK)
    finally:
        await queue.aclose()
    bulk_before = _budget_slots("bulk")
    interactive_before = _budget_slots("interactive")
    await run_replica(settings, burst=True)
    assert await pool.fetchval("SELECT status FROM connections") == "revoked"
    assert await pool.fetchval("SELECT count(*) FROM fhir_resources") == 0
    assert emulator.state.grant(CLIENT_ID, patient_id(1)) is None
    # Its request to CMS (the revoke) took its slot at bulk priority, not interactive.
    assert _budget_slots("bulk") == bulk_before + 1
    assert _budget_slots("interactive") == interactive_before


def _budget_slots(lane: str) -> float:
    """Budget slots taken so far in this process by the default app's requests in ``lane``."""
    labels = {"app": "default", "lane": lane}
    return REGISTRY.get_sample_value("bbingest_budget_wait_seconds_count", labels) or 0.0


async def test_two_jobs_settling_the_same_owed_revocation_take_turns(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await connected(start, CONFIG)
    async with pool.acquire() as conn:
        await unlinks.unlink(conn, "conn-1")
    await emulator_stats(emulator.base_url, reset=True)
    # An unlink job and a retry of it (or a resync) settle the owed row at the same moment.
    results = await asyncio.gather(settle_owed(services, "conn-1"), settle_owed(services, "conn-1"))
    assert sorted(results) == [[], ["grant ended at CMS"]]
    assert (await emulator_stats(emulator.base_url))["by_endpoint"] == {"revoke": 1}
    settled = await pool.fetchval("SELECT count(*) FROM audit_log WHERE event = 'revoked_at_cms'")
    assert settled == 1
