"""One request budget per BB2 client id, shared by every coroutine of every replica.

GCRA (the generic cell rate algorithm) in Redis: one key holds the theoretical arrival
time of the next request, and a request is granted when that time has come. With a burst
of ``B`` the emission interval is ``window / (limit - B + 1)``, which admits at most
``limit`` requests in any window (a GCRA admits ``B + r·W - 1``). The default burst of 1
spaces requests evenly: a burst of simultaneous grants would reach BB2 one after another,
late, and crowd the next window at the server, which is where the limit is counted.
Time comes from Redis (``TIME``), so replicas with skewed clocks still agree. A 429 sets a
shared cool-down key that stops every replica until it expires.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

from redis.asyncio import Redis

from worker.constants import (
    BUDGET_COOLDOWN_KEY,
    BUDGET_TAT_KEY,
    BUDGET_WINDOW_MARGIN,
    BUDGET_WINDOW_SECONDS,
)

# KEYS: theoretical arrival time, cool-down. ARGV: emission interval and tolerance (µs).
# Returns 0 when granted, else the microseconds to wait before asking again.
_ACQUIRE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cool = redis.call('PTTL', KEYS[2])
if cool > 0 then return cool * 1000 end
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or 0), now)
if tat - now > tolerance then return math.ceil(tat - now - tolerance) end
redis.call('SET', KEYS[1], string.format('%d', tat + interval),
           'PX', math.ceil((tat + interval - now) / 1000) + 1000)
return 0
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
        burst: int = 1,
        window: float = BUDGET_WINDOW_SECONDS + BUDGET_WINDOW_MARGIN,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not 1 <= burst <= rate:
            raise ValueError("burst must be between 1 and the rate")
        self._tat_key = BUDGET_TAT_KEY.format(client=client_id)
        self._cooldown_key = BUDGET_COOLDOWN_KEY.format(client=client_id)
        interval = window / (rate - burst + 1)
        self._interval_us = round(interval * 1_000_000)
        self._tolerance_us = round((burst - 1) * interval * 1_000_000)
        self._acquire = redis.register_script(_ACQUIRE)
        self._pause = redis.register_script(_PAUSE)
        self._sleep = sleep

    async def try_acquire(self) -> float:
        """Take a slot if one is free: 0.0 when granted, else the seconds to wait."""
        wait_us = await self._acquire(
            keys=[self._tat_key, self._cooldown_key],
            args=[self._interval_us, self._tolerance_us],
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
