"""The exchange backlog: codes waiting for their exchange, per app, and whether one more fits.

A code lives 60 s at CMS from the beneficiary's consent (FACTS.md, Authorization). Every
exchange takes one slot of the app's budget, ahead of all other work, so N codes waiting at
R requests/s are all exchanged about N/R seconds later: an app absorbs about
R * (lifetime - margin) codes at once, fewer while a 429 cool-down stops it. The intake
admits a connect event only while it fits (else 503 with Retry-After), so that no code is
accepted only to expire in the queue. Each waiting exchange is a member of a sorted set
scored by its event's arrival (Unix seconds); the exchange job removes it when it ends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from redis.asyncio import Redis

from worker.constants import (
    APP_PAUSED_KEY,
    BUDGET_COOLDOWN_KEY,
    BUDGET_SERVER_LIMIT_KEY,
    EXCHANGE_BACKLOG_KEY,
    EXCHANGE_MARGIN_SECONDS,
)

# Members older than this past their code's life are forgotten (their job ended unseen).
_STALE_AFTER_SECONDS: Final = 600
# Retry-After of an app CMS has made inactive, when its pause has no end of its own.
PAUSED_RETRY_AFTER_SECONDS: Final = 60

# KEYS: backlog, cool-down, the limit the server announced, the app's pause flag.
# ARGV: now (s), code lifetime (s), margin (s), our rate, member, stale age (s).
# Returns {0, 0} when admitted, {1, ms} when full, {2, ms} when the app is paused.
_ADMIT: Final = """
local paused = redis.call('PTTL', KEYS[4])
if paused ~= -2 then return {2, paused} end
local now, lifetime = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - lifetime - tonumber(ARGV[6]))
local waiting = redis.call('ZCOUNT', KEYS[1], now - lifetime, '+inf')
local rate = math.min(tonumber(ARGV[4]), tonumber(redis.call('GET', KEYS[3]) or ARGV[4]))
local cool = math.max(0, redis.call('PTTL', KEYS[2])) / 1000
local capacity = math.floor(rate * (lifetime - tonumber(ARGV[3]) - cool))
if waiting >= capacity then
  return {1, math.ceil(((waiting - capacity + 1) / rate + cool) * 1000)}
end
redis.call('ZADD', KEYS[1], 'NX', now, ARGV[5])
return {0, 0}
"""


@dataclass(frozen=True)
class Admission:
    """Whether a code was admitted to the backlog; if not, why and when to come back."""

    admitted: bool
    reason: str = ""
    retry_after: int = 0


@dataclass(frozen=True)
class AppBudget:
    """What the backlog needs to know of an app: its name, BB2 client id and rate."""

    app: str
    client_id: str
    rate: int


def _retry_after(milliseconds: int, fallback: int) -> int:
    return max(1, math.ceil(milliseconds / 1000)) if milliseconds > 0 else fallback


async def admit(
    redis: Redis, budget: AppBudget, member: str, received_at: float, lifetime: float
) -> Admission:
    """Add the exchange ``member`` (its job id) to the app's backlog if it fits in time."""
    keys = [
        EXCHANGE_BACKLOG_KEY.format(app=budget.app),
        BUDGET_COOLDOWN_KEY.format(client=budget.client_id),
        BUDGET_SERVER_LIMIT_KEY.format(client=budget.client_id),
        APP_PAUSED_KEY.format(app=budget.app),
    ]
    args: list[str | float] = [
        received_at,
        lifetime,
        EXCHANGE_MARGIN_SECONDS,
        budget.rate,
        member,
        _STALE_AFTER_SECONDS,
    ]
    verdict, milliseconds = await redis.register_script(_ADMIT)(keys=keys, args=args)
    if verdict == 0:
        return Admission(True)
    if verdict == 2:
        return Admission(
            False,
            f"app {budget.app!r} is inactive at CMS",
            _retry_after(int(milliseconds), PAUSED_RETRY_AFTER_SECONDS),
        )
    reason = "too many authorization codes waiting to be exchanged in time"
    return Admission(False, reason, _retry_after(int(milliseconds), 1))


async def enter(redis: Redis, app: str, member: str, received_at: float) -> None:
    """Count an exchange in the backlog whatever its size (queued by an operator)."""
    await redis.zadd(EXCHANGE_BACKLOG_KEY.format(app=app), {member: received_at}, nx=True)


async def leave(redis: Redis, app: str, member: str) -> None:
    """The exchange ended (in whatever way): it no longer waits."""
    await redis.zrem(EXCHANGE_BACKLOG_KEY.format(app=app), member)


async def waiting(redis: Redis, now: float, lifetime: float) -> dict[str, int]:
    """Codes still worth exchanging that wait, per app (for the gauge)."""
    prefix, suffix = EXCHANGE_BACKLOG_KEY.split("{app}")
    counts: dict[str, int] = {}
    async for key in redis.scan_iter(match=EXCHANGE_BACKLOG_KEY.format(app="*")):
        name = key.decode() if isinstance(key, bytes) else str(key)
        app = name.removeprefix(prefix).removesuffix(suffix)
        counts[app] = int(await redis.zcount(name, now - lifetime, "+inf"))
    return counts
