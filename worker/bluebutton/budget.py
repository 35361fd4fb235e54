"""One request budget per BB2 client id, shared by every coroutine of every replica.

GCRA (the generic cell rate algorithm) in Redis: one key holds the theoretical arrival
time of the next request, and a request is granted when that time has come. With a burst
of ``B`` the emission interval is ``window / (limit - B + 1)``, which admits at most
``limit`` requests in any window (a GCRA admits ``B + r·W - 1``). The default burst of 1
spaces requests evenly: a burst of simultaneous grants would reach BB2 one after another,
late, and crowd the next window at the server, which is where the limit is counted.
Three priorities share the budget: a code exchange (urgent: the code dies 60 s after the
beneficiary consented, FACTS.md) goes before everything; interactive requests (a person is
waiting: first syncs, unlinks) go next; bulk requests (resync) are refused while any
interactive or urgent one waits, and interactive ones while any urgent one does. Time
comes from Redis (``TIME``), so replicas with skewed clocks still agree. A 429 sets a shared
cool-down key that stops every replica until it expires and halves the rate of every
replica for a while; so does a lower limit BB2 announces in ``X-RateLimit-Limit``.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Final

from redis.asyncio import Redis

from worker.constants import (
    BUDGET_COOLDOWN_KEY,
    BUDGET_SERVER_LIMIT_KEY,
    BUDGET_SERVER_LIMIT_TTL,
    BUDGET_TAT_KEY,
    BUDGET_URGENT_KEY,
    BUDGET_WAITING_KEY,
    BUDGET_WINDOW_SECONDS,
)

# KEYS: theoretical arrival time, cool-down, the limit the server announced, and the
# interactive and the urgent requests waiting (sorted sets: member = waiter, score = when
# it lapses). ARGV: our rate, burst and window (µs), the waiter id, the priority (BULK,
# INTERACTIVE, URGENT). A waiter registers in its priority's set; a request is refused
# while any waiter of a higher priority is registered. Returns 0 when granted, else µs to
# wait.
_ACQUIRE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cool = redis.call('PTTL', KEYS[2])
if cool > 0 then return cool * 1000 end
local rate = math.min(tonumber(ARGV[1]), tonumber(redis.call('GET', KEYS[3]) or ARGV[1]))
local burst = math.min(tonumber(ARGV[2]), rate)
local interval = tonumber(ARGV[3]) / (rate - burst + 1)
local tolerance = (burst - 1) * interval
local priority = tonumber(ARGV[5])
local own = KEYS[3 + priority]
if priority > 0 then
  redis.call('ZADD', own, now + 2000000, ARGV[4])
  redis.call('PEXPIRE', own, 5000)
end
for level = priority + 1, 2 do
  redis.call('ZREMRANGEBYSCORE', KEYS[3 + level], '-inf', now)
  if redis.call('ZCARD', KEYS[3 + level]) > 0 then return math.ceil(interval) end
end
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or 0), now)
if tat - now > tolerance then return math.ceil(tat - now - tolerance) end
redis.call('SET', KEYS[1], string.format('%d', tat + interval),
           'PX', math.ceil((tat + interval - now) / 1000) + 1000)
if priority > 0 then redis.call('ZREM', own, ARGV[4]) end
return 0
"""

# Priorities of the budget's requests, lowest first (ARGV[5] of the script above).
BULK: Final = 0
INTERACTIVE: Final = 1
URGENT: Final = 2

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
        priority: int = INTERACTIVE,
        window: float = BUDGET_WINDOW_SECONDS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not 1 <= burst <= rate:
            raise ValueError("burst must be between 1 and the rate")
        if priority not in (BULK, INTERACTIVE, URGENT):
            raise ValueError("priority must be BULK, INTERACTIVE or URGENT")
        self._keys = [
            BUDGET_TAT_KEY.format(client=client_id),
            BUDGET_COOLDOWN_KEY.format(client=client_id),
            BUDGET_SERVER_LIMIT_KEY.format(client=client_id),
            BUDGET_WAITING_KEY.format(client=client_id),
            BUDGET_URGENT_KEY.format(client=client_id),
        ]
        self._args = [rate, burst, round(window * 1_000_000)]
        self._priority = priority
        self._rate = rate
        self._redis = redis
        self._announced: int | None = None
        self._renew_at = 0.0
        self._acquire = redis.register_script(_ACQUIRE)
        self._pause = redis.register_script(_PAUSE)
        self._sleep = sleep

    async def try_acquire(self, waiter: str = "") -> float:
        """Take a slot if one is free: 0.0 when granted, else the seconds to wait.

        An interactive or urgent ``waiter`` stays registered for two seconds (renewed while
        it asks again), and requests of a lower priority wait while it does.
        """
        args: list[str | int] = [*self._args, waiter or secrets.token_hex(8), self._priority]
        wait_us = await self._acquire(keys=self._keys, args=args)
        return int(wait_us) / 1_000_000

    async def acquire(self) -> float:
        """Wait until a slot is granted; returns the seconds spent waiting."""
        waiter, waited = secrets.token_hex(8), 0.0
        while (wait := await self.try_acquire(waiter)) > 0:
            await self._sleep(wait)
            waited += wait
        return waited

    async def pause(self, seconds: float) -> None:
        """Stop every replica from sending for this client id for ``seconds``."""
        await self._pause(keys=[self._keys[1]], args=[max(1, int(seconds * 1000))])

    async def observe_limit(self, limit: int) -> None:
        """Slow every replica to a lower limit the server announced (X-RateLimit-Limit).

        The lower rate holds for a while and then lapses, so that a budget raised at BB2
        is used again; a limit at or above ours changes nothing.
        """
        if limit >= self._rate or limit < 1:
            return
        # Written again while BB2 keeps saying so, but at most every half lifetime.
        now = time.monotonic()
        if limit == self._announced and now < self._renew_at:
            return
        self._announced = limit
        self._renew_at = now + BUDGET_SERVER_LIMIT_TTL / 2
        await self._redis.set(self._keys[2], limit, ex=BUDGET_SERVER_LIMIT_TTL)

    async def slow_down(self) -> None:
        """Halve the rate of every replica for a while after a 429: CMS announces no per-app
        limit (no ``X-RateLimit-Limit``; FACTS.md, Errors and limits), so a refusal is the
        only sign that the budget is lower than configured."""
        current = await self._redis.get(self._keys[2])
        rate = int(current) if current is not None else self._rate
        lower = max(1, rate // 2)
        self._announced, self._renew_at = lower, time.monotonic() + BUDGET_SERVER_LIMIT_TTL / 2
        await self._redis.set(self._keys[2], lower, ex=BUDGET_SERVER_LIMIT_TTL)
