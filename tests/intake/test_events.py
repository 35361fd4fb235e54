"""Events through the intake: queued in their lanes, once per event id, run by a real worker."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import httpx
from arq.connections import ArqRedis
from redis.asyncio import Redis

from tests.intake.conftest import INTAKE_ENV, Connect, get_signed, intake_settings, post_signed
from tests.integration.conftest import Start
from tests.integration.support import (
    authorized_job,
    patient_id,
    served_resources,
    stored_resources,
)
from worker.constants import QUEUE_BULK, QUEUE_INTERACTIVE
from worker.emulator.config import EmulatorConfig
from worker.intake.backends import Backends, OpenBackends
from worker.intake.events import EVENT_KEY, EVENT_TTL_SECONDS
from worker.intake.models import ConnectionStatusBody
from worker.jobs.payloads import ExchangeJob
from worker.jobs.queue import deserialize, serialize
from worker.jobs.worker import run_replica
from worker.settings import Settings


async def test_a_signed_connect_event_ends_as_an_active_connection(
    pool: asyncpg.Pool, intake: httpx.AsyncClient, start: Start
) -> None:
    # The worker needs the emulator's settings; the intake only Redis and Postgres.
    config = EmulatorConfig(beneficiaries=2)
    emulator, settings, _ = await start(config, **INTAKE_ENV)
    client = intake
    job = await authorized_job(emulator.base_url, 1, connection_id="app-conn-1")
    event = {"event_id": "evt-connect-1", **job.model_dump()}

    queued = await post_signed(client, "/v1/events/connect", event)
    assert queued.status_code == 202, queued.text
    exchange = ExchangeJob(**job.model_dump())  # a connect event queues the code exchange
    assert queued.json() == {"status": "queued", "job_id": exchange.job_id()}
    assert (await get_signed(client, "/v1/connections/app-conn-1")).status_code == 404

    await run_replica(settings, burst=True)

    answer = await get_signed(client, "/v1/connections/app-conn-1")
    assert answer.status_code == 200
    status = ConnectionStatusBody.model_validate(answer.json())  # the documented shape
    assert status.status == "active"
    assert (status.app, status.environment) == ("default", "sandbox")
    assert status.patient_id == patient_id(1)
    assert sum(status.counts.values()) == len(served_resources(config, 1))
    assert await stored_resources(pool, "app-conn-1") == served_resources(config, 1)
    assert status.last_error is None


async def queued_job(redis: Redis, job_id: str) -> dict[str, object]:
    """The job arq stored under ``job_id`` (JSON)."""
    raw = await redis.get(f"arq:job:{job_id}")
    assert raw is not None, f"no job {job_id}"
    job: dict[str, object] = deserialize(raw)
    return job


async def test_unlink_and_resync_are_queued_in_their_lanes(
    redis: Redis, intake: httpx.AsyncClient
) -> None:
    unlink = await post_signed(
        intake, "/v1/events/unlink", {"event_id": "e1", "connection_id": "c1"}
    )
    resync = await post_signed(
        intake, "/v1/events/resync", {"event_id": "e2", "connection_id": "c2"}
    )

    assert unlink.status_code == resync.status_code == 202
    assert unlink.json()["job_id"] == "unlink:c1"
    assert resync.json()["job_id"] == "resync:c2"
    assert await redis.zrange(QUEUE_INTERACTIVE, 0, -1) == [b"unlink:c1"]
    assert await redis.zrange(QUEUE_BULK, 0, -1) == [b"resync:c2"]
    # The worker gets the job's payload only: an event_id would make it reject the job.
    assert (await queued_job(redis, "unlink:c1"))["k"] == {"connection_id": "c1"}
    assert (await queued_job(redis, "resync:c2"))["f"] == "resync"


async def test_the_same_event_id_twice_queues_one_job(
    redis: Redis, intake: httpx.AsyncClient
) -> None:
    event = {"event_id": "evt:42", "connection_id": "c1"}

    first = await post_signed(intake, "/v1/events/unlink", event)
    again = await post_signed(intake, "/v1/events/unlink", event)

    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate"}
    assert await redis.zcard(QUEUE_INTERACTIVE) == 1
    ttl = await redis.ttl(EVENT_KEY.format(event_id="evt:42"))
    assert EVENT_TTL_SECONDS - 10 < ttl <= EVENT_TTL_SECONDS
    # Another event for the same work merges into the queued job (stable job id).
    other = await post_signed(intake, "/v1/events/unlink", {**event, "event_id": "evt:43"})
    assert other.json() == {"status": "queued", "job_id": "unlink:c1"}
    assert await redis.zcard(QUEUE_INTERACTIVE) == 1


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def broken_queue(settings: Settings) -> OpenBackends:
    """Backends whose queue is a Redis nobody listens on; event ids and Postgres work."""

    @asynccontextmanager
    async def _open(_: Settings) -> AsyncIterator[Backends]:
        queue = ArqRedis(
            host="127.0.0.1",
            port=unused_port(),
            job_serializer=serialize,
            job_deserializer=deserialize,
        )
        events: Redis = Redis.from_url(settings.redis_url)
        pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=1)
        try:
            yield Backends(queue=queue, events=events, pool=pool)
        finally:
            await pool.close()
            await events.aclose()
            await queue.aclose()

    return _open


async def test_a_failed_enqueue_forgets_the_event_so_a_retry_is_queued(
    redis: Redis, intake: httpx.AsyncClient, connect_intake: Connect
) -> None:
    settings = intake_settings()
    failing = await connect_intake(settings, broken_queue(settings))
    event = {"event_id": "evt-retry", "connection_id": "c1"}

    refused = await post_signed(failing, "/v1/events/unlink", event)

    assert refused.status_code == 503
    assert refused.json() == {"error": "queue unavailable; retry the event"}
    assert await redis.exists(EVENT_KEY.format(event_id="evt-retry")) == 0
    retried = await post_signed(intake, "/v1/events/unlink", event)
    assert retried.status_code == 202
    assert await redis.zrange(QUEUE_INTERACTIVE, 0, -1) == [b"unlink:c1"]
