"""Outages of our own Postgres and Redis: which driver exceptions mean one, how Redis
clients ride out a blip, and how long a replica waits for Redis to come back.

Everything here decides; nothing sleeps or talks to a server, except the client factories.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from redis.asyncio import Redis
from redis.asyncio.retry import Retry as RedisRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from worker import errors
from worker.constants import REDIS_CLIENT_RETRIES, REDIS_OUTAGE_POLL_SECONDS
from worker.transport import redis_tls_options

# Postgres closing or refusing connections: a dropped socket (class 08), an administrator's
# or a crash's shutdown, "the database system is starting up" (class 57P).
_POSTGRES_DOWN = (asyncpg.PostgresConnectionError, asyncpg.exceptions.OperatorInterventionError)
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError)  # BusyLoadingError is a ConnectionError


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error and what caused it: redis-py turns a dropped connection into a WatchError
    inside a transaction, asyncpg a dropped one into "connection is closed" on rollback."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def unavailable(error: BaseException) -> errors.ServiceUnavailable | None:
    """The outage ``error`` stands for, or None when it is not one.

    A bare ``ConnectionError`` or ``TimeoutError`` (refused, reset, connect timeout) comes
    from asyncpg: httpx's are turned into BB2 errors, and redis-py wraps its own.
    """
    for cause in _chain(error):
        if isinstance(cause, errors.ServiceUnavailable):
            return cause
        if isinstance(cause, errors.IngestError):
            return None  # decided already: a BB2 transport error wraps a refused socket too
        if isinstance(cause, REDIS_DOWN):
            return errors.RedisUnavailable(f"Redis unavailable ({type(cause).__name__})")
        if isinstance(cause, (*_POSTGRES_DOWN, ConnectionError, TimeoutError)):
            return errors.DatabaseUnavailable(f"Postgres unavailable ({type(cause).__name__})")
    return None


def redis_retry_options() -> dict[str, Any]:
    """redis-py options that repeat a command on a fresh connection after a dropped one
    (about 0.4 s in all): a pooled socket that died with a restart costs no error."""
    return {
        "retry": RedisRetry(ExponentialBackoff(cap=0.2, base=0.05), REDIS_CLIENT_RETRIES),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }


def open_redis(url: str) -> Redis:
    """A Redis client for ``url`` that rides out a dropped connection."""
    client: Redis = Redis.from_url(url, **redis_retry_options(), **redis_tls_options(url))
    return client


@dataclass
class RedisOutage:
    """How long Redis has been away, and whether a replica should still wait for it.

    ``now`` values are monotonic seconds from the caller, so that tests need no clock.
    """

    patience: float
    since: float | None = field(default=None)
    failures: int = field(default=0)

    def failed(self, now: float) -> float:
        """Note a failed call; the seconds to wait before the next, or RedisUnavailable when
        Redis has been away longer than ``patience``."""
        if self.since is None:
            self.since = now
        self.failures += 1
        if now - self.since > self.patience:
            raise errors.RedisUnavailable(
                f"Redis unavailable for {now - self.since:.0f} s (REDIS_OUTAGE_SECONDS)"
            )
        return min(REDIS_OUTAGE_POLL_SECONDS, 0.1 * 2.0 ** (self.failures - 1))

    def recovered(self, now: float) -> float | None:
        """Note a working call; the outage's length when one just ended, else None."""
        if self.since is None:
            return None
        lasted, self.since, self.failures = now - self.since, None, 0
        return lasted


def is_redis_outage(error: BaseException) -> bool:
    """Whether ``error`` means Redis is away (not a bug, nor a Postgres outage)."""
    return isinstance(unavailable(error), errors.RedisUnavailable)
