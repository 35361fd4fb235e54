"""Every state change of a connection or an app produces exactly one event of the right
type and data, in its own transaction: none for a change that rolled back."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from arq import Retry
from redis.asyncio import Redis

from tests.integration.conftest import Start, connected, ctx
from tests.integration.event_checks import emitted
from tests.integration.support import authorized_job, emulator_post, patient_id, unlink_rolled_back
from tests.integration.test_events_sync import assert_no_personal_data
from tests.integration.test_resync import expire_access_token
from worker import pauses
from worker.constants import APP_PROBE_KEY
from worker.emulator.config import EmulatorConfig
from worker.events.consent import announce_expiring
from worker.events.reasons import REASONS
from worker.jobs.connect import connect
from worker.jobs.exchange import exchange
from worker.jobs.nightly import nightly
from worker.jobs.payloads import ExchangeJob
from worker.jobs.queue import open_queue
from worker.jobs.resync import resync
from worker.jobs.unlink import unlink
from worker.local import CLIENT_ID

CONFIG = EmulatorConfig(beneficiaries=2, claims_per_beneficiary=5)


async def types_of(pool: asyncpg.Pool, connection_id: str | None = "conn-1") -> list[str]:
    return [e["type"] for e in await emitted(pool, connection_id)]


async def app_inactive(base_url: str, inactive: bool) -> None:
    """CMS makes the app inactive, or active again."""
    body = {"client_id": CLIENT_ID, "inactive": inactive}
    await emulator_post(base_url, "/_emulator/apps/inactive", body)


async def test_a_lapsed_grant_tells_needs_reauth_with_its_reason_and_expiry(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await connected(start, CONFIG)
    await emulator_post(emulator.base_url, "/_emulator/grants/lapse", {"patient_id": patient_id(1)})
    await expire_access_token(pool)
    assert (await resync(ctx(services), "conn-1"))["status"] == "needs_reauth"
    events = await emitted(pool, "conn-1")
    assert [e["type"] for e in events] == ["connection.active", "connection.needs_reauth"]
    data = events[1]["data"]
    assert data["reason"] == "consent_expired"
    assert data["reason_text"] == REASONS["consent_expired"]
    expires = await pool.fetchval("SELECT consent_expires_at FROM connections")
    assert data["consent_expires_at"] == (expires.isoformat() if expires else None)
    assert_no_personal_data(events)


async def test_cms_failing_mid_refresh_tells_its_own_reason(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await connected(start, CONFIG)
    await emulator_post(emulator.base_url, "/_emulator/faults/refresh", {"status": 502, "count": 1})
    await expire_access_token(pool)
    assert (await resync(ctx(services), "conn-1"))["status"] == "needs_reauth"
    assert (await emitted(pool, "conn-1"))[-1]["data"]["reason"] == "refresh_interrupted"


async def test_a_refused_code_tells_connection_error(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await start(CONFIG)
    job = await authorized_job(emulator.base_url, 1)
    wrong = ExchangeJob(**{**job.model_dump(), "code_verifier": "x" * 64})
    queue = await open_queue(services.settings.redis_url)
    try:
        for job_try in (1, 2):  # redelivered: the code is refused again, no news
            job_ctx = {**ctx(services, job_try), "redis": queue}
            assert (await exchange(job_ctx, **wrong.model_dump()))["status"] == "error"
    finally:
        await queue.aclose()
    events = await emitted(pool, "conn-1")
    assert [(e["type"], e["data"]["reason"]) for e in events] == [
        ("connection.error", "authorization_refused")
    ]


async def test_a_code_too_old_to_send_tells_authorization_expired(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await start(CONFIG)
    job = await authorized_job(emulator.base_url, 1)
    stale = ExchangeJob(**job.model_dump(), received_at=time.time() - 61)
    queue = await open_queue(services.settings.redis_url)
    try:
        await exchange({**ctx(services), "redis": queue}, **stale.model_dump())
    finally:
        await queue.aclose()
    events = await emitted(pool, "conn-1")
    assert [(e["type"], e["data"]["reason"]) for e in events] == [
        ("authorization.expired", "code_expired")
    ]
    assert set(events[0]["data"]) == {"reason", "reason_text", "expired_at"}


async def test_an_unlink_tells_revoked_then_grant_ended_once(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    _, _, services = await connected(start, CONFIG)
    stored = await pool.fetchval("SELECT count(*) FROM fhir_resources")
    await unlink(ctx(services), "conn-1")
    await unlink(ctx(services), "conn-1")  # twice: nothing more happened
    events = await emitted(pool, "conn-1")
    assert [e["type"] for e in events] == [
        "connection.active",
        "connection.revoked",
        "connection.grant_ended",
    ]
    assert events[1]["data"]["resources_deleted"] == stored
    assert_no_personal_data(events)


async def test_grant_ended_comes_when_cms_confirms_it_later(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await connected(start, CONFIG)
    await app_inactive(emulator.base_url, True)
    await unlink(ctx(services), "conn-1")  # owed: CMS answers the inactive app 403
    assert await types_of(pool) == ["connection.active", "connection.revoked"]
    await app_inactive(emulator.base_url, False)
    await unlink(ctx(services, job_try=2), "conn-1")  # the nightly retry of what is owed
    assert await types_of(pool) == [
        "connection.active",
        "connection.revoked",
        "connection.grant_ended",
    ]


async def test_a_rolled_back_unlink_tells_nothing(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    await connected(start, CONFIG)
    await unlink_rolled_back(pool, "conn-1")
    assert await types_of(pool) == ["connection.active"]


async def test_an_app_cms_holds_inactive_tells_paused_and_resumed_once_each(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await connected(start, CONFIG)
    await app_inactive(emulator.base_url, True)
    await pool.execute("UPDATE sync_runs SET started_at = started_at - interval '60 days'")
    for job_try in (1, 2):  # the second waits for the probe: still one transition
        with pytest.raises(Retry):
            await resync(ctx(services, job_try=job_try), "conn-1")
    assert await types_of(pool, None) == ["connection.active", "app.paused"]
    await app_inactive(emulator.base_url, False)
    await redis.delete(APP_PROBE_KEY.format(app="default"))  # the minute has passed
    assert (await resync(ctx(services, job_try=3), "conn-1"))["status"] == "active"
    assert (await resync(ctx(services, job_try=1), "conn-1"))["status"] == "active"
    events = await emitted(pool)
    assert [e["type"] for e in events if e["type"].startswith("app.")] == [
        "app.paused",
        "app.resumed",
    ]
    paused, resumed = (e for e in events if e["type"].startswith("app."))
    assert (paused["connection_id"], paused["app"]) == (None, "default")
    assert resumed["data"]["paused_at"] == paused["data"]["paused_at"]


async def test_consent_expiring_is_told_once_and_armed_again_by_a_reconsent(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await connected(start, CONFIG)
    now = datetime.now(UTC)
    soon = "UPDATE connections SET consent_expires_at = now() + interval '3 days'"
    await pool.execute("UPDATE connections SET consent_expires_at = now() + interval '20 days'")
    async with pool.acquire() as conn:
        assert await announce_expiring(conn, now, timedelta(days=7)) == 0  # not yet
        await conn.execute(soon)
        assert await announce_expiring(conn, now, timedelta(days=7)) == 1
        assert await announce_expiring(conn, now, timedelta(days=7)) == 0  # told once
    job = await authorized_job(emulator.base_url, 1)  # the beneficiary consents again
    assert (await connect(ctx(services), **job.model_dump()))["status"] == "active"
    await pool.execute(soon)
    async with pool.acquire() as conn:
        assert await announce_expiring(conn, now, timedelta(days=7)) == 1
    assert await types_of(pool) == [
        "connection.active",
        "connection.consent_expiring",
        "connection.active",  # the re-consent's first sync
        "connection.consent_expiring",
    ]
    events = [e for e in await emitted(pool, "conn-1") if e["type"].endswith("expiring")]
    expires = await pool.fetchval("SELECT consent_expires_at FROM connections")
    assert events[1]["data"] == {"consent_expires_at": expires.isoformat()}


async def test_the_nightly_run_tells_the_consents_lapsing_within_the_setting(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    _, settings, services = await connected(start, CONFIG, WEBHOOK_CONSENT_EXPIRING_DAYS="2")
    await pool.execute("UPDATE connections SET consent_expires_at = now() + interval '3 days'")
    queue = await open_queue(settings.redis_url)
    try:
        await nightly({"services": services, "redis": queue})
        assert await types_of(pool) == ["connection.active"]  # 3 days: not within 2
        await pool.execute("UPDATE connections SET consent_expires_at = now() + interval '1 day'")
        await nightly({"services": services, "redis": queue})
        await nightly({"services": services, "redis": queue})
    finally:
        await queue.aclose()
    assert await types_of(pool) == ["connection.active", "connection.consent_expiring"]


async def test_a_connection_in_error_failing_again_tells_nothing_more(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await connected(start, CONFIG)
    for job_try in (1, 2):
        await emulator_post(emulator.base_url, "/_emulator/faults", {"kind": "malformed_json"})
        assert (await resync(ctx(services, job_try=job_try), "conn-1"))["status"] == "error"
    events = await emitted(pool, "conn-1")
    assert [(e["type"], e["data"].get("reason")) for e in events] == [
        ("connection.active", None),
        ("connection.error", "bad_answer"),
    ]


async def test_replicas_meeting_a_pause_at_once_tell_it_once(
    pool: asyncpg.Pool, redis: Redis
) -> None:
    await asyncio.gather(*(pauses.mark_paused(redis, pool, "default") for _ in range(8)))
    await asyncio.gather(*(pauses.mark_active(redis, pool, "default") for _ in range(8)))
    assert await types_of(pool, None) == ["app.paused", "app.resumed"]
