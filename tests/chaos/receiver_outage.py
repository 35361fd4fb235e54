"""The webhook row of ``make chaos``: a receiver goes away for a stretch while connects run.

Worker replicas run as processes (their dispatchers deliver the events their syncs emit) and
every connection is unlinked once active (whatever events the unlink emits follow its
``connection.active``, so order per connection is put to the test). The receiver's server
is stopped -- connections refused -- once a quarter of the connections are settled, for at
least OUTAGE_SECONDS and until three quarters are, then started again on the same port.
Counted against the events table: delivered, duplicated (only a lost 2xx may cause one),
lost and out of order (per connection). Lost or out of order fails ``make chaos``.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from tests.chaos.measure import markdown_table
from tests.chaos.run import REPLICAS, Size, Target, target_settings
from tests.integration.support import reset_stores
from worker.crypto import cipher_for
from worker.emulator.config import EmulatorConfig
from worker.emulator.server import running_emulator, serving
from worker.jobs.payloads import UnlinkJob
from worker.local import (
    authorize_beneficiaries,
    enqueue_all,
    start_workers,
    stop_workers,
    wait_for_replicas,
    worker_environment,
)
from worker.store import webhooks
from worker.store.db import connection
from worker.webhooks.receiver import Receiver, Tally

PREFIX = "hook-"
SECRET = "chaos-receiver-secret-0123456789"
OUTAGE_SECONDS = 5.0
DRAIN_SECONDS = 180.0
# Retries come back within seconds once the receiver is up again (the schedule's shape is
# tested as a function; its 3 days do not fit a chaos run).
RETRIES = {"WEBHOOK_RETRY_BASE_SECONDS": "0.2", "WEBHOOK_RETRY_MAX_SECONDS": "3"}
_SETTLED = "SELECT count(*) FROM connections WHERE status IN ('active', 'error', 'revoked')"
_ACTIVE = "SELECT connection_id FROM connections WHERE status = 'active'"
_UNSETTLED = "SELECT count(*) FROM connections WHERE status NOT IN ('revoked', 'error')"
_DEAD = "SELECT count(*) FROM webhook_deliveries WHERE dead_at IS NOT NULL"
_RETRIED = "SELECT count(*) FROM webhook_deliveries WHERE attempts > 1"
_PENDING = "SELECT count(*) FROM webhook_deliveries WHERE delivered_at IS NULL AND dead_at IS NULL"


@dataclass(frozen=True)
class WebhookFigures:
    """The receiver outage row."""

    scenario: str
    events: int
    retried: int  # deliveries the outage made fail at least once
    tally: Tally
    outage_seconds: float
    problems: tuple[str, ...]

    @property
    def passed(self) -> bool:
        """Nothing lost, nothing out of order, nothing else wrong."""
        return not (self.tally.lost or self.tally.out_of_order or self.problems)


async def run_receiver_outage(target: Target, size: Size, workdir: Path) -> WebhookFigures:
    """Run the row on ``target`` and count what the receiver got."""
    await reset_stores(target.database_url, target.redis_url)
    receiver = Receiver([SECRET])
    config = EmulatorConfig(beneficiaries=size.beneficiaries, claims_per_beneficiary=size.claims)
    problems: list[str] = []
    async with AsyncExitStack() as stack:
        emulator = await stack.enter_async_context(running_emulator(config))
        settings = target_settings(emulator, target, size)
        server = await stack.enter_async_context(AsyncExitStack())
        url = await server.enter_async_context(serving(receiver.app())) + "/hooks"
        async with connection(target.database_url) as conn:
            await webhooks.add(conn, cipher_for(settings), "default", url, SECRET)
        jobs = await authorize_beneficiaries(emulator.base_url, size.beneficiaries, PREFIX)
        env = worker_environment(
            settings, emulator.base_url, WORKER_CONCURRENCY=str(size.concurrency), **RETRIES
        )
        processes = await start_workers(env, REPLICAS, workdir / "logs", burst=False)
        stack.push_async_callback(stop_workers, processes)
        await wait_for_replicas(target.redis_url, REPLICAS)
        await enqueue_all(target.redis_url, jobs)
        outage = await _outage(target, size.beneficiaries, server, url, receiver)
        problems += await _drain(target, size.beneficiaries)
        expected = await _expected(target.database_url)
        async with connection(target.database_url) as conn:
            retried = await conn.fetchval(_RETRIED)
    if not retried:
        problems.append("no delivery failed: the outage missed its aim")
    return WebhookFigures(
        "receiver outage",
        sum(map(len, expected.values())),
        retried,
        receiver.tally(expected),
        outage,
        tuple(problems),
    )


async def _outage(
    target: Target, total: int, server: AsyncExitStack, url: str, receiver: Receiver
) -> float:
    """Stop the receiver at a quarter settled, start it again at three quarters (and no
    sooner than OUTAGE_SECONDS); how long it was away. Active connections are unlinked as
    they come."""
    conn = await asyncpg.connect(target.database_url)
    unlinked: set[str] = set()
    try:
        await _until(conn, total // 4, unlinked, target)
        await server.aclose()
        stopped = time.monotonic()
        await _until(conn, (3 * total) // 4, unlinked, target)
        await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))
        port = urlsplit(url).port
        await server.enter_async_context(serving(receiver.app(), port=port or 0))
        away = time.monotonic() - stopped
        await _until(conn, total, unlinked, target)
        return away
    finally:
        await conn.close()


async def _until(
    conn: asyncpg.Connection, settled: int, unlinked: set[str], target: Target
) -> None:
    """Wait until ``settled`` connections are, unlinking each active one once."""
    async with asyncio.timeout(DRAIN_SECONDS):
        while True:
            active = {row["connection_id"] for row in await conn.fetch(_ACTIVE)} - unlinked
            if active:
                await enqueue_all(target.redis_url, [UnlinkJob(connection_id=c) for c in active])
                unlinked |= active
            if await conn.fetchval(_SETTLED) >= settled and not active:
                return
            await asyncio.sleep(0.1)


async def _drain(target: Target, total: int) -> list[str]:
    """Wait until every connection is unlinked and every delivery is made."""
    problems = []
    async with connection(target.database_url) as conn:
        deadline = time.monotonic() + DRAIN_SECONDS
        while await conn.fetchval(_PENDING) or await conn.fetchval(_UNSETTLED):
            if time.monotonic() > deadline:
                problems.append(f"deliveries still pending after {DRAIN_SECONDS:.0f} s")
                break
            await asyncio.sleep(0.2)
        dead = await conn.fetchval(_DEAD)
    if dead:
        problems.append(f"{dead} deliveries dead-lettered")
    return problems


async def _expected(database_url: str) -> dict[str | None, list[str]]:
    """Each connection's event ids in order (``seq``)."""
    expected: dict[str | None, list[str]] = defaultdict(list)
    async with connection(database_url) as conn:
        for row in await conn.fetch("SELECT event_id, connection_id FROM events ORDER BY seq"):
            expected[row["connection_id"]].append(str(row["event_id"]))
    return expected


def webhook_table(results: list[WebhookFigures]) -> str:
    """The webhook rows in Markdown."""
    header = (
        "webhooks", "events", "retried", "delivered", "duplicated", "lost", "out of order",
        "receiver away", "passed",
    )  # fmt: skip
    rows = [
        (
            r.scenario,
            r.events,
            r.retried,
            r.tally.delivered,
            r.tally.duplicated,
            r.tally.lost,
            r.tally.out_of_order,
            f"{r.outage_seconds:.0f} s",
            "yes" if r.passed else "NO",
        )
        for r in results
    ]
    return markdown_table(header, rows, passed=True)
