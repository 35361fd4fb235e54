"""Webhook delivery with a real receiver on loopback, real Postgres, the dispatcher of the
replicas (worker.webhooks.dispatcher): exactly once unless a 2xx is lost, in order per
connection, through outages, signed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack

import asyncpg
import pytest

from tests.integration.conftest import settings_for
from tests.integration.webhook_support import receiving, until, write_events
from worker.crypto import TokenCipher, cipher_for
from worker.settings import Settings
from worker.store import connections, outbox, webhooks
from worker.webhooks.dispatcher import dispatching
from worker.webhooks.receiver import Receiver

FAST_RETRIES = {"WEBHOOK_RETRY_BASE_SECONDS": "0.05", "WEBHOOK_RETRY_MAX_SECONDS": "0.3"}
Dispatch = Callable[..., Awaitable[tuple[Settings, TokenCipher]]]


@pytest.fixture
async def dispatch(pool: asyncpg.Pool, encryption_key: str) -> AsyncIterator[Dispatch]:
    """Start a dispatcher (several with repeated calls: replicas) with the given settings."""
    async with AsyncExitStack() as stack:

        async def _start(**extra: str) -> tuple[Settings, TokenCipher]:
            settings = settings_for(
                "http://127.0.0.1:9", encryption_key, **{**FAST_RETRIES, **extra}
            )
            cipher = cipher_for(settings)
            await stack.enter_async_context(dispatching(settings, cipher))
            return settings, cipher

        yield _start


async def _register(pool: asyncpg.Pool, cipher: TokenCipher, url: str, secret: str = "s1") -> int:
    async with pool.acquire() as conn:
        return await webhooks.add(conn, cipher, "default", url, secret)


async def _rows(pool: asyncpg.Pool, endpoint_id: int) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT * FROM webhook_deliveries WHERE endpoint_id = $1 ORDER BY seq", endpoint_id
    )


async def test_every_event_is_delivered_once_in_order_by_two_replicas(
    pool: asyncpg.Pool, dispatch: Dispatch
) -> None:
    receiver = Receiver(["s1"])
    async with receiving(receiver) as url:
        _, cipher = await dispatch()
        await dispatch()  # a second replica competes for the same rows
        endpoint = await _register(pool, cipher, url)
        expected = await write_events(pool, [f"c{n}" for n in range(5)], 12)
        await until(lambda: len(receiver.received) >= 60, 20)
        await asyncio.sleep(0.3)  # a duplicate would arrive by now
    tally = receiver.tally(expected)
    assert (tally.delivered, tally.duplicated, tally.lost, tally.out_of_order) == (60, 0, 0, 0)
    assert receiver.refused == 0
    rows = await _rows(pool, endpoint)
    assert all(row["delivered_at"] is not None and row["attempts"] == 1 for row in rows)


async def test_an_event_of_a_rolled_back_change_is_never_sent(
    pool: asyncpg.Pool, dispatch: Dispatch
) -> None:
    receiver = Receiver(["s1"])
    async with receiving(receiver) as url, pool.acquire() as conn:
        _, cipher = await dispatch()
        endpoint = await _register(pool, cipher, url)
        await connections.create_pending(conn, "rb", "default")
        transaction = conn.transaction()
        await transaction.start()
        await outbox.record(
            conn, app="default", connection_id="rb", type="connection.error", version=1, data={}
        )
        assert len(await _rows(pool, endpoint)) == 0  # not committed: nobody sees it
        await transaction.rollback()
        committed = await write_events(pool, ["rb"], 1)
        await until(lambda: len(receiver.received) == 1, 10)
    assert [r.event_id for r in receiver.received] == committed["rb"]
    assert len(await _rows(pool, endpoint)) == 1


async def test_a_receiver_down_for_a_while_gets_every_event_afterwards_in_order(
    pool: asyncpg.Pool, dispatch: Dispatch
) -> None:
    receiver = Receiver(["s1"], available=False)
    async with receiving(receiver) as url:
        _, cipher = await dispatch()
        endpoint = await _register(pool, cipher, url)
        expected = await write_events(pool, ["a", "b", "c"], 8)
        await asyncio.sleep(2)  # the receiver answers 503 meanwhile
        failed = await _rows(pool, endpoint)
        assert sum(row["attempts"] for row in failed) >= 3
        assert all(row["delivered_at"] is None for row in failed)
        receiver.available = True
        await until(lambda: len(receiver.received) >= 24, 20)
    tally = receiver.tally(expected)
    assert (tally.delivered, tally.duplicated, tally.lost, tally.out_of_order) == (24, 0, 0, 0)


async def test_a_lost_2xx_is_the_only_duplicate_and_it_keeps_its_id(
    pool: asyncpg.Pool, dispatch: Dispatch
) -> None:
    receiver = Receiver(["s1"], acks_to_lose=2)
    async with receiving(receiver) as url:
        _, cipher = await dispatch()
        await _register(pool, cipher, url)
        expected = await write_events(pool, ["a", "b"], 5)
        await until(lambda: len(receiver.received) >= 12, 20)
        await asyncio.sleep(0.3)
    tally = receiver.tally(expected)
    assert (tally.delivered, tally.duplicated, tally.lost, tally.out_of_order) == (10, 2, 0, 0)
    first_two = [r.event_id for r in receiver.received[:2]]
    assert sum(r.event_id in first_two for r in receiver.received) == 4


async def test_a_hanging_endpoint_does_not_delay_another(
    pool: asyncpg.Pool, dispatch: Dispatch
) -> None:
    hanging = Receiver(["s1"], delay=30)
    healthy = Receiver(["s1"])
    async with receiving(hanging) as slow_url, receiving(healthy) as url:
        _, cipher = await dispatch(WEBHOOK_CONCURRENCY="4", WEBHOOK_ENDPOINT_CONCURRENCY="2")
        await _register(pool, cipher, slow_url)
        await _register(pool, cipher, url)
        expected = await write_events(pool, [f"c{n}" for n in range(6)], 5)
        took = await until(lambda: len(healthy.received) >= 30, 8)
    assert took < 8
    assert healthy.tally(expected).lost == 0
    assert hanging.received == []  # every send to it is still waiting for its answer
