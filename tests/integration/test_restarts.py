"""Redis and Postgres restarted mid-run, each a private server of the test's own: the
replicas ride the outage out, jobs retry and resume, and every connection ends active
with exactly what the emulator serves."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.chaos.leaks import read_logs
from tests.chaos.run import Report, Size, Target, run_scenario
from tests.chaos.scenarios import scenario
from tests.integration.conftest import DATABASE_URL, REDIS_URL, Start, settings_for
from tests.integration.private_services import PrivatePostgres, private_postgres, private_redis
from tests.integration.support import (
    authorized_job,
    http_of,
    served_resources,
    stored_resources,
)
from worker.bluebutton.endpoints import TOKEN_PATH
from worker.crypto import generate_key
from worker.emulator.config import EmulatorConfig
from worker.emulator.server import running_emulator
from worker.jobs.connect import connect
from worker.jobs.worker import _open_default_app
from worker.local import emulator_stats, start_workers, worker_environment
from worker.runtime.services import close_services, open_services
from worker.store.migrate import migrate

SYNC = EmulatorConfig(beneficiaries=1, claims_per_beneficiary=60)
SMALL = Size(beneficiaries=4, claims=60, rate_limit=20, concurrency=2)
TARGET = Target(DATABASE_URL, REDIS_URL)


async def _survived(name: str, workdir: Path) -> Report:
    """Run the restart scenario; every worker exited 0 and every connection is complete."""
    report = await run_scenario(scenario(name), TARGET, workdir, SMALL)
    found = report.figures
    assert found.problems == ()
    assert (found.lost, found.duplicates, found.leaks, found.recorded_errors) == (0, 0, 0, 0)
    assert found.rows_stored == found.rows_expected
    return report


@pytest.mark.timeout(180)
async def test_redis_restarted_mid_run(tmp_path: Path) -> None:
    report = await _survived("Redis restarted mid-run", tmp_path)
    logs = read_logs(report.logs)
    # Each replica noticed, waited and reconnected, rather than exit.
    for name in ("worker-1.log", "worker-2.log"):
        assert any('"redis_unavailable"' in line for line in logs[name]), name
        assert any('"redis_reconnected"' in line for line in logs[name]), name
    # A job in flight either retried or, its outcome unrecorded, ran again.
    lines = [line for each in logs.values() for line in each]
    unrecorded = sum('"job_outcome_unrecorded"' in line for line in lines)
    assert report.figures.retries + unrecorded >= 1


@pytest.mark.timeout(180)
async def test_postgres_restarted_mid_run(tmp_path: Path) -> None:
    found = (await _survived("Postgres restarted mid-run", tmp_path)).figures
    assert found.retries >= 1  # jobs met the outage and came back
    assert found.jobs_run == SMALL.beneficiaries + found.retries


@pytest.mark.timeout(60)
async def test_a_replica_outwaited_by_redis_exits_non_zero(
    pool: asyncpg.Pool,  # an empty database: a worker refuses tokens sealed under other keys
    tmp_path: Path,
) -> None:
    (tmp_path / "redis").mkdir()
    async with (
        private_redis(tmp_path / "redis") as redis,
        running_emulator(EmulatorConfig(beneficiaries=1)) as emulator,
    ):
        settings = settings_for(emulator.base_url, generate_key(), REDIS_URL=redis.url)
        env = worker_environment(settings, emulator.base_url, REDIS_OUTAGE_SECONDS="1")
        [worker] = await start_workers(env, 1, tmp_path / "logs", burst=False)
        log = tmp_path / "logs" / "worker-1.log"
        while '"worker_started"' not in log.read_text():
            assert worker.returncode is None
            await asyncio.sleep(0.05)
        await redis.kill()
        assert await worker.wait() == 1
    text = log.read_text()
    assert '"redis_unavailable"' in text
    assert "bbingest: error: Redis unavailable for" in text
    assert "Traceback" not in text


@pytest.mark.timeout(60)
async def test_tokens_for_a_spent_code_wait_for_postgres(start: Start) -> None:
    # Postgres stops the moment the code exchange answers: the code is spent, so the job
    # must keep its tokens until Postgres is back rather than retry the exchange.
    async with private_postgres() as postgres:
        conn = await asyncpg.connect(postgres.url)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        emulator, _, services = await start(SYNC, DATABASE_URL=postgres.url)
        restarted: list[asyncio.Task[None]] = []

        async def outage_after_exchange(response: httpx.Response) -> None:
            if response.request.url.path == TOKEN_PATH and not restarted:
                await postgres.stop()
                restarted.append(asyncio.create_task(_start_after(postgres, 1.0)))

        (await http_of(services)).event_hooks["response"].append(outage_after_exchange)
        job = await authorized_job(emulator.base_url, 0)
        try:
            result = await connect({"services": services, "job_try": 1}, **job.model_dump())
        finally:
            await asyncio.gather(*restarted)  # Postgres is up again, whatever happened
        assert result["status"] == "active"
        assert await stored_resources(services.pool, "conn-0") == served_resources(SYNC, 0)
        stats = await emulator_stats(emulator.base_url)
        assert stats["by_endpoint"]["token"] == 1  # exchanged once, never again


async def _start_after(postgres: PrivatePostgres, pause: float) -> None:
    await asyncio.sleep(pause)
    await postgres.start()


async def test_a_replica_whose_redis_is_away_at_start_opens_its_app_later(
    pool: asyncpg.Pool,
) -> None:
    # The warm-up takes a budget slot in Redis: with Redis away it must not end the replica
    # (its workers wait for Redis), only leave the app to open on first use. (``pool``: an
    # empty database, whose stored key ids the replica checks at start.)
    async with running_emulator(EmulatorConfig(beneficiaries=1)) as emulator:
        settings = settings_for(
            emulator.base_url, generate_key(), REDIS_URL="redis://127.0.0.1:9/0"
        )
        services = await open_services(settings, concurrency=2)
        try:
            await _open_default_app(services)  # raised Redis's ConnectionError before
        finally:
            await close_services(services)
        assert (await emulator_stats(emulator.base_url))["total"] == 0  # nothing was sent
