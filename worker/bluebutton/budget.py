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

The rate itself adapts (AIMD: :mod:`worker.bluebutton.aimd` decides what a 429 does): a
429 cuts the app's rate for every replica, at most once per signal, and one with
``Retry-After`` besides stops every replica until it ends (a shared cool-down); then the rate
grows back to the limit. Its state is one Redis string per app, read and written by Lua with
Redis's clock.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Final

from redis.asyncio import Redis

from worker.bluebutton.aimd import (
    ADAPTIVE_LUA,
    FAST_STEP,
    PROBE_SECONDS,
    SLOW_STEP,
    lowered,
    on_throttled,
)
from worker.constants import (
    BUDGET_COOLDOWN_KEY,
    BUDGET_SERVER_LIMIT_KEY,
    BUDGET_TAT_KEY,
    BUDGET_URGENT_KEY,
    BUDGET_WAITING_KEY,
    BUDGET_WINDOW_SECONDS,
)

# KEYS: theoretical arrival time, cool-down, the adaptive rate, and the interactive and the
# urgent requests waiting (sorted sets: member = waiter, score = when it lapses). ARGV: the
# configured limit, burst and window (µs), the waiter id, the priority (BULK, INTERACTIVE,
# URGENT), the slow and fast steps and the probe time of the adaptive rate. A waiter
# registers in its priority's set; a request is refused while any waiter of a higher
# priority is registered. Returns {0 when granted else µs to wait, the current rate as text
# ('' inside a cool-down)}.
_ACQUIRE: Final = (
    ADAPTIVE_LUA
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

# The adaptive rate, its time since the last cut (ms, '' when whole) and the key's value
# ('' when absent), to compare and set. KEYS: the adaptive rate. ARGV: limit, slow and fast
# steps, probe time.
_OBSERVE: Final = (
    ADAPTIVE_LUA
    + """
local rate, since = adaptive(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
                             tonumber(ARGV[4]))
local since_ms = ''
if since ~= nil then since_ms = string.format('%d', since * 1000) end
return {string.format('%.3f', rate), since_ms, redis.call('GET', KEYS[1]) or ''}
"""
)

# Sets the rate to ARGV[5] (recovering from there) if the key still holds ARGV[6] ('' for
# absent): a replica that decided on a state another replica has since changed decides
# again. KEYS: the adaptive rate. ARGV: limit, slow and fast steps, probe time, the new
# rate, the value observed. Returns 1 when set, else 0.
_CUT: Final = (
    ADAPTIVE_LUA
    + """
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[6] then return 0 end
local limit, lower = tonumber(ARGV[1]), tonumber(ARGV[5])
if lower < limit then
  local ms = recovery(limit, lower, tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]))
  redis.call('SET', KEYS[1], string.format('%.3f', lower), 'PX', math.ceil(ms * 1000))
end
return 1
"""
)
# Compare-and-set tries: each failure means another replica cut meanwhile, and the next
# observation is then within its hold.
_CUT_TRIES: Final = 3

# The current adaptive rate, as text. KEYS: the adaptive rate. ARGV: limit, slow and fast
# steps, probe time.
_RATE: Final = (
    ADAPTIVE_LUA
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
        self._window = window
        self._priority = priority
        self._rate = rate
        self.current_rate = float(rate)
        self._acquire = redis.register_script(_ACQUIRE)
        self._observe = redis.register_script(_OBSERVE)
        self._cut = redis.register_script(_CUT)
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

    async def slow_down(self, retry_after: float | None = None) -> None:
        """React to a 429 (with its ``Retry-After``, if any) for every replica: cut the
        shared rate (once per burst of refusals) and pause everyone for a ``Retry-After``,
        as :func:`~worker.bluebutton.aimd.on_throttled` decides.

        CMS announces no per-app limit (no ``X-RateLimit-Limit``; FACTS.md, Errors and
        limits), so a refusal is the only sign that the budget is lower than configured.
        """
        for _ in range(_CUT_TRIES):
            rate, since_ms, value = await self._observe(keys=[self._keys[2]], args=self._aimd)
            since = float(since_ms) / 1000 if since_ms else None
            reaction = on_throttled(since, retry_after, self._window)
            self.current_rate = float(rate)
            if reaction.pause > 0:
                await self.pause(reaction.pause)
            if reaction.factor is None:
                return
            lower = lowered(float(rate), reaction.factor)
            if await self._cut(keys=[self._keys[2]], args=[*self._aimd, f"{lower:.3f}", value]):
                self.current_rate = float(f"{lower:.3f}")
                return

    async def rate(self) -> float:
        """The rate every replica's grants are spaced for now (requests per second)."""
        self.current_rate = float(await self._current(keys=[self._keys[2]], args=self._aimd))
        return self.current_rate
