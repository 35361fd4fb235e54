"""A replica stopped with SIGTERM mid-sync loses no job and duplicates no row."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import asyncpg
from redis.asyncio import Redis

from tests.integration.conftest import Stack, Start
from tests.integration.support import served_resources, stored_resources
from worker.constants import QUEUE_INTERACTIVE
from worker.emulator.config import EmulatorConfig
from worker.local import authorize_beneficiaries, enqueue_all, start_workers, worker_environment

CONFIG = EmulatorConfig(beneficiaries=1, claims_per_beneficiary=300)


async def pages(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT coalesce(max(pages), 0) FROM sync_runs"))


async def stop_mid_sync(
    pool: asyncpg.Pool, start: Start, tmp_path: Path, grace: str
) -> tuple[Stack, int]:
    """Start a sync in a worker process, SIGTERM it after three pages; its exit status."""
    stack = await start(CONFIG, BB_RATE_LIMIT="5")
    emulator, settings, _ = stack
    await enqueue_all(settings.redis_url, await authorize_beneficiaries(emulator.base_url, 1, "s-"))
    env = worker_environment(settings, emulator.base_url, WORKER_SHUTDOWN_GRACE=grace)
    [process] = await start_workers(env, 1, tmp_path / "first")
    while await pages(pool) < 3:
        assert process.returncode is None
        await asyncio.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    return stack, await process.wait()


async def test_sigterm_with_a_short_grace_leaves_the_job_to_another_replica(
    pool: asyncpg.Pool, redis: Redis, start: Start, tmp_path: Path
) -> None:
    (emulator, settings, _), status = await stop_mid_sync(pool, start, tmp_path, grace="0")
    assert status == 0
    assert await pool.fetchval("SELECT status FROM connections") == "pending"
    assert await redis.zcard(QUEUE_INTERACTIVE) == 1  # the job is back in the queue
    stopped_at = await pages(pool)
    env = worker_environment(settings, emulator.base_url)
    [other] = await start_workers(env, 1, tmp_path / "second")
    assert await other.wait() == 0
    assert await pool.fetchval("SELECT status FROM connections") == "active"
    assert await stored_resources(pool, "s-BBUser00000") == served_resources(CONFIG, 0)
    run = await pool.fetchrow("SELECT pages, inserted, updated, unchanged FROM sync_runs")
    # One run, resumed where it stopped: every page counted once, every row inserted once.
    assert run["pages"] == 1 + 1 + 6
    assert (run["inserted"], run["updated"]) == (300 + 4 + 1, 0)
    assert run["unchanged"] <= 50  # at most the page in flight was fetched again
    assert stopped_at < run["pages"]


async def test_sigterm_with_enough_grace_lets_the_job_finish(
    pool: asyncpg.Pool, redis: Redis, start: Start, tmp_path: Path
) -> None:
    _, status = await stop_mid_sync(pool, start, tmp_path, grace="30")
    assert status == 0
    assert await pool.fetchval("SELECT status FROM connections") == "active"
    assert await redis.zcard(QUEUE_INTERACTIVE) == 0
    assert await stored_resources(pool, "s-BBUser00000") == served_resources(CONFIG, 0)
