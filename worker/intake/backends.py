"""What the intake app talks to (Redis for the queue and event ids, Postgres for status),
opened once for the app's lifetime."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Final, TypeAlias

import asyncpg
from arq.connections import ArqRedis
from redis.asyncio import Redis

from worker.jobs.queue import open_queue
from worker.settings import Settings
from worker.store.db import create_pool

# Status reads are single short queries; a few connections serve many requests.
POOL_SIZE: Final = 4


@dataclass(frozen=True)
class Backends:
    """The queue, the Redis holding accepted event ids, and the Postgres pool."""

    queue: ArqRedis
    events: Redis
    pool: asyncpg.Pool


OpenBackends: TypeAlias = Callable[[Settings], AbstractAsyncContextManager[Backends]]


@asynccontextmanager
async def open_backends(settings: Settings) -> AsyncIterator[Backends]:
    """Connect to Redis and Postgres; close both on exit."""
    async with AsyncExitStack() as stack:
        queue = await open_queue(settings.redis_url)
        stack.push_async_callback(queue.aclose)
        pool = await create_pool(settings.database_url, max_size=POOL_SIZE)
        stack.push_async_callback(pool.close)
        # Event ids live next to the jobs they guard: one Redis, one connection pool.
        yield Backends(queue=queue, events=queue, pool=pool)
