"""Apps CMS made inactive: one shared flag per app in Redis, seen by every replica.

CMS answers an inactive app's FHIR calls 401 and its refreshes and revocations 403, all
saying "This application, NAME, is temporarily inactive." (FACTS.md, Authorization).
Nobody's consent changed: the app's jobs wait, and one of them asks again about once a
minute (the probe); the first that gets through clears the flag for all. Each transition is
also told upstream once (``app.paused``, ``app.resumed``), through a Postgres row
(:mod:`worker.store.app_pauses`) written with its event.
"""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import structlog
from redis.asyncio import Redis

from worker import errors, metrics
from worker.constants import (
    APP_PAUSE_PROBE_SECONDS,
    APP_PAUSED_KEY,
    APP_PAUSED_TTL_SECONDS,
    APP_PROBE_KEY,
)
from worker.events.emit import emit
from worker.outages import open_redis
from worker.store import app_pauses

log = structlog.get_logger(__name__)


async def mark_paused(redis: Redis, pool: asyncpg.Pool, app: str) -> None:
    """Note that CMS refused ``app`` as inactive (the first refusal is logged, and told as
    ``app.paused`` once, whichever replica meets it first)."""
    async with pool.acquire() as conn, conn.transaction():
        if (paused_at := await app_pauses.pause(conn, app)) is not None:
            await emit(conn, "app.paused", app=app, connection_id=None, paused_at=paused_at)
    key = APP_PAUSED_KEY.format(app=app)
    since = datetime.now(UTC).isoformat()
    if await redis.set(key, since, nx=True, ex=APP_PAUSED_TTL_SECONDS):
        # The probe period starts now: the jobs that meet the refusal wait a full period.
        await redis.set(APP_PROBE_KEY.format(app=app), "1", ex=APP_PAUSE_PROBE_SECONDS)
        log.warning("app_inactive_at_cms", app=app)
    else:
        await redis.expire(key, APP_PAUSED_TTL_SECONDS)
    metrics.APP_PAUSED.labels(app).set(1)


async def mark_active(redis: Redis, pool: asyncpg.Pool, app: str) -> None:
    """``app`` was served again: its other jobs go ahead (told as ``app.resumed`` once)."""
    async with pool.acquire() as conn, conn.transaction():
        if (paused_at := await app_pauses.resume(conn, app)) is not None:
            resumed = {"paused_at": paused_at, "resumed_at": datetime.now(UTC)}
            await emit(conn, "app.resumed", app=app, connection_id=None, **resumed)
    if await redis.delete(APP_PAUSED_KEY.format(app=app)):
        log.info("app_active_again", app=app)
    metrics.APP_PAUSED.labels(app).set(0)


async def may_call(redis: Redis, app: str) -> bool:
    """Whether a job of ``app`` may ask BB2 now: always while the app is not paused; while
    it is, one job per probe period."""
    if not await redis.exists(APP_PAUSED_KEY.format(app=app)):
        return True
    return bool(
        await redis.set(APP_PROBE_KEY.format(app=app), "1", nx=True, ex=APP_PAUSE_PROBE_SECONDS)
    )


async def take_turn(redis: Redis, app: str) -> None:
    """Go ahead, or raise AppPaused when ``app`` is paused and another job probes now."""
    if not await may_call(redis, app):
        raise errors.AppPaused(f"app {app} is inactive at CMS; waiting for the next probe")


async def paused_since(redis: Redis) -> dict[str, datetime]:
    """Every paused app and since when CMS has refused it."""
    prefix = APP_PAUSED_KEY.format(app="")
    found: dict[str, datetime] = {}
    async for key in redis.scan_iter(match=prefix + "*"):
        name = key.decode() if isinstance(key, bytes) else str(key)
        value = await redis.get(name)
        if value is not None:
            text = value.decode() if isinstance(value, bytes) else str(value)
            found[name.removeprefix(prefix)] = datetime.fromisoformat(text)
    return found


async def read_paused(redis_url: str) -> dict[str, datetime]:
    """:func:`paused_since` for the command line, on a client of its own."""
    redis = open_redis(redis_url)
    try:
        return await paused_since(redis)
    finally:
        await redis.aclose()
