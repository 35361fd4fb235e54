"""Token refresh under concurrency, and grants that lapse: real emulator, Postgres, Redis."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
from redis.asyncio import Redis

from tests.integration.conftest import Start, ctx
from tests.integration.support import authorized_job, emulator_post, patient_id, sync_in_flight
from worker.emulator.config import EmulatorConfig, RegisteredClient
from worker.jobs.connect import connect
from worker.jobs.outcome import load, run_sync
from worker.jobs.tokens import ConnectionTokens
from worker.local import emulator_stats


async def test_twenty_concurrent_users_of_an_expired_token_cause_one_refresh(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await start(EmulatorConfig(beneficiaries=1))
    job = await authorized_job(emulator.base_url, 0)
    assert (await connect(ctx(services), **job.model_dump()))["status"] == "active"
    await pool.execute("UPDATE connections SET access_expires_at = now() - interval '1 minute'")
    await emulator_stats(emulator.base_url, reset=True)
    app = await services.app("default")
    bluebutton = await services.bluebutton(app)
    holders = [ConnectionTokens(services, "conn-0", app, bluebutton) for _ in range(20)]
    tokens = await asyncio.gather(*(holder.current() for holder in holders))
    assert len(set(tokens)) == 1
    assert (await emulator_stats(emulator.base_url))["by_endpoint"] == {"token": 1}
    assert sum(holder.refreshes for holder in holders) == 1
    refreshed = await pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE event = 'tokens_refreshed'"
    )
    assert refreshed == 1
    assert await pool.fetchval("SELECT access_expires_at > now() FROM connections")


async def test_a_grant_lapsing_mid_sync_needs_reauth_without_retries(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, _, sync = await sync_in_flight(start, pool)
    await emulator_post(emulator.base_url, "/_emulator/grants/lapse", {"patient_id": patient_id(0)})
    assert await sync == {"status": "needs_reauth"}
    row = await pool.fetchrow("SELECT status, last_error FROM connections")
    assert row["status"] == "needs_reauth"
    assert "timed out" in row["last_error"]
    stats = await emulator_stats(emulator.base_url)
    assert stats["by_status"]["401"] == 1  # one answer was enough: no retry storm
    run = await pool.fetchrow("SELECT status FROM sync_runs")
    assert run["status"] == "failed"


async def test_one_time_app_ends_in_needs_reauth_once_its_token_expires(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    config = EmulatorConfig(beneficiaries=1, clients=(RegisteredClient(grant_type="ONE_TIME"),))
    emulator, _, services = await start(config)
    job = await authorized_job(emulator.base_url, 0)
    assert (await connect(ctx(services), **job.model_dump()))["status"] == "active"
    past = datetime.now(UTC) - timedelta(minutes=1)
    await pool.execute("UPDATE connections SET access_expires_at = $1", past)
    await emulator_stats(emulator.base_url, reset=True)
    assert (await run_sync(services, await load(services, "conn-0"), "resync", job_try=1)) == {
        "status": "needs_reauth"
    }
    stats = await emulator_stats(emulator.base_url)
    assert stats["by_endpoint"] == {"token": 1}
    assert stats["by_status"] == {"403": 1}
