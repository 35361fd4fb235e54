"""Accepting a signature v2 nonce once: ``SET NX`` in Redis for as long as its timestamp
could still pass the clock check."""

from __future__ import annotations

from typing import Final

from redis.asyncio import Redis

from worker.constants import REDIS_PREFIX

NONCE_KEY: Final = REDIS_PREFIX + ":intake:nonce:{caller}:{nonce}"


def _nonce_ttl(max_skew: int) -> int:
    """Seconds a nonce is remembered: a timestamp passes the check from ``max_skew`` seconds
    before it was made until ``max_skew`` after, so a replay is possible for twice that."""
    return 2 * max_skew


async def first_use(redis: Redis, caller: str, nonce: str, *, max_skew: int) -> bool:
    """True the first time ``caller`` sends ``nonce``, False for a replay."""
    key = NONCE_KEY.format(caller=caller, nonce=nonce)
    return bool(await redis.set(key, b"1", nx=True, ex=_nonce_ttl(max_skew)))
