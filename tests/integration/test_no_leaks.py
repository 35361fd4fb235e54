"""No token, code, verifier, secret or personal data in any log line of a connect."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import asyncpg
import pytest
from redis.asyncio import Redis

from tests.chaos.leaks import read_logs, scan_logs
from tests.chaos.run import Size, Target, run_scenario
from tests.chaos.scenarios import scenario
from tests.integration.conftest import DATABASE_URL, REDIS_URL, Start
from tests.integration.support import authorized_job, emulator_post, patient_id
from worker.emulator import resources as emulated
from worker.emulator.config import EmulatorConfig
from worker.emulator.data import Dataset
from worker.jobs.connect import connect
from worker.local import CLIENT_SECRET
from worker.log import configure_logging
from worker.store import tokens as token_store


async def test_connect_with_a_refresh_logs_no_secret(
    pool: asyncpg.Pool, redis: Redis, start: Start, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(fmt="json", level="debug")
    config = EmulatorConfig(beneficiaries=1, claims_per_beneficiary=120)
    emulator, _, services = await start(config)
    job = await authorized_job(emulator.base_url, 0)
    await emulator_post(
        emulator.base_url,
        "/_emulator/tokens/expire",
        {"patient_id": patient_id(0), "after_requests": 2},
    )
    assert (await connect({"services": services, "job_try": 1}, **job.model_dump()))[
        "status"
    ] == "active"
    lines = capsys.readouterr().err.splitlines()
    assert any("sync_succeeded" in line for line in lines)  # the worker's lines were seen
    async with pool.acquire() as conn:
        held = await token_store.load_tokens(conn, services.cipher, "conn-0")
    beneficiary = Dataset(config).population.get(0)
    patient = emulated.patient(beneficiary)
    secrets = {
        "code": job.code,
        "verifier": job.code_verifier,
        "client secret": CLIENT_SECRET,
        "access token": held.access_token,
        "refresh token": held.refresh_token,
        "family name": patient["name"][0]["family"],
        "birth date": patient["birthDate"],
    }
    for line in lines:
        for what, value in secrets.items():
            assert value not in line, f"{what} leaked into a log line"


async def test_the_demo_flow_with_worker_processes_logs_no_secret(
    migrated: str, tmp_path: Path
) -> None:
    # Beneficiaries authorize through the redirect, replicas run as processes at debug
    # level, and every token is refreshed once: every line of every log is searched.
    baseline = scenario("no faults, tokens refreshed")
    size = Size(beneficiaries=3, claims=60, rate_limit=20, concurrency=2)
    report = await run_scenario(baseline, Target(DATABASE_URL, REDIS_URL), tmp_path, size)
    assert report.figures.passed, report.figures.problems
    assert report.figures.leaks == 0
    kinds = Counter(report.secrets.values())
    assert kinds["code verifier"] == kinds["authorization code"] == size.beneficiaries
    assert kinds["access token"] == kinds["refresh token"] == 2 * size.beneficiaries  # rolled
    assert kinds["client secret"] == 1
    assert {"family name", "given name", "birth date", "identifier"} <= set(kinds)
    lines = [line for each in read_logs(report.logs).values() for line in each]
    assert sum('"sync_succeeded"' in line for line in lines) == size.beneficiaries  # seen
    # The same scan finds any of them, wherever a line would carry it.
    for secret, what in report.secrets.items():
        planted = {"worker-1.log": [f'{{"event": "oops", "value": "{secret}"}}']}
        assert [leak.what for leak in scan_logs(planted, report.secrets)] == [what]
