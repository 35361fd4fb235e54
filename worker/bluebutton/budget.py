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
comes from Redis (``TIME``), so replicas with skewed clocks still agree.

The rate itself adapts (AIMD, as TCP's congestion window): CMS's throttle sits at an edge
whose limit is not announced and may be lower than ``BB_RATE_LIMIT`` (FACTS.md, Errors and
limits), so a 429 is the only sign of it. A 429 multiplies the app's rate by
``DECREASE_FACTOR``, at most once a window (several requests refused together are one
signal, not several), and the rate then grows back by ``limit / RECOVERY_SECONDS`` each
second, never above the limit: from half the limit it is back in ``RECOVERY_SECONDS / 2``.
A 429 with ``Retry-After`` besides stops every replica until it ends (a shared cool-down).
The state is one Redis string per app whose value is the rate set by the last decrease and
whose remaining life is the deficit still to recover: rate = limit - step * PTTL, and the
key lapses exactly when the rate is back at the limit.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Final

from redis.asyncio import Redis

from worker.constants import (
    BUDGET_COOLDOWN_KEY,
    BUDGET_SERVER_LIMIT_KEY,
    BUDGET_TAT_KEY,
    BUDGET_URGENT_KEY,
    BUDGET_WAITING_KEY,
    BUDGET_WINDOW_SECONDS,
)

# KEYS: theoretical arrival time, cool-down, the adaptive rate (see the module docstring),
# and the interactive and the urgent requests waiting (sorted sets: member = waiter, score =
# when it lapses). ARGV: the configured limit, burst and window (µs), the waiter id, the
# priority (BULK, INTERACTIVE, URGENT), the recovery step (requests/s gained per second).
# A waiter registers in its priority's set; a request is refused while any waiter of a
# higher priority is registered. Returns {0 when granted else µs to wait, the current rate
# as text ('' inside a cool-down)}.
_ACQUIRE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cool = redis.call('PTTL', KEYS[2])
if cool > 0 then return {cool * 1000, ''} end
local rate = tonumber(ARGV[1])
local deficit = redis.call('PTTL', KEYS[3])
if deficit > 0 then rate = rate - tonumber(ARGV[6]) * deficit / 1000 end
local shown = string.format('%.3f', rate)
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
  if redis.call('ZCARD', KEYS[3 + level]) > 0 then return {math.ceil(interval), shown} end
end
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or 0), now)
if tat - now > tolerance then return {math.ceil(tat - now - tolerance), shown} end
redis.call('SET', KEYS[1], string.format('%d', tat + interval),
           'PX', math.ceil((tat + interval - now) / 1000) + 1000)
if priority > 0 then redis.call('ZREM', own, ARGV[4]) end
return {0, shown}
"""

# Priorities of the budget's requests, lowest first (ARGV[5] of the script above).
BULK: Final = 0
INTERACTIVE: Final = 1
URGENT: Final = 2

# AIMD: a 429 multiplies the rate by this (TCP halves; a gentler cut keeps more of the real
# limit used between cuts, and the recovery step below keeps 429s rare).
DECREASE_FACTOR: Final = 0.8
# The rate regains the whole limit in this many seconds (a tenth of it in a tenth of that).
RECOVERY_SECONDS: Final = 150.0
# Never slower than this (requests/s): a budget cut to nothing would never learn it recovered.
MIN_RATE: Final = 0.5

# Multiplicative decrease after a 429. KEYS: the adaptive rate. ARGV: limit, factor,
# recovery step (per s), floor, hold (ms). A decrease within ``hold`` of the previous one is
# skipped: the refusals of one burst are one signal. Returns the rate after it, as text.
_DECREASE: Final = """
local limit, step = tonumber(ARGV[1]), tonumber(ARGV[3])
local deficit = redis.call('PTTL', KEYS[1])
local rate = limit
if deficit > 0 then
  rate = limit - step * deficit / 1000
  local since = (limit - tonumber(redis.call('GET', KEYS[1]))) / step * 1000 - deficit
  if since < tonumber(ARGV[5]) then return string.format('%.3f', rate) end
end
local lower = math.max(tonumber(ARGV[4]), rate * tonumber(ARGV[2]))
if lower < limit then
  redis.call('SET', KEYS[1], string.format('%.3f', lower), 'PX',
             math.ceil((limit - lower) / step * 1000))
end
return string.format('%.3f', lower)
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
    """Grants request slots for one client id against the shared Redis budget.

    ``rate`` is the app's configured limit (``BB_RATE_LIMIT``), the ceiling of the adaptive
    rate; :attr:`current_rate` is the rate the last grant was measured against.
    """

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
        self._step = rate / RECOVERY_SECONDS
        self._args = [rate, burst, round(window * 1_000_000)]
        self._hold_ms = round(window * 1000)
        self._priority = priority
        self._rate = rate
        self.current_rate = float(rate)
        self._acquire = redis.register_script(_ACQUIRE)
        self._decrease = redis.register_script(_DECREASE)
        self._pause = redis.register_script(_PAUSE)
        self._sleep = sleep

    async def try_acquire(self, waiter: str = "") -> float:
        """Take a slot if one is free: 0.0 when granted, else the seconds to wait.

        An interactive or urgent ``waiter`` stays registered for two seconds (renewed while
        it asks again), and requests of a lower priority wait while it does.
        """
        args: list[str | int | float] = [
            *self._args,
            waiter or secrets.token_hex(8),
            self._priority,
            self._step,
        ]
        wait_us, rate = await self._acquire(keys=self._keys, args=args)
        if rate:
            self.current_rate = float(rate)
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

    async def slow_down(self) -> None:
        """Lower the rate every replica shares after a 429 (multiplicative decrease).

        CMS announces no per-app limit (no ``X-RateLimit-Limit``; FACTS.md, Errors and
        limits), so a refusal is the only sign that the budget is lower than configured.
        Refusals within one window of the last decrease do not lower it again.
        """
        args = [self._rate, DECREASE_FACTOR, self._step, MIN_RATE, self._hold_ms]
        self.current_rate = float(await self._decrease(keys=[self._keys[2]], args=args))
