"""Shared by the webhook tests: events written through the outbox, a receiver served on
loopback, waiting for a condition without sleeping longer than needed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import asyncpg

from worker.emulator.server import serving
from worker.store import connections, outbox
from worker.webhooks.receiver import Receiver

Expected = dict[str | None, list[str]]


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
                    event_id = await outbox.record(
                        conn,
                        app=app,
                        connection_id=cid,
                        type="connection.synced",
                        version=1,
                        data={"n": n},
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
