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
``DECREASE_FACTOR``, at most once every ``HOLD_WINDOWS`` windows (the refusals of one burst,
and those the edge's window still holds, are one signal, not several). Then the rate grows
back additively, never above the limit: slowly for ``PROBE_SECONDS`` (the edge's limit is
near; creeping up keeps 429s rare), then fast (the edge has not refused for a while: CMS
may admit more again), so that it is back at the limit within two minutes. A 429 with
``Retry-After`` besides stops every replica until it ends (a shared cool-down). The state is
one Redis string per app: its value is the rate the last decrease set, its remaining life
the time until the rate is back at the limit (so the time since the decrease follows, and
the key lapses exactly when the rate is whole again).
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

# The adaptive rate, shared by the scripts below: the key holds the rate the last decrease
# set, its PTTL the time left until the rate is back at the limit. ``slow`` and ``fast`` are
# the additive steps (requests/s per second) before and after ``probe`` seconds.
_ADAPTIVE: Final = """
local function recovery(limit, base, slow, fast, probe)
  local deficit = limit - base
  if deficit <= slow * probe then return deficit / slow end
  return probe + (deficit - slow * probe) / fast
end
local function adaptive(key, limit, slow, fast, probe)
  local left = redis.call('PTTL', key)
  if left <= 0 then return limit, nil end
  local base = tonumber(redis.call('GET', key))
  local since = recovery(limit, base, slow, fast, probe) - left / 1000
  local rate = base + slow * math.min(since, probe) + fast * math.max(0, since - probe)
  return math.min(limit, rate), since
end
"""

# KEYS: theoretical arrival time, cool-down, the adaptive rate, and the interactive and the
# urgent requests waiting (sorted sets: member = waiter, score = when it lapses). ARGV: the
# configured limit, burst and window (µs), the waiter id, the priority (BULK, INTERACTIVE,
# URGENT), the slow and fast steps and the probe time of the adaptive rate. A waiter
# registers in its priority's set; a request is refused while any waiter of a higher
# priority is registered. Returns {0 when granted else µs to wait, the current rate as text
# ('' inside a cool-down)}.
_ACQUIRE: Final = (
    _ADAPTIVE
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cool = redis.call('PTTL', KEYS[2])
if cool > 0 then return {cool * 1000, ''} end
local rate = adaptive(KEYS[3], tonumber(ARGV[1]), tonumber(ARGV[6]), tonumber(ARGV[7]),
                      tonumber(ARGV[8]))
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
)

# Priorities of the budget's requests, lowest first (ARGV[5] of the script above).
BULK: Final = 0
INTERACTIVE: Final = 1
URGENT: Final = 2

# AIMD. A 429 multiplies the rate by this: the rate saws between this share of the edge's
# limit and the limit, so it sets the share used (TCP's 0.5 would waste a quarter).
DECREASE_FACTOR: Final = 0.9
# Decreases at most once per this many windows: the edge's window still holds the requests
# of the second before the decrease, and their refusals say nothing new.
HOLD_WINDOWS: Final = 2
# Additive increase, as shares of the limit per second: slow for PROBE_SECONDS after a
# decrease (a tenth of an edge at half the limit takes 25 s: a 429 or two per cycle), then
# fast (back from half the limit in 30 + 26 s, from MIN_RATE in under 90 s).
SLOW_STEP: Final = 1 / 500
FAST_STEP: Final = 1 / 60
PROBE_SECONDS: Final = 30.0
# Never slower than this (requests/s): a budget cut to nothing would never learn it recovered.
MIN_RATE: Final = 0.5

# Multiplicative decrease after a 429. KEYS: the adaptive rate. ARGV: limit, slow and fast
# steps, probe time, factor, floor, hold (ms). A decrease within ``hold`` of the previous one
# is skipped. Returns the rate after it, as text.
_DECREASE: Final = (
    _ADAPTIVE
    + """
local limit, slow, fast, probe = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
                                 tonumber(ARGV[4])
local rate, since = adaptive(KEYS[1], limit, slow, fast, probe)
if since ~= nil and since * 1000 < tonumber(ARGV[7]) then
  return string.format('%.3f', rate)
end
local lower = math.max(tonumber(ARGV[6]), rate * tonumber(ARGV[5]))
if lower < limit then
  redis.call('SET', KEYS[1], string.format('%.3f', lower), 'PX',
             math.ceil(recovery(limit, lower, slow, fast, probe) * 1000))
end
return string.format('%.3f', lower)
"""
)

# The current adaptive rate, as text. KEYS: the adaptive rate. ARGV: limit, slow and fast
# steps, probe time.
_RATE: Final = (
    _ADAPTIVE
    + """
local rate = adaptive(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
                      tonumber(ARGV[4]))
return string.format('%.3f', rate)
"""
)

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
        self._aimd = [rate, rate * SLOW_STEP, rate * FAST_STEP, PROBE_SECONDS]
        self._args = [rate, burst, round(window * 1_000_000)]
        self._hold_ms = round(window * HOLD_WINDOWS * 1000)
        self._priority = priority
        self._rate = rate
        self.current_rate = float(rate)
        self._acquire = redis.register_script(_ACQUIRE)
        self._decrease = redis.register_script(_DECREASE)
        self._current = redis.register_script(_RATE)
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
            *self._aimd[1:],
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
        Refusals within ``HOLD_WINDOWS`` windows of the last decrease do not lower it again.
        """
        args = [*self._aimd, DECREASE_FACTOR, MIN_RATE, self._hold_ms]
        self.current_rate = float(await self._decrease(keys=[self._keys[2]], args=args))

    async def rate(self) -> float:
        """The rate every replica's grants are spaced for now (requests per second)."""
        self.current_rate = float(await self._current(keys=[self._keys[2]], args=self._aimd))
        return self.current_rate
