"""A replica killed with SIGKILL mid-pagination: another one takes the job over once the
lease lapses (not after arq's half-hour in-progress expiry) and resumes from the cursor."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import asyncpg
from redis.asyncio import Redis

from tests.integration.conftest import Start
from tests.integration.support import served_resources, stored_resources
from worker.emulator.config import EmulatorConfig
from worker.local import authorize_beneficiaries, enqueue_all, start_workers, worker_environment

CONFIG = EmulatorConfig(beneficiaries=1, claims_per_beneficiary=300)
LEASE = 2.0


async def test_sigkill_mid_pagination_is_taken_over_and_resumed(
    pool: asyncpg.Pool, redis: Redis, start: Start, tmp_path: Path
) -> None:
    emulator, settings, _ = await start(CONFIG, BB_RATE_LIMIT="5")
    await enqueue_all(settings.redis_url, await authorize_beneficiaries(emulator.base_url, 1, "k-"))
    env = worker_environment(settings, emulator.base_url, JOB_LEASE_SECONDS=str(LEASE))
    [doomed] = await start_workers(env, 1, tmp_path / "doomed")
    while await pool.fetchval("SELECT coalesce(max(pages), 0) FROM sync_runs") < 3:
        assert doomed.returncode is None
        await asyncio.sleep(0.02)
    doomed.send_signal(signal.SIGKILL)
    assert await doomed.wait() == -signal.SIGKILL
    killed_at = time.monotonic()
    row = await pool.fetchrow("SELECT status, pages FROM sync_runs")
    assert row["status"] == "running"  # half synced, and the record says so
    assert await pool.fetchval("SELECT status FROM connections") == "pending"
    [rescuer] = await start_workers(env, 1, tmp_path / "rescuer")
    assert await rescuer.wait() == 0
    assert time.monotonic() - killed_at < 30  # the lease, not arq's 30-minute expiry
    assert await pool.fetchval("SELECT status FROM connections") == "active"
    assert await stored_resources(pool, "k-BBUser00000") == served_resources(CONFIG, 0)
    run = await pool.fetchrow("SELECT status, pages, inserted, updated, unchanged FROM sync_runs")
    assert run["status"] == "succeeded"
    assert run["pages"] == 1 + 1 + 6  # resumed: each page counted once
    assert (run["inserted"], run["updated"]) == (300 + 4 + 1, 0)
    assert run["unchanged"] <= 50
