"""A delivered head hands its sender the next row of its own chain (worker.store.deliveries):
a connection's chain, and the app's own chain of events of no connection, alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from tests.integration.webhook_support import register, write_events
from worker.crypto import TokenCipher, generate_key
from worker.events.emit import emit
from worker.store import deliveries

LEASE = timedelta(minutes=1)


async def _app_events(pool: asyncpg.Pool, count: int) -> list[str]:
    ids = []
    async with pool.acquire() as conn:
        for _ in range(count):
            async with conn.transaction():
                now = datetime.now(UTC)
                event_id = await emit(
                    conn, "app.paused", app="default", connection_id=None, paused_at=now
                )
            ids.append(str(event_id))
    return ids


@pytest.mark.parametrize("app_wide", [False, True], ids=["connection", "app"])
async def test_a_delivered_head_leases_the_next_row_of_its_chain_only(
    pool: asyncpg.Pool, app_wide: bool
) -> None:
    cipher = TokenCipher.from_setting(generate_key())
    await register(pool, cipher, "https://hooks.example.com/x")
    other = await write_events(pool, ["b"], 3)  # another chain, interleaved with the chain
    chain = await _app_events(pool, 3) if app_wide else (await write_events(pool, ["a"], 3))["a"]
    async with pool.acquire() as conn:
        heads = await deliveries.claim(conn, 10, full=[], lease=LEASE)
        assert {str(h.event.event_id) for h in heads} == {chain[0], other["b"][0]}
        current: deliveries.Claimed | None = next(
            h for h in heads if str(h.event.event_id) == chain[0]
        )
        sent = []
        while current is not None:
            sent.append(str(current.event.event_id))
            current = await deliveries.delivered(conn, current, 200, lease=LEASE)
    assert sent == chain
