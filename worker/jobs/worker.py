"""arq worker settings: JSON job serializer (never pickle), functions, start-up and shutdown."""

from __future__ import annotations

from typing import Any

import orjson
import structlog
from arq import Worker
from arq.connections import RedisSettings
from arq.worker import func

from worker.constants import (
    JOB_CONNECT,
    JOB_KEEP_RESULT_SECONDS,
    JOB_MAX_TRIES,
    JOB_TIMEOUT_SECONDS,
    JOB_UNLINK,
    QUEUE_NAME,
)
from worker.jobs.connect import connect
from worker.jobs.services import close_services, open_services
from worker.jobs.unlink import unlink
from worker.settings import Settings

log = structlog.get_logger(__name__)


def serialize(data: Any) -> bytes:
    """JSON for everything arq stores; exceptions in failed results become their text."""
    return orjson.dumps(data, default=str)


def deserialize(data: bytes) -> Any:
    """The inverse of :func:`serialize`; JSON cannot carry code, unlike pickle."""
    return orjson.loads(data)


def redis_settings(redis_url: str) -> RedisSettings:
    """arq's connection settings from ``REDIS_URL``."""
    return RedisSettings.from_dsn(redis_url)


def build_worker(
    settings: Settings, *, burst: bool = False, concurrency: int | None = None
) -> Worker:
    """One worker replica; ``concurrency`` caps its jobs (and sockets to BB2) at once."""
    max_jobs = concurrency or settings.worker_concurrency

    async def startup(ctx: dict[str, Any]) -> None:
        ctx["services"] = await open_services(settings, concurrency=max_jobs)
        log.info("worker_started", concurrency=max_jobs, burst=burst)

    async def shutdown(ctx: dict[str, Any]) -> None:
        if "services" in ctx:
            await close_services(ctx["services"])
        log.info("worker_stopped")

    return Worker(
        functions=[
            func(connect, name=JOB_CONNECT, max_tries=JOB_MAX_TRIES),
            func(unlink, name=JOB_UNLINK, max_tries=JOB_MAX_TRIES),
        ],
        queue_name=QUEUE_NAME,
        redis_settings=redis_settings(settings.redis_url),
        on_startup=startup,
        on_shutdown=shutdown,
        burst=burst,
        max_jobs=max_jobs,
        job_timeout=JOB_TIMEOUT_SECONDS,
        keep_result=JOB_KEEP_RESULT_SECONDS,
        max_tries=JOB_MAX_TRIES,
        poll_delay=0.2,
        job_serializer=serialize,
        job_deserializer=deserialize,
        log_results=False,
    )
