"""Putting jobs on the queue, with ids that make duplicate events collapse into one job."""

from __future__ import annotations

from arq.connections import ArqRedis, create_pool

from worker.constants import QUEUE_INTERACTIVE
from worker.jobs.payloads import JobPayload
from worker.jobs.worker import deserialize, redis_settings, serialize


async def open_queue(redis_url: str) -> ArqRedis:
    """An arq pool that serializes jobs the way the workers read them."""
    return await create_pool(
        redis_settings(redis_url),
        job_serializer=serialize,
        job_deserializer=deserialize,
        default_queue_name=QUEUE_INTERACTIVE,
    )


async def enqueue(queue: ArqRedis, job: JobPayload) -> str | None:
    """Queue ``job``; None when the same event is already queued or running."""
    queued = await queue.enqueue_job(
        job.job_name, _job_id=job.job_id(), _queue_name=job.queue_name, **job.model_dump()
    )
    return None if queued is None else queued.job_id
