"""``make bench`` (webhooks): does a backlog of events drain while syncs use the whole budget?

200 connections are linked first (at full speed, on an unlimited emulator); then the emulator
enforces 10 requests/s, their resyncs are queued and two worker replicas (processes) run at
the full budget. A receiver on loopback answers each delivery after 50 ms; 10,000 events of
100 connections are committed at once (one transaction, as a burst of state changes would),
and the bench waits until every one is delivered. It prints the drain time and rate, what
the receiver got (duplicated, lost, out of order per connection) and BB2's request rate
meanwhile: the deliveries must not take the syncs' budget.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from rich.console import Console

from tests.bench.lanes import drop_queued_jobs, emulator, run_to_empty
from tests.integration.support import reset_stores
from worker.crypto import cipher_for
from worker.emulator.server import serving
from worker.emulator.state import EmulatorState
from worker.jobs.payloads import ResyncJob
from worker.local import (
    authorize_beneficiaries,
    emulator_stats,
    enqueue_all,
    start_workers,
    worker_environment,
)
from worker.settings import Settings, load_settings
from worker.store import webhooks
from worker.store.db import connection
from worker.store.outbox import NOTIFY_CHANNEL
from worker.webhooks.receiver import Receiver

LOG_DIR = Path(".bench") / "webhooks"
SECRET = "bench-receiver-secret-0123456789"
RECEIVER_DELAY = 0.05
REPLICAS = 2
WARM_UP = 4.0
LIMIT_SECONDS = 120.0

# 10,000 events in one statement: the trigger fans each out to the endpoint in the same
# transaction, as emit() would one by one. Shaped as connection.synced (the catalog's).
_BURST = """
INSERT INTO events (event_id, app, connection_id, type, version, data)
SELECT gen_random_uuid(), 'default', 'hook-' || (n % $2), 'connection.synced', 1,
       jsonb_build_object('mode', 'incremental', 'inserted', n, 'updated', 0, 'deleted', 0,
                          'synced_at', $3::text)
FROM generate_series(0, $1 - 1) AS n
"""
_PENDING = "SELECT count(*) FROM webhook_deliveries WHERE delivered_at IS NULL AND dead_at IS NULL"


async def burst(settings: Settings, events: int, connections: int) -> dict[str | None, list[str]]:
    """Commit ``events`` events of ``connections`` connections; each one's ids in order."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        async with conn.transaction():
            await conn.execute(_BURST, events, connections, datetime.now(UTC).isoformat())
            await conn.execute("SELECT pg_notify($1, '{}')", NOTIFY_CHANNEL)
        # The linking's own events (connection.active) came before the receiver was added.
        rows = await conn.fetch(
            "SELECT event_id, connection_id FROM events WHERE connection_id LIKE 'hook-%'"
            " ORDER BY seq"
        )
    finally:
        await conn.close()
    expected: dict[str | None, list[str]] = defaultdict(list)
    for row in rows:
        expected[row["connection_id"]].append(str(row["event_id"]))
    return expected


async def drained(settings: Settings, receiver: Receiver, events: int) -> float:
    """Seconds until no delivery is pending and the receiver holds every event."""
    conn = await asyncpg.connect(settings.database_url)
    started = time.monotonic()
    try:
        while await conn.fetchval(_PENDING) or len(receiver.received) < events:
            if time.monotonic() - started > 3 * LIMIT_SECONDS:
                raise TimeoutError("the backlog did not drain")
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    return time.monotonic() - started


async def link(settings: Settings, state: EmulatorState, bulk: int) -> None:
    """Link ``bulk`` connections at full speed."""
    async with emulator(state, bulk, None) as free:
        jobs = await authorize_beneficiaries(free.base_url, bulk, "bulk-")
        await enqueue_all(settings.redis_url, jobs)
        await run_to_empty(settings, free.base_url, BB_RATE_LIMIT="500", WORKER_CONCURRENCY="16")


async def main(bulk: int, events: int, connections: int) -> None:
    settings = load_settings()
    await reset_stores(settings.database_url, settings.redis_url)
    console = Console()
    state = EmulatorState()
    console.print(f"linking {bulk} connections at full speed…")
    await link(settings, state, bulk)
    receiver = Receiver([SECRET], delay=RECEIVER_DELAY)
    async with emulator(state, bulk, 10) as limited, serving(receiver.app()) as url:
        async with connection(settings.database_url) as conn:
            await webhooks.add(conn, cipher_for(settings), "default", url + "/hooks", SECRET)
        ids = [f"bulk-BBUser{i:05d}" for i in range(bulk)]
        await enqueue_all(settings.redis_url, [ResyncJob(connection_id=c) for c in ids])
        env = worker_environment(settings, limited.base_url, WORKER_CONCURRENCY="8")
        workers = await start_workers(env, REPLICAS, LOG_DIR, burst=False)
        await asyncio.sleep(WARM_UP)
        await emulator_stats(limited.base_url, reset=True)
        console.print(f"{events} events of {connections} connections, receiver at 50 ms…")
        expected = await burst(settings, events, connections)
        took = await drained(settings, receiver, events)
        stats = await emulator_stats(limited.base_url)
        for worker in workers:
            worker.terminate()
            await worker.wait()
        await drop_queued_jobs(settings)
    tally = receiver.tally(expected)
    verdict = "within" if took <= LIMIT_SECONDS else "NOT within"
    console.print(
        f"drained {events} events in {took:.1f} s ({events / took:.0f} events/s),"
        f" {verdict} {LIMIT_SECONDS:.0f} s; delivered {tally.delivered}, duplicated"
        f" {tally.duplicated}, lost {tally.lost}, out of order {tally.out_of_order}"
    )
    if not stats["total"]:
        console.print("BB2 meanwhile: no request (the resyncs were done before the burst)")
        return
    span = stats["last_request_at"] - stats["first_request_at"]
    console.print(
        f"BB2 meanwhile: {stats['total'] / span:.2f} requests/s over {span:.0f} s (budget 10),"
        f" {stats['by_status'].get('429', 0)} 429s"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bulk", type=int, default=200)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main(args.bulk, args.events, args.connections))
