"""Shared by the webhook tests: events written through the outbox, a receiver served on
loopback, waiting for a condition without sleeping longer than needed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import asyncpg

from worker.crypto import TokenCipher
from worker.emulator.server import serving
from worker.events.emit import emit
from worker.settings import Settings
from worker.store import connections, webhooks
from worker.webhooks.receiver import Receiver

Expected = dict[str | None, list[str]]
# Retries within a test's patience; the schedule itself is tested as a pure function.
FAST_RETRIES = {"WEBHOOK_RETRY_BASE_SECONDS": "0.05", "WEBHOOK_RETRY_MAX_SECONDS": "0.3"}
# Starts a dispatcher with settings (the conftest fixture ``dispatch``): a replica's.
Dispatch = Callable[..., Awaitable[tuple[Settings, TokenCipher]]]


async def register(pool: asyncpg.Pool, cipher: TokenCipher, url: str, secret: str = "s1") -> int:
    """An endpoint of the default app; its id."""
    async with pool.acquire() as conn:
        return await webhooks.add(conn, cipher, "default", url, secret)


async def deliveries_of(pool: asyncpg.Pool, endpoint_id: int) -> list[asyncpg.Record]:
    """The delivery rows of an endpoint, in event order."""
    return await pool.fetch(
        "SELECT * FROM webhook_deliveries WHERE endpoint_id = $1 ORDER BY seq", endpoint_id
    )


async def write_events(
    pool: asyncpg.Pool, connection_ids: list[str], per_connection: int, app: str = "default"
) -> Expected:
    """``per_connection`` events of each connection, interleaved, each in its own
    transaction; each connection's event ids in order."""
    expected: Expected = {cid: [] for cid in connection_ids}
    async with pool.acquire() as conn:
        for cid in connection_ids:
            await connections.create_pending(conn, cid, app)
        for n in range(per_connection):
            for cid in connection_ids:
                async with conn.transaction():
                    event_id = await emit(
                        conn,
                        "connection.synced",
                        app=app,
                        connection_id=cid,
                        mode="incremental",
                        inserted=n,
                        updated=0,
                        deleted=0,
                        synced_at=datetime.now(UTC),
                    )
                expected[cid].append(str(event_id))
    return expected


@asynccontextmanager
async def receiving(receiver: Receiver) -> AsyncIterator[str]:
    """Serve ``receiver`` on loopback while inside; yields its URL."""
    async with serving(receiver.app()) as base_url:
        yield base_url + "/hooks"


async def until(condition: Callable[[], bool], within: float, step: float = 0.02) -> float:
    """Wait until ``condition()`` holds; how long it took. AssertionError past ``within`` s."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > within:
            raise AssertionError(f"not reached within {within} s")
        await asyncio.sleep(step)
    return time.monotonic() - start


async def eventually(check: Callable[[], Awaitable[bool]], within: float) -> None:
    """Wait until the async ``check()`` holds. AssertionError past ``within`` s."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {within} s")
        await asyncio.sleep(0.05)
