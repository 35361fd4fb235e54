"""The Redis lock that serialises the refreshes of one connection, renewed and fenced.

A refresh spends the connection's rolling refresh token (FACTS.md, Authorization: every
refresh returns a new one and the old one dies), so two replicas must not spend it at once.
The lock is a Redis key, not a Postgres row lock: a refresh may wait minutes for its budget
slot in a 429 cool-down, and a row lock would pin a pooled connection and every page write of
that connection for as long. The settling of a connection's owed revocations, which spends
their refresh tokens too, takes turns under a lock of the same kind
(:func:`worker.sync.revocation.settle_owed`).

- **Renewed while held**: a task extends the key every third of its lifetime, so a slow
  refresh keeps it; a replica that dies lets it lapse within ``REFRESH_LOCK_SECONDS``.
- **Fenced**: each holder gets the next number of a per-connection counter, and the key holds
  that number. A holder that stalled long enough to lose the key (a frozen process, Redis
  unreachable) sees :attr:`Held.lost` or :meth:`Held.still_held` say so before it spends the
  token. What a lapse can still let through is caught by the compare-and-swap on
  ``connections.token_generation`` (see :mod:`worker.sync.tokens`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

import structlog
from redis.asyncio import Redis

from worker.constants import (
    REFRESH_FENCE_KEY,
    REFRESH_FENCE_TTL_SECONDS,
    REFRESH_LOCK_KEY,
    REFRESH_LOCK_POLL_SECONDS,
    REFRESH_LOCK_SECONDS,
)
from worker.outages import REDIS_DOWN

log = structlog.get_logger(__name__)

REFRESH_FENCE_TTL_MS: Final = round(REFRESH_FENCE_TTL_SECONDS * 1000)

# KEYS: the lock, the fence counter. ARGV: the lock's lifetime and the counter's (ms).
# Returns the holder's fence, or 0 when the lock is taken.
_ACQUIRE: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local fence = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('SET', KEYS[1], fence, 'PX', ARGV[1])
return fence
"""

# Extends (ARGV[2] ms) or deletes (ARGV[2] = 0) the lock only while it holds this fence.
_KEEP_OR_DROP: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(ARGV[2]) == 0 then return redis.call('DEL', KEYS[1]) end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""


@dataclass
class Held:
    """A holder of the lock: its fence, and whether a renewal found the lock gone."""

    fence: int
    key: str
    redis: Redis
    lost: bool = False

    async def still_held(self) -> bool:
        """Whether the lock still carries this holder's fence (asked of Redis)."""
        if self.lost:
            return False
        value = await self.redis.get(self.key)
        self.lost = value is None or int(value) != self.fence
        return not self.lost


class RefreshLock:
    """The refresh lock of one connection."""

    def __init__(
        self,
        redis: Redis,
        connection_id: str,
        *,
        seconds: float = REFRESH_LOCK_SECONDS,
        poll: float = REFRESH_LOCK_POLL_SECONDS,
    ) -> None:
        self._redis = redis
        self._key = REFRESH_LOCK_KEY.format(connection=connection_id)
        self._fence_key = REFRESH_FENCE_KEY.format(connection=connection_id)
        self._ms = round(seconds * 1000)
        self._poll = poll
        self._acquire = redis.register_script(_ACQUIRE)
        self._keep_or_drop = redis.register_script(_KEEP_OR_DROP)

    async def wait_free(self) -> None:
        """Return once nobody holds the lock (at once when nobody does)."""
        while True:
            if not await self._redis.exists(self._key):
                return
            await asyncio.sleep(self._poll)

    async def _take(self) -> Held:
        keys, args = [self._key, self._fence_key], [self._ms, REFRESH_FENCE_TTL_MS]
        while True:
            fence = int(await self._acquire(keys=keys, args=args))
            if fence:
                return Held(fence, self._key, self._redis)
            await asyncio.sleep(self._poll)

    async def _renew(self, held: Held) -> None:
        # A renewal that meets a Redis blip is tried again; one that finds another fence
        # (the lock lapsed and was taken) marks the holder lost: it must not spend.
        while not held.lost:
            await asyncio.sleep(self._ms / 3000)
            try:
                held.lost = not await self._keep_or_drop(
                    keys=[self._key], args=[held.fence, self._ms]
                )
            except REDIS_DOWN as exc:
                log.warning("refresh_lock_renewal_failed", error=type(exc).__name__)

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[Held]:
        """Wait for the lock, then hold it (renewed) while inside."""
        held = await self._take()
        renewal = asyncio.create_task(self._renew(held))
        try:
            yield held
        finally:
            renewal.cancel()
            await asyncio.gather(renewal, return_exceptions=True)
            try:
                await self._keep_or_drop(keys=[self._key], args=[held.fence, 0])
            except REDIS_DOWN as exc:  # the lock lapses on its own
                log.warning("refresh_lock_release_failed", error=type(exc).__name__)
