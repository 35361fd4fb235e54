"""The replica's probes and `bbingest health` against real and unreachable services."""

from __future__ import annotations

import asyncio

import httpx
from redis.asyncio import Redis
from structlog.testing import capture_logs

from tests.integration.conftest import DATABASE_URL
from worker import metrics, pauses
from worker.ops import Heartbeat, live_replicas, operations, probe_app, readiness
from worker.runtime.lanes import LANES
from worker.store.db import create_pool


async def test_probes_and_heartbeat(redis: Redis) -> None:
    pool = await create_pool(DATABASE_URL, max_size=2)
    try:
        heartbeat = Heartbeat(redis, pool, replica="host-a:1")
        transport = httpx.ASGITransport(app=probe_app(heartbeat))
        async with httpx.AsyncClient(transport=transport, base_url="http://probe") as http:
            assert (await http.get("/healthz")).status_code == 503  # never beaten yet
            await heartbeat.beat()
            assert (await http.get("/healthz")).status_code == 200
            ready = await http.get("/readyz")
            assert (ready.status_code, ready.json()) == (200, {"redis": "ok", "postgres": "ok"})
            metrics = (await http.get("/metrics")).text
            for lane in LANES:  # every lane's queue is measured
                assert f'bbingest_queue_depth{{queue="{lane.queue}"}}' in metrics
        assert await live_replicas(redis) == ["host-a:1"]
    finally:
        await pool.close()


async def test_readiness_names_an_unreachable_redis() -> None:
    dead: Redis = Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.5)
    pool = await create_pool(DATABASE_URL, max_size=1)
    try:
        checks = await readiness(dead, pool)
    finally:
        await pool.close()
        await dead.aclose()
    assert checks["postgres"] == "ok"
    assert checks["redis"] != "ok"


async def test_connections_are_counted_once_a_minute_not_every_beat(redis: Redis) -> None:
    pool = await create_pool(DATABASE_URL, max_size=2)
    try:
        await pool.execute("TRUNCATE connections CASCADE")
        metrics.CONNECTIONS.labels("default", "active").set(7)  # a count from before: must not stay
        heartbeat = Heartbeat(redis, pool, replica="host-b:1")
        await heartbeat.beat()
        await pool.execute(
            "INSERT INTO connections (connection_id, status) VALUES ('g1', 'active')"
        )
        await heartbeat.beat()  # within the minute: the gauge keeps the last count
        assert metrics.CONNECTIONS.labels("default", "active")._value.get() == 0
        heartbeat.next_count = 0.0
        await heartbeat.beat()
        assert metrics.CONNECTIONS.labels("default", "active")._value.get() == 1
    finally:
        await pool.execute("TRUNCATE connections CASCADE")
        await pool.close()


async def test_a_replica_starting_without_redis_is_not_ended_by_its_first_heartbeat() -> None:
    # Redis gone as the replica starts: the beat fails in the heartbeat's task (logged), and
    # the replica goes on to its workers, which wait for Redis; it used to end in a traceback.
    dead: Redis = Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.5)
    pool = await create_pool(DATABASE_URL, max_size=1)
    try:
        heartbeat = Heartbeat(dead, pool, replica="host-b:1")
        with capture_logs() as logs:
            async with operations(heartbeat, port=0):
                for _ in range(500):  # the beat fails within milliseconds
                    if logs:
                        break
                    await asyncio.sleep(0.01)
        assert not heartbeat.alive()
        assert logs[0]["event"] == "heartbeat_failed"
    finally:
        await pool.close()
        await dead.aclose()


async def test_every_replica_reports_which_app_cms_holds_inactive(
    redis: Redis, migrated: str
) -> None:
    pool = await create_pool(migrated, max_size=2)
    try:
        heartbeat = Heartbeat(redis, pool, replica="host-c:1")
        await pauses.mark_paused(redis, pool, "acme")  # met by another replica
        metrics.APP_PAUSED.labels("acme").set(0)  # this replica never saw the refusal
        await heartbeat.beat()
        assert metrics.APP_PAUSED.labels("acme")._value.get() == 1
        await pauses.mark_active(redis, pool, "acme")
        metrics.APP_PAUSED.labels("acme").set(1)  # nor the recovery
        await heartbeat.beat()
        assert metrics.APP_PAUSED.labels("acme")._value.get() == 0
    finally:
        await pool.close()
