"""The queue's wire format and the way onto it: JSON (never pickle), stable job ids."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
from arq.connections import ArqRedis, RedisSettings, create_pool

from worker.constants import QUEUE_INTERACTIVE
from worker.jobs.payloads import JobPayload
from worker.outages import redis_retry_options
from worker.runtime.lanes import Lane
from worker.transport import redis_tls_options


def serialize(data: Any) -> bytes:
    """JSON for everything arq stores; exceptions in failed results become their text."""
    return orjson.dumps(data, default=str)


def deserialize(data: bytes) -> Any:
    """The inverse of :func:`serialize`; JSON cannot carry code, unlike pickle."""
    return orjson.loads(data)


def redis_settings(redis_url: str) -> RedisSettings:
    """arq's connection settings from ``REDIS_URL``, riding out a dropped connection, and on
    ``rediss://`` checking the server's certificate and hostname."""
    return replace(
        RedisSettings.from_dsn(redis_url), **redis_retry_options(), **redis_tls_options(redis_url)
    )


async def open_queue(redis_url: str) -> ArqRedis:
    """An arq pool that serializes jobs the way the workers read them."""
    return await create_pool(
        redis_settings(redis_url),
        job_serializer=serialize,
        job_deserializer=deserialize,
        default_queue_name=QUEUE_INTERACTIVE,
    )


async def enqueue(queue: ArqRedis, job: JobPayload, *, lane: Lane | None = None) -> str | None:
    """Queue ``job`` in its lane (or in ``lane``: housekeeping nobody waits for goes to the
    bulk lane); None when the same event is already queued or running. Fields at their
    default stay off the wire: a replica not yet upgraded reads a job whose optional field
    (say an unlink's ``purge``) it does not know yet, unless it matters."""
    queued = await queue.enqueue_job(
        job.job_name,
        _job_id=job.job_id(),
        _queue_name=(lane or job.lane).queue,
        _expires=job.payload_ttl(),
        **job.model_dump(exclude_defaults=True),
    )
    return None if queued is None else queued.job_id
