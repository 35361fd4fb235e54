"""Putting jobs on the queue, with ids that make duplicate events collapse into one job."""

from __future__ import annotations

from arq.connections import ArqRedis, create_pool

from worker.constants import JOB_CONNECT, QUEUE_NAME
from worker.jobs.connect import code_fingerprint
from worker.jobs.payloads import ConnectJob
from worker.jobs.worker import deserialize, redis_settings, serialize


async def open_queue(redis_url: str) -> ArqRedis:
    """An arq pool that serializes jobs the way the workers read them."""
    return await create_pool(
        redis_settings(redis_url),
        job_serializer=serialize,
        job_deserializer=deserialize,
        default_queue_name=QUEUE_NAME,
    )


async def enqueue_connect(queue: ArqRedis, job: ConnectJob) -> str | None:
    """Queue a connect job; None when the same event is already queued or running.

    The id includes the code's fingerprint: a repeated event collapses, while a new
    authorization of the same connection is a new job.
    """
    job_id = f"{JOB_CONNECT}:{job.connection_id}:{code_fingerprint(job.code)[:16]}"
    queued = await queue.enqueue_job(JOB_CONNECT, _job_id=job_id, **job.model_dump())
    return None if queued is None else queued.job_id
