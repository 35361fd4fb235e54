"""One request budget per BB2 client id, shared by every coroutine of every replica.

A sliding log in Redis: the grant times of the last window live in a sorted set, and a
request is granted only while fewer than ``rate`` grants fall inside the window. Unlike a
token bucket this promises "at most ``rate`` in any window", which is how BB2 counts.
Time comes from Redis (``TIME``), so replicas with skewed clocks still agree. A 429 sets a
shared cool-down key that stops every replica until it expires.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Final

from redis.asyncio import Redis

from worker.constants import (
    BUDGET_COOLDOWN_KEY,
    BUDGET_LOG_KEY,
    BUDGET_WINDOW_MARGIN,
    BUDGET_WINDOW_SECONDS,
)

# Returns 0 when granted, else the microseconds to wait before asking again.
_ACQUIRE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cool = redis.call('PTTL', KEYS[2])
if cool > 0 then return cool * 1000 end
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 500))
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, math.ceil(tonumber(oldest[2]) + window - now))
"""

# Extends the cool-down to ARGV[1] ms from now, never shortens it.
_PAUSE: Final = """
local ms = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < ms then
  redis.call('SET', KEYS[1], '1', 'PX', ms)
end
return 0
"""


class RequestBudget:
    """Grants request slots for one client id against the shared Redis budget."""

    def __init__(
        self,
        redis: Redis,
        client_id: str,
        rate: int,
        *,
        window: float = BUDGET_WINDOW_SECONDS + BUDGET_WINDOW_MARGIN,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._log_key = BUDGET_LOG_KEY.format(client=client_id)
        self._cooldown_key = BUDGET_COOLDOWN_KEY.format(client=client_id)
        self._rate = rate
        self._window_us = int(window * 1_000_000)
        self._acquire = redis.register_script(_ACQUIRE)
        self._pause = redis.register_script(_PAUSE)
        self._sleep = sleep

    async def try_acquire(self) -> float:
        """Take a slot if one is free: 0.0 when granted, else the seconds to wait."""
        wait_us = await self._acquire(
            keys=[self._log_key, self._cooldown_key],
            args=[self._rate, self._window_us, secrets.token_hex(8)],
        )
        return int(wait_us) / 1_000_000

    async def acquire(self) -> float:
        """Wait until a slot is granted; returns the seconds spent waiting."""
        waited = 0.0
        while (wait := await self.try_acquire()) > 0:
            await self._sleep(wait)
            waited += wait
        return waited

    async def pause(self, seconds: float) -> None:
        """Stop every replica from sending for this client id for ``seconds``."""
        await self._pause(keys=[self._cooldown_key], args=[max(1, int(seconds * 1000))])
