"""Webhook deliveries that fail: dead-lettered after the schedule (and no longer blocking
their connection), an endpoint whose secret cannot be decrypted, delivered rows purged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from prometheus_client import REGISTRY

from tests.integration.webhook_support import (
    Dispatch,
    deliveries_of,
    eventually,
    receiving,
    register,
    until,
    write_events,
)
from worker.retention import purge_webhook_deliveries
from worker.store import delivery_admin
from worker.webhooks import dispatcher
from worker.webhooks.receiver import Receiver


async def test_a_dead_lettered_event_no_longer_blocks_its_connection(
    pool: asyncpg.Pool, dispatch: Dispatch
) -> None:
    receiver = Receiver(["s1"], available=False)
    async with receiving(receiver) as url:
        # Given up after ~1 s rather than 3 days (the schedule is tested as a function).
        _, cipher = await dispatch(WEBHOOK_GIVE_UP_HOURS="0.0003")
        endpoint = await register(pool, cipher, url)
        first = await write_events(pool, ["a"], 1)
        dead: list[delivery_admin.DeadDelivery] = []

        async def dead_lettered() -> bool:
            async with pool.acquire() as conn:
                dead[:] = await delivery_admin.dead_letters(conn, "default", 10)
            return bool(dead)

        await eventually(dead_lettered, 10)
        receiver.available = True
        later = await write_events(pool, ["a"], 1)
        await until(lambda: len(receiver.received) == 1, 10)
    assert [d.event_id for d in dead] == first["a"]
    assert dead[0].attempts >= 2
    assert dead[0].last_error == "HTTP 503"
    assert [r.event_id for r in receiver.received] == later["a"]
    rows = await deliveries_of(pool, endpoint)
    assert [(r["dead_at"] is not None, r["delivered_at"] is not None) for r in rows] == [
        (True, False),
        (False, True),
    ]


async def test_a_secret_that_cannot_be_decrypted_fails_its_rows_only(
    pool: asyncpg.Pool, dispatch: Dispatch
) -> None:
    receiver = Receiver(["s1"])
    async with receiving(receiver) as url:
        _, cipher = await dispatch()
        broken = await register(pool, cipher, url + "/broken")
        await register(pool, cipher, url)
        # Sealed under a key id this replica does not hold (a key dropped too early).
        await pool.execute(
            "UPDATE webhook_endpoints SET secret_enc = 'v1.gone.AAAA' WHERE endpoint_id = $1",
            broken,
        )
        expected = await write_events(pool, ["a", "b"], 3)

        async def retried() -> bool:
            rows = await deliveries_of(pool, broken)
            return all(r["attempts"] >= 2 for r in rows if r["seq"] == rows[0]["seq"])

        await eventually(retried, 10)
        await until(lambda: len(receiver.received) == 6, 10)
    assert receiver.tally(expected).lost == 0
    rows = await deliveries_of(pool, broken)
    assert all(r["delivered_at"] is None and r["dead_at"] is None for r in rows)
    assert "cannot be decrypted" in rows[0]["last_error"]


async def test_delivered_rows_are_purged_after_the_retention(
    pool: asyncpg.Pool, dispatch: Dispatch
) -> None:
    receiver = Receiver(["s1"])
    async with receiving(receiver) as url:
        settings, cipher = await dispatch(WEBHOOK_RETENTION_DAYS="2")
        endpoint = await register(pool, cipher, url)
        await write_events(pool, ["a"], 2)
        await until(lambda: len(receiver.received) == 2, 10)
    later = await write_events(pool, ["b"], 1)  # the receiver is gone: stays undelivered
    now = datetime.now(UTC)
    async with pool.acquire() as conn:
        assert await purge_webhook_deliveries(conn, settings, now + timedelta(days=1)) == 0
        assert await purge_webhook_deliveries(conn, settings, now + timedelta(days=3)) == 2
    rows = await deliveries_of(pool, endpoint)
    assert [str(r["event_id"]) for r in rows] == later["b"]


async def test_an_event_that_waited_behind_a_dead_one_gets_retries_of_its_own(
    pool: asyncpg.Pool, dispatch: Dispatch
) -> None:
    receiver = Receiver(["s1"], available=False)
    async with receiving(receiver) as url:
        _, cipher = await dispatch(WEBHOOK_GIVE_UP_HOURS="0.0003")  # about a second
        endpoint = await register(pool, cipher, url)
        await write_events(pool, ["a"], 2)

        async def both_dead() -> bool:
            rows = await deliveries_of(pool, endpoint)
            return all(r["dead_at"] is not None for r in rows)

        await eventually(both_dead, 15)
    first, second = await deliveries_of(pool, endpoint)
    # The second's clock began at its first attempt, after the first one was given up.
    assert second["attempts"] >= 2
    assert second["pending_since"] >= first["dead_at"]


def _gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"app": "default"})


async def test_the_backlog_gauges_count_what_waits_and_fall_to_zero_once_delivered(
    pool: asyncpg.Pool, dispatch: Dispatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dispatcher, "BACKLOG_EVERY_SECONDS", 0.05)
    receiver = Receiver(["s1"], available=False)
    async with receiving(receiver) as url:
        _, cipher = await dispatch()
        await register(pool, cipher, url)
        await write_events(pool, ["a"], 2)
        await until(lambda: _gauge("bbingest_webhook_backlog") == 2, 10)
        await until(lambda: (_gauge("bbingest_webhook_oldest_undelivered_seconds") or 0) > 0, 10)
        receiver.available = True
        await until(lambda: len(receiver.received) == 2, 10)
        await until(lambda: _gauge("bbingest_webhook_backlog") == 0, 10)
    assert _gauge("bbingest_webhook_oldest_undelivered_seconds") == 0
