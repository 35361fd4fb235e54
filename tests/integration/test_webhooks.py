"""Webhook delivery with a real receiver on loopback, real Postgres, the dispatcher of the
replicas (worker.webhooks.dispatcher): exactly once unless a 2xx is lost, in order per
connection, through outages, signed."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tests.integration.conftest import Start
from tests.integration.webhook_support import (
    Dispatch,
    deliveries_of,
    receiving,
    register,
    until,
    write_events,
)
from worker.emulator.config import EmulatorConfig
from worker.jobs.worker import run_replica
from worker.store import connections, outbox
from worker.webhooks import dispatcher
from worker.webhooks.receiver import Receiver


async def test_every_event_is_delivered_once_in_order_by_two_replicas(
    pool: asyncpg.Pool, dispatch: Dispatch
) -> None:
    receiver = Receiver(["s1"])
    async with receiving(receiver) as url:
        _, cipher = await dispatch()
        await dispatch()  # a second replica competes for the same rows
        endpoint = await register(pool, cipher, url)
        expected = await write_events(pool, [f"c{n}" for n in range(5)], 12)
        await until(lambda: len(receiver.received) >= 60, 20)
        await asyncio.sleep(0.3)  # a duplicate would arrive by now
    tally = receiver.tally(expected)
    assert (tally.delivered, tally.duplicated, tally.lost, tally.out_of_order) == (60, 0, 0, 0)
    assert receiver.refused == 0
    rows = await deliveries_of(pool, endpoint)
    assert all(row["delivered_at"] is not None and row["attempts"] == 1 for row in rows)


async def test_an_event_of_a_rolled_back_change_is_never_sent(
    pool: asyncpg.Pool, dispatch: Dispatch
) -> None:
    receiver = Receiver(["s1"])
    async with receiving(receiver) as url, pool.acquire() as conn:
        _, cipher = await dispatch()
        endpoint = await register(pool, cipher, url)
        await connections.create_pending(conn, "rb", "default")
        transaction = conn.transaction()
        await transaction.start()
        await outbox.record(
            conn, app="default", connection_id="rb", type="connection.error", version=1, data={}
        )
        assert len(await deliveries_of(pool, endpoint)) == 0  # not committed: nobody sees it
        await transaction.rollback()
        committed = await write_events(pool, ["rb"], 1)
        await until(lambda: len(receiver.received) == 1, 10)
    assert [r.event_id for r in receiver.received] == committed["rb"]
    assert len(await deliveries_of(pool, endpoint)) == 1


async def test_a_receiver_down_for_a_while_gets_every_event_afterwards_in_order(
    pool: asyncpg.Pool, dispatch: Dispatch
) -> None:
    receiver = Receiver(["s1"], available=False)
    async with receiving(receiver) as url:
        _, cipher = await dispatch()
        endpoint = await register(pool, cipher, url)
        expected = await write_events(pool, ["a", "b", "c"], 8)
        await asyncio.sleep(2)  # the receiver answers 503 meanwhile
        failed = await deliveries_of(pool, endpoint)
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
        await register(pool, cipher, url)
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
        await register(pool, cipher, slow_url)
        await register(pool, cipher, url)
        expected = await write_events(pool, [f"c{n}" for n in range(6)], 5)
        took = await until(lambda: len(healthy.received) >= 30, 8)
    assert took < 8
    assert healthy.tally(expected).lost == 0
    assert hanging.received == []  # every send to it is still waiting for its answer


async def test_a_worker_replica_runs_the_dispatcher(pool: asyncpg.Pool, start: Start) -> None:
    receiver = Receiver(["s1"])
    _, settings, services = await start(EmulatorConfig(beneficiaries=1))
    async with receiving(receiver) as url:
        await register(pool, services.cipher, url)
        replica = asyncio.create_task(run_replica(settings))
        try:
            expected = await write_events(pool, ["a", "b"], 3)
            await until(lambda: len(receiver.received) == 6, 15)
        finally:
            replica.cancel()
            await asyncio.gather(replica, return_exceptions=True)
    assert receiver.tally(expected).out_of_order == 0


async def test_a_committed_event_wakes_the_dispatcher_without_waiting_for_its_poll(
    pool: asyncpg.Pool, dispatch: Dispatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dispatcher, "POLL_SECONDS", 60.0)  # only the NOTIFY can wake it
    receiver = Receiver(["s1"])
    async with receiving(receiver) as url:
        _, cipher = await dispatch()
        await register(pool, cipher, url)
        await asyncio.sleep(0.5)  # the dispatcher has found nothing due and sleeps
        await write_events(pool, ["a"], 1)
        took = await until(lambda: len(receiver.received) == 1, 10)
    assert took < 5
