"""Redis and Postgres restarted mid-run, each a private server of the test's own: the
replicas ride the outage out, jobs retry and resume, and every connection ends active
with exactly what the emulator serves."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.leaks import read_logs
from tests.chaos.run import Size, Target, run_scenario
from tests.chaos.scenarios import scenario
from tests.integration.conftest import DATABASE_URL, REDIS_URL

SMALL = Size(beneficiaries=4, claims=60, rate_limit=20, concurrency=2)
TARGET = Target(DATABASE_URL, REDIS_URL)


def _events(logs: Path) -> list[str]:
    return [line for lines in read_logs(logs).values() for line in lines]


@pytest.mark.timeout(180)
async def test_redis_restarted_mid_run(tmp_path: Path) -> None:
    report = await run_scenario(scenario("Redis restarted mid-run"), TARGET, tmp_path, SMALL)
    found = report.figures
    assert found.problems == ()
    assert (found.lost, found.duplicates, found.leaks, found.recorded_errors) == (0, 0, 0, 0)
    assert found.rows_stored == found.rows_expected
    lines = _events(report.logs)
    # Both replicas noticed, waited, reconnected, and exited 0 (no problem recorded).
    for name in ("worker-1.log", "worker-2.log"):
        own = read_logs(report.logs)[name]
        assert any('"redis_unavailable"' in line for line in own), name
        assert any('"redis_reconnected"' in line for line in own), name
    assert found.retries >= 1 or any('"job_outcome_unrecorded"' in line for line in lines)


@pytest.mark.timeout(180)
async def test_postgres_restarted_mid_run(tmp_path: Path) -> None:
    report = await run_scenario(scenario("Postgres restarted mid-run"), TARGET, tmp_path, SMALL)
    found = report.figures
    assert found.problems == ()
    assert (found.lost, found.duplicates, found.leaks, found.recorded_errors) == (0, 0, 0, 0)
    assert found.rows_stored == found.rows_expected
    assert found.retries >= 1  # jobs met the outage and came back
    assert found.jobs_run == SMALL.beneficiaries + found.retries
