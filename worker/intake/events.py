"""Accepting an event at most once: its id is recorded in Redis, then its job is queued."""

from __future__ import annotations

from typing import Final

import structlog
from arq.connections import ArqRedis
from redis.asyncio import Redis
from redis.exceptions import RedisError

from worker.constants import REDIS_PREFIX
from worker.jobs.payloads import JobPayload
from worker.jobs.queue import enqueue

log = structlog.get_logger(__name__)

EVENT_KEY: Final = REDIS_PREFIX + ":intake:event:{event_id}"
# Upstreams retry for hours at most; a week of memory catches every realistic redelivery.
EVENT_TTL_SECONDS: Final = 7 * 24 * 3600


async def accept(redis: Redis, queue: ArqRedis, event_id: str, job: JobPayload) -> bool:
    """Queue ``job`` unless ``event_id`` was accepted before; False for such a duplicate.

    A job identical to one already queued or running merges into it (stable job ids), which
    still counts as accepted.
    """
    key = EVENT_KEY.format(event_id=event_id)
    if not await redis.set(key, job.job_id(), nx=True, ex=EVENT_TTL_SECONDS):
        return False
    try:
        await enqueue(queue, job)
    except BaseException:
        # Not queued (or unknown, when cancelled): forget the event so that the upstream's
        # retry is queued rather than answered as a duplicate. A job that did reach the queue
        # meanwhile collapses with the retry's through its stable job id.
        await _forget(redis, key)
        raise
    return True


async def _forget(redis: Redis, key: str) -> None:
    try:
        await redis.delete(key)
    except (RedisError, OSError):
        # Redis is gone too: the key expires with its TTL, and until then a retry is taken
        # for a duplicate. Say so, since the event is then lost until the upstream resends it
        # with a new id.
        log.exception("intake_event_key_stuck", key=key)
