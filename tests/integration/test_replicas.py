"""Worker replicas as real processes share one budget, measured where it counts: at BB2."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import asyncpg
from redis.asyncio import Redis

from tests.integration.conftest import Start
from tests.integration.support import served_resources, stored_resources
from worker.bluebutton.aimd import DECREASE_FACTOR
from worker.emulator.config import EmulatorConfig
from worker.local import (
    authorize_beneficiaries,
    emulator_stats,
    enqueue_all,
    start_workers,
    worker_environment,
)

BENEFICIARIES = 5


async def sync_with_two_processes(
    start: Start, tmp_path: Path, *, server: int | None, workers: int
) -> dict[str, Any]:
    config = EmulatorConfig(
        beneficiaries=BENEFICIARIES, claims_per_beneficiary=60, rate_limit=server
    )
    # The emulator shares the test's process, and three processes share two cores here:
    # arrivals can be timestamped tens of milliseconds late, so leave a wider margin.
    emulator, settings, _ = await start(config, BB_RATE_LIMIT=str(workers), BB_RATE_MARGIN="0.1")
    await enqueue_all(
        settings.redis_url, await authorize_beneficiaries(emulator.base_url, BENEFICIARIES, "r-")
    )
    await emulator_stats(emulator.base_url, reset=True)
    env = worker_environment(settings, emulator.base_url, WORKER_CONCURRENCY="4")
    processes = await start_workers(env, 2, tmp_path)
    for process in processes:
        assert await process.wait() == 0
    return await emulator_stats(emulator.base_url)


async def all_synced(pool: asyncpg.Pool) -> None:
    config = EmulatorConfig(beneficiaries=BENEFICIARIES, claims_per_beneficiary=60)
    for index in range(BENEFICIARIES):
        connection_id = f"r-BBUser{index:05d}"
        status = await pool.fetchval(
            "SELECT status FROM connections WHERE connection_id = $1", connection_id
        )
        assert status == "active"
        assert await stored_resources(pool, connection_id) == served_resources(config, index)


async def test_two_processes_never_exceed_the_limit(
    pool: asyncpg.Pool, redis: Redis, start: Start, tmp_path: Path
) -> None:
    # The emulator does not enforce a limit here: what it sees is what we sent.
    stats = await sync_with_two_processes(start, tmp_path, server=None, workers=5)
    # The app's requests (the replicas' start-up metadata requests carry no client id).
    assert stats["max_in_window_by_client"]["emulator-client"] <= 5
    assert stats["total"] >= BENEFICIARIES * 5  # token, Patient, Coverage, 2 EOB pages each
    await all_synced(pool)


async def test_matching_limits_give_no_429(
    pool: asyncpg.Pool, redis: Redis, start: Start, tmp_path: Path
) -> None:
    stats = await sync_with_two_processes(start, tmp_path, server=5, workers=5)
    assert stats["by_status"].get("429", 0) == 0
    await all_synced(pool)


async def test_a_lower_server_limit_is_honoured_without_a_storm(
    pool: asyncpg.Pool, redis: Redis, start: Start, tmp_path: Path
) -> None:
    stats = await sync_with_two_processes(start, tmp_path, server=4, workers=8)
    # The shared rate comes down by 0.9 a cut (AIMD): from 8 to 4 takes 7 cuts, each a
    # refusal or two (one cut per two windows); a storm would be many more.
    cuts = math.ceil(math.log(4 / 8) / math.log(DECREASE_FACTOR))
    assert stats["by_status"].get("429", 0) <= 2 * cuts
    assert stats["during_cooldown"] == 0
    await all_synced(pool)
