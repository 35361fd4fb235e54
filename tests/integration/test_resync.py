"""Resync: incremental passes ask only for changes, full passes find deletions; the nightly
cron schedules what is due within its budget, on one replica only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
from redis.asyncio import Redis

from tests.integration.conftest import Start, connected, ctx
from tests.integration.support import (
    emulator_post,
    patient_id,
    stored_resources,
)
from worker import pauses
from worker.constants import QUEUE_BULK, QUEUE_INTERACTIVE
from worker.emulator.config import EmulatorConfig
from worker.jobs.nightly import nightly
from worker.jobs.queue import open_queue
from worker.jobs.resync import resync
from worker.jobs.worker import build_worker
from worker.local import emulator_stats
from worker.runtime.job_retry import Attempt
from worker.sync.engine import sync_connection
from worker.sync.model import FULL
from worker.sync.outcome import _succeed, load, run_sync

CONFIG = EmulatorConfig(beneficiaries=2, claims_per_beneficiary=80)


async def expire_access_token(pool: asyncpg.Pool) -> None:
    """As after a night: the hour-long access token is long gone."""
    await pool.execute("UPDATE connections SET access_expires_at = now() - interval '1 hour'")


async def test_incremental_resync_of_unchanged_data_costs_three_requests(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await connected(start, CONFIG)
    await expire_access_token(pool)
    await emulator_stats(emulator.base_url, reset=True)
    assert (await resync(ctx(services), "conn-1"))["status"] == "active"
    stats = await emulator_stats(emulator.base_url)
    assert stats["total"] == 3
    assert stats["by_endpoint"] == {"token": 1, "coverage_search": 1, "eob_search": 1}
    run = await pool.fetchrow("SELECT * FROM sync_runs ORDER BY run_id DESC LIMIT 1")
    assert (run["kind"], run["mode"], run["inserted"], run["updated"]) == (
        "resync",
        "incremental",
        0,
        0,
    )


async def test_incremental_resync_picks_up_changed_and_new_claims(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await connected(start, CONFIG)
    touched = await emulator_post(
        emulator.base_url, "/_emulator/claims/touch", {"patient_id": patient_id(1), "count": 3}
    )
    await emulator_post(
        emulator.base_url,
        "/_emulator/claims/add",
        {"patient_id": patient_id(1), "claim_type": "snf"},
    )
    assert (await resync(ctx(services), "conn-1"))["status"] == "active"
    run = await pool.fetchrow("SELECT * FROM sync_runs ORDER BY run_id DESC LIMIT 1")
    assert run["mode"] == "incremental"
    assert (run["inserted"], run["updated"]) == (1, 3)
    stored = await stored_resources(pool, "conn-1")
    for eob_id in touched["touched"]:
        assert stored["ExplanationOfBenefit", eob_id]["meta"]["lastUpdated"] >= "2026"
    assert len([k for k in stored if k[0] == "ExplanationOfBenefit"]) == 81


async def test_full_pass_deletes_what_bb2_no_longer_serves(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await connected(start, CONFIG)
    await pool.execute("UPDATE sync_runs SET started_at = now() - interval '60 days'")
    gone = sorted(
        k[1] for k in await stored_resources(pool, "conn-1") if k[0] == "ExplanationOfBenefit"
    )[5]
    await emulator_post(
        emulator.base_url, "/_emulator/claims/remove", {"patient_id": patient_id(1), "eob_id": gone}
    )
    assert (await resync(ctx(services), "conn-1"))["status"] == "active"
    stored = await stored_resources(pool, "conn-1")
    assert ("ExplanationOfBenefit", gone) not in stored
    assert len(stored) == 80 - 1 + 4 + 1
    synced = await pool.fetchrow(
        "SELECT detail FROM audit_log WHERE event = 'synced' ORDER BY audit_id DESC LIMIT 1"
    )
    assert synced["detail"]["mode"] == "full"
    assert synced["detail"]["deleted"] == 1
    assert await pool.fetchval("SELECT count(*) FROM sync_seen") == 0


async def test_a_stale_full_pass_deletes_nothing_a_newer_pass_stored(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    """A re-consent mid-sync: a second pass resumes the first's run and closes it, a third
    stores a claim CMS added since; the first pass, finishing last, closed no run and must
    delete nothing (its run's seen ids were used and dropped by the pass that closed it)."""
    emulator, _, services = await connected(start, CONFIG)
    connection = await load(services, "conn-1")
    app = await services.app_of(connection)
    stale = await sync_connection(services, connection, app, "resync", FULL)
    assert (await run_sync(services, connection, "resync", Attempt(1)))["status"] == "active"
    await emulator_post(
        emulator.base_url,
        "/_emulator/claims/add",
        {"patient_id": patient_id(1), "claim_type": "snf"},
    )
    assert (await run_sync(services, connection, "resync", Attempt(1)))["status"] == "active"
    stored = await stored_resources(pool, "conn-1")
    assert len(stored) == 80 + 1 + 4 + 1
    assert await _succeed(services, connection, stale) is None
    assert await stored_resources(pool, "conn-1") == stored
    runs = await pool.fetch("SELECT status FROM sync_runs ORDER BY run_id")
    assert [run["status"] for run in runs] == ["succeeded"] * 3


async def test_resync_of_connections_without_live_tokens_does_nothing(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await connected(start, CONFIG)
    await pool.execute("UPDATE connections SET status = 'needs_reauth'")
    await emulator_stats(emulator.base_url, reset=True)
    assert await resync(ctx(services), "conn-1") == {"status": "needs_reauth"}
    assert await resync(ctx(services), "nobody") == {"status": "unknown"}
    assert (await emulator_stats(emulator.base_url))["total"] == 0


async def test_nightly_queues_the_oldest_due_within_budget_and_purges_dormant(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    # 1 request/s and a tiny share: the budget covers 2 resyncs tonight.
    _, settings, services = await start(
        CONFIG, BB_RATE_LIMIT="1", RESYNC_DAILY_SHARE=str(7.0 / 86_400)
    )
    now = datetime.now(UTC)
    rows = [(f"c{i}", "active", now - timedelta(days=8 + i)) for i in range(4)]
    rows += [("fresh", "active", now), ("dormant", "needs_reauth", None)]
    await pool.executemany(
        "INSERT INTO connections (connection_id, status, last_synced_at) VALUES ($1, $2, $3)", rows
    )
    await pool.execute(
        "UPDATE connections SET status_changed_at = now() - interval '60 days'"
        " WHERE connection_id = 'dormant'"
    )
    # An unlink whose tries ran out before CMS confirmed the revocation.
    await pool.execute("INSERT INTO connections (connection_id, status) VALUES ('gone', 'revoked')")
    await pool.execute(
        "INSERT INTO pending_revocations (connection_id, refresh_token_enc, app)"
        " VALUES ('gone', 'x', 'default')"
    )
    queue = await open_queue(settings.redis_url)
    try:
        result = await nightly({"services": services, "redis": queue})
    finally:
        await queue.aclose()
    assert result == {"resyncs": 2, "purged": 1, "revocations": 1, "due": 4}
    bulk = sorted(j.decode() for j in await redis.zrange(QUEUE_BULK, 0, -1))
    # The two synced longest ago; housekeeping in the bulk lane, behind nobody's connect.
    assert bulk == ["resync:c2", "resync:c3", "unlink:dormant:purge", "unlink:gone:retry"]
    assert await redis.zrange(QUEUE_INTERACTIVE, 0, -1) == []


async def test_two_replicas_firing_the_cron_schedule_it_once(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    _, settings, services = await start(CONFIG)
    queues = [await open_queue(settings.redis_url) for _ in range(2)]
    replicas = [
        build_worker(settings, services, QUEUE_BULK, queue, burst=True, max_jobs=1)
        for queue in queues
    ]
    due = datetime.now(UTC) - timedelta(seconds=1)
    try:
        for replica in replicas:  # both replicas reach the same fire time
            for job in replica.cron_jobs:
                job.next_run = due
            await replica.run_cron(datetime.now(UTC), 0.5)
    finally:
        for queue in queues:
            await queue.aclose()
    queued = [j.decode() for j in await redis.zrange(QUEUE_BULK, 0, -1)]
    assert len([j for j in queued if j.startswith("nightly:")]) == 1


async def test_a_grant_deleted_at_cms_needs_reauth_and_a_full_pass_deletes_nothing(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    # The beneficiary removed the app's access: CMS revoked every token with the grant, so
    # FHIR answers 401 and the refresh 403 invalid_grant (FACTS.md, Authorization).
    emulator, _, services = await connected(start, CONFIG)
    before = await stored_resources(pool, "conn-1")
    await emulator_post(
        emulator.base_url, "/_emulator/grants/delete", {"patient_id": patient_id(1)}
    )
    await pool.execute("UPDATE sync_runs SET started_at = started_at - interval '60 days'")
    assert await resync(ctx(services), "conn-1") == {"status": "needs_reauth"}
    row = await pool.fetchrow("SELECT status, last_error FROM connections")
    assert row["status"] == "needs_reauth"
    assert "403 invalid_grant" in row["last_error"]
    assert await stored_resources(pool, "conn-1") == before
    last = await pool.fetchrow("SELECT mode, status FROM sync_runs ORDER BY run_id DESC LIMIT 1")
    assert tuple(last) == ("full", "failed")  # the pass that would have deleted


async def test_nightly_retries_only_unlinked_owed_revocations_and_spares_paused_apps(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    _, settings, services = await start(CONFIG)
    await pool.execute(
        """INSERT INTO connections (connection_id, status, last_synced_at, status_changed_at)
           VALUES ('live', 'active', now(), now()), ('gone', 'revoked', NULL, now()),
                  ('dormant', 'needs_reauth', NULL, now() - interval '60 days')"""
    )
    # A relink's old tokens (live connection) and an unlink's (gone) are both owed.
    await pool.execute(
        """INSERT INTO pending_revocations (connection_id, refresh_token_enc, app, end_grant)
           VALUES ('live', 'x', 'default', false), ('gone', 'y', 'default', true)"""
    )
    await pauses.mark_paused(redis, pool, "default")  # CMS holds the app inactive: no purge
    queue = await open_queue(settings.redis_url)
    try:
        result = await nightly({"services": services, "redis": queue})
    finally:
        await queue.aclose()
    assert (result["purged"], result["revocations"]) == (0, 1)
    bulk = sorted(j.decode() for j in await redis.zrange(QUEUE_BULK, 0, -1))
    assert bulk == ["unlink:gone:retry"]  # an unlink of 'live' would end a working connection


async def test_a_connection_waiting_for_reconsent_still_settles_what_cms_is_owed(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    # A relink's old tokens stayed owed (CMS failed then), and the connection now waits
    # for a re-consent: no resync syncs it, yet the nightly run queues one that settles.
    _, settings, services = await connected(start, CONFIG)
    await pool.execute(
        """INSERT INTO pending_revocations (connection_id, access_token_enc, refresh_token_enc,
               end_grant, app, client_id)
           SELECT connection_id, access_token_enc, refresh_token_enc, false, app, client_id
           FROM connections"""
    )
    await pool.execute("UPDATE connections SET status = 'needs_reauth', last_error = 'lapsed'")
    queue = await open_queue(settings.redis_url)
    try:
        await nightly({"services": services, "redis": queue})
    finally:
        await queue.aclose()
    bulk = [j.decode() for j in await redis.zrange(QUEUE_BULK, 0, -1)]
    assert bulk == ["resync:conn-1"]
    assert (await resync(ctx(services), "conn-1"))["status"] == "needs_reauth"
    assert await pool.fetchval("SELECT count(*) FROM pending_revocations") == 0
    settled = await pool.fetchrow("SELECT detail FROM audit_log WHERE event = 'revoked_at_cms'")
    assert settled["detail"]["grant_ended"] is False
