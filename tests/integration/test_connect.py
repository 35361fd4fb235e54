"""The connect job end to end: real emulator, real Postgres, real Redis, real arq worker."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from arq import Retry
from redis.asyncio import Redis

from tests.integration.conftest import Start, ctx
from tests.integration.support import (
    authorized_job,
    bb2_unreachable,
    emulator_post,
    fast_retries,
    patient_id,
    served_resources,
    stored_resources,
)
from worker.constants import JOB_MAX_TRIES
from worker.emulator.config import EmulatorConfig
from worker.errors import InvalidJob
from worker.jobs.connect import connect
from worker.jobs.exchange_rules import LOST_IN_FLIGHT
from worker.jobs.payloads import code_fingerprint
from worker.jobs.queue import enqueue, open_queue
from worker.jobs.worker import run_replica
from worker.local import CLIENT_ID, CLIENT_SECRET, emulator_stats
from worker.settings import Settings
from worker.store import connections, exchanges


async def run_worker(settings: Settings) -> None:
    await run_replica(settings, burst=True, concurrency=4)


async def status_of(pool: asyncpg.Pool, connection_id: str) -> connections.Connection:
    async with pool.acquire() as conn:
        found = await connections.get(conn, connection_id)
    assert found is not None
    return found


async def test_connect_jobs_through_the_queue_store_exactly_what_bb2_serves(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    config = EmulatorConfig(beneficiaries=4)
    emulator, settings, _ = await start(config)
    queue = await open_queue(settings.redis_url)
    try:
        for index in range(4):
            await enqueue(queue, await authorized_job(emulator.base_url, index))
    finally:
        await queue.aclose()
    await run_worker(settings)
    for index in range(4):
        connection = await status_of(pool, f"conn-{index}")
        assert connection.status == "active", connection.last_error
        assert connection.patient_id == patient_id(index)
        assert connection.consent_expires_at is not None
        assert await stored_resources(pool, f"conn-{index}") == served_resources(config, index)
    # BBUser00000 has 52 claims: two EOB pages of at most 50.
    assert len(await stored_resources(pool, "conn-0")) == 52 + 4 + 1
    # Jobs leave nothing in Redis: no result holding the code or the verifier.
    assert [key async for key in redis.scan_iter("arq:result:*")] == []
    assert [key async for key in redis.scan_iter("arq:job:*")] == []


async def test_token_expiring_mid_pagination_is_refreshed_once(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    config = EmulatorConfig(beneficiaries=2, claims_per_beneficiary=130)
    emulator, _, services = await start(config)
    job = await authorized_job(emulator.base_url, 1)
    # Patient, Coverage and the first EOB page pass; the second EOB page meets a dead token.
    await emulator_post(
        emulator.base_url,
        "/_emulator/tokens/expire",
        {"patient_id": patient_id(1), "after_requests": 3},
    )
    result = await connect(ctx(services), **job.model_dump())
    assert result["status"] == "active"
    stats = await emulator_stats(emulator.base_url)
    assert stats["by_endpoint"]["token"] == 2  # the exchange and exactly one refresh
    assert stats["by_status"].get("401") == 1
    assert await stored_resources(pool, "conn-1") == served_resources(config, 1)
    events = await pool.fetch("SELECT event FROM audit_log WHERE connection_id = 'conn-1'")
    assert "tokens_refreshed" in [e["event"] for e in events]


async def test_second_connect_of_unchanged_data_rewrites_no_row(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await start(EmulatorConfig(beneficiaries=1))
    await connect(ctx(services), **(await authorized_job(emulator.base_url, 0)).model_dump())
    before = await pool.fetch("SELECT resource_id, xmin::text AS x, fetched_at FROM fhir_resources")
    again = await authorized_job(emulator.base_url, 0)  # the beneficiary authorizes again
    assert (await connect(ctx(services), **again.model_dump()))["status"] == "active"
    after = await pool.fetch("SELECT resource_id, xmin::text AS x, fetched_at FROM fhir_resources")
    assert sorted(map(tuple, after)) == sorted(map(tuple, before))
    run = await pool.fetchrow("SELECT * FROM sync_runs ORDER BY run_id DESC LIMIT 1")
    assert (run["inserted"], run["updated"], run["unchanged"]) == (0, 0, len(before))


async def _no_data(pool: asyncpg.Pool, connection_id: str) -> None:
    connection = await status_of(pool, connection_id)
    assert connection.status == "error"
    assert not connection.has_tokens
    assert await stored_resources(pool, connection_id) == {}


async def test_wrong_pkce_verifier_is_an_error_and_stores_nothing(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await start(EmulatorConfig(beneficiaries=1))
    job = await authorized_job(emulator.base_url, 0)
    wrong = job.model_copy(update={"code_verifier": "x" * 64})
    assert (await connect(ctx(services), **wrong.model_dump()))["status"] == "error"
    await _no_data(pool, "conn-0")
    assert "invalid_grant" in ((await status_of(pool, "conn-0")).last_error or "")


async def test_reused_code_is_an_error_and_stores_nothing(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await start(EmulatorConfig(beneficiaries=1))
    job = await authorized_job(emulator.base_url, 0)
    assert (await connect(ctx(services), **job.model_dump()))["status"] == "active"
    replay = job.model_copy(update={"connection_id": "replayed"})
    assert (await connect(ctx(services), **replay.model_dump()))["status"] == "error"
    await _no_data(pool, "replayed")
    assert "invalid_grant" in ((await status_of(pool, "replayed")).last_error or "")


async def test_mismatched_redirect_uri_is_an_error_and_stores_nothing(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await start(EmulatorConfig(beneficiaries=1))
    job = await authorized_job(
        emulator.base_url, 0, redirect_uri="http://127.0.0.1:3000/api/auth/smart/callback"
    )
    assert (await connect(ctx(services), **job.model_dump()))["status"] == "error"
    await _no_data(pool, "conn-0")
    assert "Mismatching redirect URI" in ((await status_of(pool, "conn-0")).last_error or "")


async def test_withheld_personal_information_still_gets_every_claim(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    config = EmulatorConfig(beneficiaries=3)
    emulator, _, services = await start(config)
    job = await authorized_job(emulator.base_url, 2, share_personal_info=False)
    assert (await connect(ctx(services), **job.model_dump()))["status"] == "active"
    assert await stored_resources(pool, "conn-2") == served_resources(config, 2, personal=False)
    run = await pool.fetchrow("SELECT skipped_types FROM sync_runs")
    assert run["skipped_types"] == ["Patient"]


@pytest.mark.parametrize(
    "payload",
    [
        {"connection_id": "c1"},
        {"connection_id": "c1", "code": "c", "code_verifier": "v" * 50, "redirect_uri": "x"},
        {
            "connection_id": "c1; drop table connections",
            "code": "c",
            "code_verifier": "v" * 50,
            "redirect_uri": "http://localhost/cb",
        },
        {
            "connection_id": "c1",
            "code": "c",
            "code_verifier": "v" * 50,
            "redirect_uri": "http://localhost/cb",
            "admin": True,
        },
    ],
)
async def test_malformed_payload_is_rejected_with_a_clear_error(
    pool: asyncpg.Pool, redis: Redis, start: Start, payload: dict[str, Any]
) -> None:
    _, _, services = await start(EmulatorConfig(beneficiaries=1))
    with pytest.raises(InvalidJob, match="invalid ConnectJob payload: "):
        await connect(ctx(services), **payload)
    assert await pool.fetchval("SELECT count(*) FROM connections") == 0


async def test_malformed_payload_on_the_queue_fails_once_and_stores_nothing(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    _, settings, _ = await start(EmulatorConfig(beneficiaries=1))
    queue = await open_queue(settings.redis_url)
    try:
        await queue.enqueue_job("connect", connection_id="c1", code=42)
    finally:
        await queue.aclose()
    await run_worker(settings)
    assert await pool.fetchval("SELECT count(*) FROM connections") == 0
    assert await redis.zcard("arq:queue") == 0  # not retried forever
    [failure] = await pool.fetch("SELECT * FROM job_failures")
    assert (failure["job"], failure["kind"], failure["job_try"]) == ("connect", "invalid", 1)
    assert "code: Input should be a valid string" in failure["reason"]


async def test_resume_from_the_saved_cursor_after_a_failed_page(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    config = EmulatorConfig(beneficiaries=1, claims_per_beneficiary=140)
    emulator, _, services = await start(config)
    job = await authorized_job(emulator.base_url, 0)
    # The first contact's CapabilityStatement, Patient, Coverage and EOB page 1 pass;
    # page 2 fails more often than the job retries.
    await emulator_post(
        emulator.base_url, "/_emulator/faults", {"status": 502, "count": 3, "after": 4}
    )
    faulty = fast_retries(services)
    with pytest.raises(Retry):
        await connect(ctx(faulty), **job.model_dump())
    run = await pool.fetchrow("SELECT status, pages, cursor_type, cursor_url FROM sync_runs")
    assert run["status"] == "running"
    assert run["pages"] == 3
    assert run["cursor_type"] == "ExplanationOfBenefit"
    assert "startIndex=50" in run["cursor_url"]
    assert (await status_of(pool, "conn-0")).status == "pending"
    # The redelivered job does not spend the code again and fetches only what is left.
    await emulator_post(emulator.base_url, "/_emulator/stats/reset")
    assert (await connect(ctx(faulty, job_try=2), **job.model_dump()))["status"] == "active"
    stats = await emulator_stats(emulator.base_url)
    assert stats["by_endpoint"] == {"eob_search": 2}
    assert await stored_resources(pool, "conn-0") == served_resources(config, 0)


async def test_failures_past_the_last_try_end_in_a_recorded_error(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await start(EmulatorConfig(beneficiaries=1))
    job = await authorized_job(emulator.base_url, 0)
    await emulator_post(
        emulator.base_url, "/_emulator/faults", {"status": 503, "count": 3, "after": 1}
    )
    result = await connect(ctx(fast_retries(services), job_try=JOB_MAX_TRIES), **job.model_dump())
    assert result["status"] == "error"
    connection = await status_of(pool, "conn-0")
    assert connection.status == "error"
    assert "503" in (connection.last_error or "")
    run = await pool.fetchrow("SELECT status, error FROM sync_runs")
    assert run["status"] == "failed"
    assert "503" in run["error"]


async def test_an_unreachable_token_endpoint_retries_the_job_then_records_the_error(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await start(EmulatorConfig(beneficiaries=1))
    job = await authorized_job(emulator.base_url, 0)
    async with bb2_unreachable(services) as offline:
        with pytest.raises(Retry):
            await connect(ctx(offline), **job.model_dump())
        assert (await status_of(pool, "conn-0")).status == "pending"
        result = await connect(ctx(offline, job_try=JOB_MAX_TRIES), **job.model_dump())
    assert result["status"] == "error"
    assert "unreachable" in ((await status_of(pool, "conn-0")).last_error or "")
    # BB2 never saw the code: a later delivery, with BB2 back, still links.
    assert (await connect(ctx(services), **job.model_dump()))["status"] == "active"


async def test_a_code_spent_by_a_run_that_died_in_flight_is_recorded_as_lost(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await start(EmulatorConfig(beneficiaries=1))
    job = await authorized_job(emulator.base_url, 0)
    # An earlier run marked its exchange started, sent it, and died before storing the tokens.
    async with pool.acquire() as conn:
        received = datetime.now(UTC)
        await exchanges.note(conn, code_fingerprint(job.code), "conn-0", "default", received)
        await exchanges.mark_started(conn, "conn-0", code_fingerprint(job.code))
    async with httpx.AsyncClient(base_url=emulator.base_url) as http:
        spent = await http.post(
            "/v2/o/token/",
            data={
                "grant_type": "authorization_code",
                "code": job.code,
                "code_verifier": job.code_verifier,
                "redirect_uri": job.redirect_uri,
            },
            auth=(CLIENT_ID, CLIENT_SECRET),
        )
    assert spent.status_code == 200
    assert (await connect(ctx(services, job_try=2), **job.model_dump()))["status"] == "error"
    assert (await status_of(pool, "conn-0")).last_error == LOST_IN_FLIGHT
    assert await pool.fetchval("SELECT outcome FROM code_exchanges") == "lost_in_flight"
    events = await pool.fetch("SELECT event, detail FROM audit_log ORDER BY audit_id")
    assert events[-1]["event"] == "authorization_failed"
    assert events[-1]["detail"] == {"outcome": "lost_in_flight"}
