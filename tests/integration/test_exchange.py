"""The code exchange on its own (issue 11): a code too old is never sent, a duplicate run
never undoes a success, the first sync follows as its own job, and the code's payload
leaves Redis minutes after the code died."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from tests.integration.conftest import Start
from tests.integration.support import authorized_job, http_of, run_cli
from worker.bluebutton.endpoints import TOKEN_PATH
from worker.constants import QUEUE_EXCHANGE, QUEUE_INTERACTIVE
from worker.emulator.config import EmulatorConfig
from worker.jobs.exchange import exchange
from worker.jobs.exchange_rules import EXPIRED
from worker.jobs.payloads import ExchangeJob, code_fingerprint
from worker.jobs.queue import open_queue
from worker.jobs.worker import run_replica
from worker.local import emulator_stats
from worker.runtime.services import Services
from worker.store import connections


async def exchange_ctx(services: Services, job_try: int = 1) -> dict[str, Any]:
    """What arq hands an exchange job: services, the try, and its queue (first syncs)."""
    queue = await open_queue(services.settings.redis_url)
    return {"services": services, "job_try": job_try, "redis": queue}


async def test_a_code_older_than_its_life_is_recorded_and_never_sent(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await start(EmulatorConfig(beneficiaries=1))
    job = await authorized_job(emulator.base_url, 0)
    stale = ExchangeJob(**job.model_dump(), received_at=time.time() - 61)
    await emulator_stats(emulator.base_url, reset=True)
    ctx = await exchange_ctx(services)
    assert (await exchange(ctx, **stale.model_dump()))["status"] == "error"
    assert (await emulator_stats(emulator.base_url))["total"] == 0  # BB2 saw nothing
    row = await pool.fetchrow("SELECT status, last_error FROM connections")
    assert (row["status"], row["last_error"]) == ("error", EXPIRED)
    assert await pool.fetchval("SELECT outcome FROM code_exchanges") == "expired"
    assert await pool.fetchval("SELECT event FROM audit_log") == "code_expired"
    assert await redis.zcard(QUEUE_INTERACTIVE) == 0  # no first sync
    await ctx["redis"].aclose()


async def test_an_exchange_queues_the_first_sync_which_makes_the_connection_active(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, settings, services = await start(EmulatorConfig(beneficiaries=1))
    job = ExchangeJob(**(await authorized_job(emulator.base_url, 0)).model_dump())
    ctx = await exchange_ctx(services)
    assert (await exchange(ctx, **job.model_dump()))["status"] == "exchanged"
    await ctx["redis"].aclose()
    assert await pool.fetchval("SELECT status FROM connections") == "pending"
    assert [j.decode() for j in await redis.zrange(QUEUE_INTERACTIVE, 0, -1)] == [
        "first_sync:conn-0"
    ]
    row = await pool.fetchrow("SELECT outcome, age_seconds FROM code_exchanges")
    assert row["outcome"] == "exchanged"
    assert 0 <= row["age_seconds"] < 60
    await run_replica(settings, burst=True)
    assert await pool.fetchval("SELECT status FROM connections") == "active"


async def test_a_duplicate_run_refused_before_the_first_one_saved_does_not_block_it(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await start(EmulatorConfig(beneficiaries=1))
    job = ExchangeJob(**(await authorized_job(emulator.base_url, 0)).model_dump())
    ctx = await exchange_ctx(services)
    duplicate: list[dict[str, Any]] = []

    async def duplicate_when_tokens_arrive(response: httpx.Response) -> None:
        # The first run's lease lapsed on a busy machine: a second run starts while the
        # first one's answer is on its way back, sends the spent code, and is refused.
        if response.request.url.path == TOKEN_PATH and not duplicate:
            duplicate.append({})
            duplicate.append(await exchange(ctx, **job.model_dump()))

    (await http_of(services)).event_hooks["response"].append(duplicate_when_tokens_arrive)
    assert (await exchange(ctx, **job.model_dump()))["status"] == "exchanged"
    assert duplicate[1] == {"status": "error"}  # the duplicate's view, at the time
    row = await pool.fetchrow("SELECT status, last_error, code_sha256 FROM connections")
    assert (row["status"], row["last_error"]) == ("pending", None)  # the success stands
    assert row["code_sha256"] == code_fingerprint(job.code)
    assert await pool.fetchval("SELECT outcome FROM code_exchanges") == "exchanged"
    await ctx["redis"].aclose()


async def test_a_refusal_after_the_tokens_are_stored_changes_nothing(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await start(EmulatorConfig(beneficiaries=1))
    job = ExchangeJob(**(await authorized_job(emulator.base_url, 0)).model_dump())
    ctx = await exchange_ctx(services)
    assert (await exchange(ctx, **job.model_dump()))["status"] == "exchanged"
    await emulator_stats(emulator.base_url, reset=True)
    # A late duplicate: its code is spent, but the connection holds that code's tokens.
    assert (await exchange(ctx, **job.model_dump()))["status"] == "exchanged"
    assert (await emulator_stats(emulator.base_url))["total"] == 0
    async with pool.acquire() as conn:
        refused = await connections.fail_exchange(
            conn, "conn-0", code_fingerprint(job.code), "invalid_grant"
        )
    assert not refused
    assert await pool.fetchval("SELECT status FROM connections") == "pending"
    await ctx["redis"].aclose()


async def test_enqueue_connect_reads_code_and_verifier_from_stdin_or_files(
    env: None,
    redis: Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    verifier = "-" + "v" * 63  # begins with '-': as a separate argument it reads as an option
    common = ["--redirect-uri", "http://localhost:3000/cb"]
    body = f'{{"code": "code-a", "code_verifier": "{verifier}"}}'.encode()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(body)))
    assert await run_cli("enqueue", "connect", "c-a", "--stdin", *common) == 0
    (tmp_path / "code").write_text("code-b\n")
    (tmp_path / "verifier").write_text(verifier + "\n")
    files = [
        "--code-file",
        str(tmp_path / "code"),
        "--code-verifier-file",
        str(tmp_path / "verifier"),
    ]
    assert await run_cli("enqueue", "connect", "c-b", *files, *common) == 0
    assert capsys.readouterr().out == "queued\nqueued\n"
    queued = sorted(j.decode() for j in await redis.zrange(QUEUE_EXCHANGE, 0, -1))
    assert queued == [
        f"exchange:c-a:{code_fingerprint('code-a')[:16]}",
        f"exchange:c-b:{code_fingerprint('code-b')[:16]}",
    ]
    for job_id in queued:
        # The payload (code, verifier) leaves Redis a few minutes after the code died.
        assert 0 < await redis.ttl(f"arq:job:{job_id}") <= 60 + 300
    with pytest.raises(SystemExit) as exit_:
        await run_cli("enqueue", "connect", "c-c", "--stdin", "--code", "x", *common)
    assert exit_.value.code == 2
