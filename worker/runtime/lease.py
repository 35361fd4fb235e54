"""A short, renewed lease on a running job, so that a crashed replica's job runs again soon.

arq marks a running job with an in-progress key that lives for the longest job timeout plus
ten seconds (half an hour here): after a SIGKILL or an OOM kill nobody could run the job
before that key expired. While a job runs, its replica keeps that key alive for only
``JOB_LEASE_SECONDS`` at a time; when the replica dies the lease lapses within that time
and another replica picks the job up (and resumes from the saved cursor).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from arq.constants import in_progress_key_prefix
from redis.asyncio import Redis

from worker.outages import REDIS_DOWN

log = structlog.get_logger(__name__)


async def _renew(redis: Redis, key: str, seconds: float) -> None:
    # A renewal that meets a Redis restart is tried again: giving up would let the lease
    # lapse under a job that still runs, and another replica would run it too.
    while True:
        try:
            await redis.pexpire(key, round(seconds * 1000))
        except REDIS_DOWN as exc:
            log.warning("lease_renewal_failed", error=type(exc).__name__)
        await asyncio.sleep(seconds / 3)


@asynccontextmanager
async def lease(redis: Redis, job_id: str, seconds: float) -> AsyncIterator[None]:
    """Hold the job's in-progress key for ``seconds`` at a time while inside."""
    renewal = asyncio.create_task(_renew(redis, in_progress_key_prefix + job_id, seconds))
    try:
        yield
    finally:
        renewal.cancel()
        await asyncio.gather(renewal, return_exceptions=True)
