"""The events outbox: written with its state change or not at all, read in commit order."""

import asyncio
from datetime import UTC, datetime

import asyncpg
import pytest

from worker.events.emit import emit
from worker.store import connections, outbox


async def _record(conn: asyncpg.Connection, connection_id: str, n: int) -> None:
    """An event of the catalog (the tests check every emitted event against its schema)."""
    await emit(
        conn,
        "connection.revoked",
        app="default",
        connection_id=connection_id,
        resources_deleted=n,
        revoked_at=datetime.now(UTC),
    )


async def test_an_event_of_a_rolled_back_change_never_exists(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await connections.create_pending(conn, "ob-rb", "default")
        start = await _end(conn)
        transaction = conn.transaction()
        await transaction.start()
        await _record(conn, "ob-rb", 1)
        await transaction.rollback()
        assert await outbox.read_after(conn, start, apps=None, limit=10) == []


async def test_an_event_needs_its_state_changes_transaction(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError):
            await _record(conn, "ob-none", 1)


async def _end(conn: asyncpg.Connection) -> str:
    """The position after every event there is now."""
    position = "0"
    while page := await outbox.read_after(conn, position, apps=None, limit=1000):
        position = page[-1].position
    return position


async def test_the_feed_never_skips_an_event_that_commits_after_a_later_one(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as a, pool.acquire() as b, pool.acquire() as reader:
        for cid in ("ob-a", "ob-b"):
            await connections.create_pending(a, cid, "default")
        start = await _end(reader)
        slow = a.transaction()
        await slow.start()
        await _record(a, "ob-a", 1)  # the earlier transaction id, still open
        async with b.transaction():
            await _record(b, "ob-b", 2)
        # b committed, but a could still commit before b's position: the feed waits for a.
        assert await outbox.read_after(reader, start, apps=None, limit=10) == []
        await slow.commit()
        seen = await outbox.read_after(reader, start, apps=None, limit=10)
        assert [e.data["resources_deleted"] for e in seen] == [1, 2]
        assert await outbox.read_after(reader, seen[-1].position, apps=None, limit=10) == []


async def test_a_committed_event_is_announced(pool: asyncpg.Pool) -> None:
    heard: asyncio.Queue[str] = asyncio.Queue()
    async with pool.acquire() as listener, pool.acquire() as conn:

        def hear(*args: object) -> None:
            heard.put_nowait(str(args[3]))

        await listener.add_listener(outbox.NOTIFY_CHANNEL, hear)
        await connections.create_pending(conn, "ob-n", "default")
        async with conn.transaction():
            await _record(conn, "ob-n", 1)
        payload = await asyncio.wait_for(heard.get(), 5)
        await listener.remove_listener(outbox.NOTIFY_CHANNEL, hear)
    assert '"connection_id":"ob-n"' in payload
    assert '"resources_deleted"' not in payload  # the data stays in the table


def test_a_position_that_was_never_handed_out_is_refused() -> None:
    with pytest.raises(outbox.BadPosition):
        outbox.parse_position("12.x")
    assert outbox.parse_position("0") == (0, 0)
