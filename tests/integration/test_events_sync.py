"""Events of a sync's outcome: written with the outcome, exactly one per state change."""

from __future__ import annotations

import asyncpg
from redis.asyncio import Redis

from tests.integration.conftest import Start, connected, ctx
from tests.integration.event_checks import emitted
from tests.integration.support import emulator_post, patient_id
from worker.emulator.config import EmulatorConfig
from worker.jobs.resync import resync

CONFIG = EmulatorConfig(beneficiaries=2, claims_per_beneficiary=12)
# What data may hold: ids, app, counts, reason codes, times; never claims or personal data.
ALLOWED_KEYS = {
    "counts", "synced_at", "mode", "inserted", "updated", "deleted", "reason", "reason_text",
    "consent_expires_at", "resources_deleted", "revoked_at", "ended_at", "expired_at",
    "paused_at", "resumed_at",
}  # fmt: skip


def assert_no_personal_data(events: list[dict[str, object]]) -> None:
    """Every event's data holds only keys of ids, counts, reasons and times."""
    for event in events:
        assert isinstance(event["data"], dict)
        assert set(event["data"]) <= ALLOWED_KEYS, event


async def test_the_first_sync_tells_the_counts_per_resource_type(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    await connected(start, CONFIG)
    events = await emitted(pool, "conn-1")
    assert [e["type"] for e in events] == ["connection.active"]
    counts = await pool.fetch(
        "SELECT resource_type, count(*) AS n FROM fhir_resources GROUP BY resource_type"
    )
    assert events[0]["data"]["counts"] == {r["resource_type"]: r["n"] for r in counts}
    assert events[0]["data"]["counts"]["ExplanationOfBenefit"] == 12
    assert events[0]["app"] == "default"
    assert_no_personal_data(events)


async def test_a_resync_that_changes_nothing_tells_nothing(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    _, _, services = await connected(start, CONFIG)
    assert (await resync(ctx(services), "conn-1"))["status"] == "active"
    assert [e["type"] for e in await emitted(pool)] == ["connection.active"]


async def test_a_resync_that_changes_claims_tells_what_changed(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await connected(start, CONFIG)
    body = {"patient_id": patient_id(1), "count": 2}
    await emulator_post(emulator.base_url, "/_emulator/claims/touch", body)
    added = {"patient_id": patient_id(1), "claim_type": "snf"}
    await emulator_post(emulator.base_url, "/_emulator/claims/add", added)
    assert (await resync(ctx(services), "conn-1"))["status"] == "active"
    events = await emitted(pool, "conn-1")
    assert [e["type"] for e in events] == ["connection.active", "connection.synced"]
    data = events[1]["data"]
    assert (data["mode"], data["inserted"], data["updated"], data["deleted"]) == (
        "incremental", 1, 2, 0
    )  # fmt: skip
    assert_no_personal_data(events)


async def test_a_full_pass_tells_what_it_deleted(
    pool: asyncpg.Pool, redis: Redis, start: Start
) -> None:
    emulator, _, services = await connected(start, CONFIG)
    await pool.execute("UPDATE sync_runs SET started_at = now() - interval '60 days'")
    gone = await pool.fetchval(
        "SELECT resource_id FROM fhir_resources WHERE resource_type = 'ExplanationOfBenefit'"
        " ORDER BY resource_id LIMIT 1"
    )
    await emulator_post(
        emulator.base_url, "/_emulator/claims/remove", {"patient_id": patient_id(1), "eob_id": gone}
    )
    assert (await resync(ctx(services), "conn-1"))["status"] == "active"
    synced = (await emitted(pool, "conn-1"))[-1]
    assert synced["type"] == "connection.synced"
    assert (synced["data"]["mode"], synced["data"]["deleted"]) == ("full", 1)
