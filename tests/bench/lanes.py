"""``make bench`` (part 2): do connects stay fast while bulk resyncs saturate the budget?

2,000 connections are linked first (at full speed, on an unlimited emulator), then the
emulator enforces 10 requests/s, 2,000 resync jobs are queued, three worker processes run,
and 20 new beneficiaries connect: each connect's time from enqueue to ``active`` is printed
beside the same 20 connects on an idle system. Last, the requests a resync costs per
beneficiary: an incremental pass over unchanged data versus a full pass.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import asyncpg
from redis.asyncio import Redis
from rich.console import Console
from rich.table import Table

from tests.bench.common import LOG_DIR as BENCH_LOGS
from tests.bench.common import fresh_settings
from worker.emulator.config import EmulatorConfig
from worker.emulator.server import RunningEmulator, running_emulator
from worker.emulator.state import EmulatorState
from worker.jobs.payloads import ConnectJob, ResyncJob
from worker.jobs.queue import enqueue, open_queue
from worker.local import (
    authorize_beneficiaries,
    emulator_stats,
    enqueue_all,
    start_workers,
    stop_workers,
    worker_environment,
)
from worker.settings import Settings

LOG_DIR = BENCH_LOGS / "lanes"
WARM_UP = 4.0
CLAIMS = 20  # one EOB page each: the bench measures waiting, not paging


@asynccontextmanager
async def emulator(
    state: EmulatorState, beneficiaries: int, limit: int | None
) -> AsyncIterator[RunningEmulator]:
    """An emulator over ``state``, so tokens survive a restart with another limit."""
    config = EmulatorConfig(
        beneficiaries=beneficiaries, claims_per_beneficiary=CLAIMS, rate_limit=limit
    )
    async with running_emulator(config, state=state) as running:
        yield running


async def run_to_empty(settings: Settings, base_url: str, **env: str) -> None:
    """Three burst-mode worker processes until the queues are empty."""
    workers = await start_workers(
        worker_environment(settings, base_url, **env), 3, LOG_DIR / "seed"
    )
    for worker in workers:
        await worker.wait()


async def drop_queued_jobs(settings: Settings) -> None:
    """Empty the bench's Redis database (queues, job keys and budget state)."""
    redis: Redis = Redis.from_url(settings.redis_url)
    try:
        await redis.flushdb()
    finally:
        await redis.aclose()


async def activated_at(settings: Settings, ids: list[str]) -> dict[str, datetime]:
    conn = await asyncpg.connect(settings.database_url)
    try:
        rows = await conn.fetch(
            "SELECT connection_id, status_changed_at FROM connections"
            " WHERE connection_id = ANY($1) AND status = 'active'",
            ids,
        )
    finally:
        await conn.close()
    return {row["connection_id"]: row["status_changed_at"] for row in rows}


async def time_connects(settings: Settings, jobs: list[ConnectJob]) -> list[float]:
    """Queue the connects one a second apart; seconds from each enqueue to ``active``."""
    queue = await open_queue(settings.redis_url)
    queued: dict[str, datetime] = {}
    try:
        for job in jobs:
            queued[job.connection_id] = datetime.now(UTC)
            await enqueue(queue, job)
            await asyncio.sleep(1)
    finally:
        await queue.aclose()
    ids = list(queued)
    deadline = time.monotonic() + 600
    while len(done := await activated_at(settings, ids)) < len(ids):
        if time.monotonic() > deadline:
            raise TimeoutError("connects did not finish within 10 minutes")
        await asyncio.sleep(0.2)
    return [(done[i] - queued[i]).total_seconds() for i in ids]


async def resync_cost(settings: Settings, base_url: str, ids: list[str], *, full: bool) -> float:
    """Requests per beneficiary of one resync of each of ``ids`` (tokens expired, as at night)."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(
            "UPDATE connections SET access_expires_at = now() - interval '1 hour'"
            " WHERE connection_id = ANY($1)",
            ids,
        )
        if full:
            await conn.execute(
                "UPDATE sync_runs SET started_at = started_at - interval '60 days'"
                " WHERE connection_id = ANY($1)",
                ids,
            )
    finally:
        await conn.close()
    await enqueue_all(settings.redis_url, [ResyncJob(connection_id=c) for c in ids])
    await emulator_stats(base_url, reset=True)
    await run_to_empty(settings, base_url)
    stats = await emulator_stats(base_url)
    # What the resyncs need: neither the replicas' start-up connection (the public metadata)
    # nor a throttled attempt is part of their cost.
    spent = sum(n for endpoint, n in stats["by_endpoint"].items() if endpoint != "metadata")
    return (spent - int(stats["by_status"].get("429", 0))) / len(ids)


def summary(label: str, seconds: list[float]) -> list[str]:
    ordered = sorted(seconds)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    return [label, f"{statistics.median(ordered):.2f} s", f"{p95:.2f} s", f"{max(ordered):.2f} s"]


async def main(bulk: int, connects: int) -> None:
    settings = await fresh_settings()
    state = EmulatorState()
    total = bulk + 2 * connects
    console = Console()
    async with emulator(state, total, None) as free:
        console.print(f"linking {bulk} connections at full speed…")
        await enqueue_all(
            settings.redis_url, await authorize_beneficiaries(free.base_url, bulk, "bulk-")
        )
        await run_to_empty(settings, free.base_url, BB_RATE_LIMIT="500", WORKER_CONCURRENCY="16")
        # Only the beneficiaries after the bulk ones: authorizing one again deletes the
        # tokens of its earlier grant (as CMS does), and the bulk resyncs would then find
        # their connections needing a re-consent and cost nothing.
        users = await authorize_beneficiaries(free.base_url, 2 * connects, "new-", offset=bulk)
    idle_jobs, busy_jobs = users[:connects], users[connects:]
    async with emulator(state, total, 10) as limited:
        env = worker_environment(settings, limited.base_url, WORKER_CONCURRENCY="8")
        console.print(f"{connects} connects on an idle system…")
        workers = await start_workers(env, 3, LOG_DIR / "idle", burst=False)
        await asyncio.sleep(WARM_UP)  # time connects, not the workers' start-up
        idle = await time_connects(settings, idle_jobs)
        await stop_workers(workers)
        console.print(f"{connects} connects while {bulk} resyncs saturate the budget…")
        ids = [f"bulk-BBUser{i:05d}" for i in range(bulk)]
        await enqueue_all(settings.redis_url, [ResyncJob(connection_id=c) for c in ids])
        workers = await start_workers(env, 3, LOG_DIR / "busy", burst=False)
        await asyncio.sleep(WARM_UP)
        await emulator_stats(limited.base_url, reset=True)
        await asyncio.sleep(10)  # let the resyncs fill the budget first
        busy = await time_connects(settings, busy_jobs)
        stats = await emulator_stats(limited.base_url)
        await stop_workers(workers)
        await drop_queued_jobs(settings)  # the resyncs left over would count in what follows
        sample = ids[:20]
        incremental = await resync_cost(settings, limited.base_url, sample, full=False)
        full = await resync_cost(settings, limited.base_url, sample, full=True)
    table = Table(title="connect: enqueue to active")
    for column in ("system", "p50", "p95", "max"):
        table.add_column(column, justify="right")
    table.add_row(*summary("idle", idle))
    table.add_row(*summary(f"{bulk} resyncs queued", busy))
    console.print(table)
    busy_rate = stats["total"] / (stats["last_request_at"] - stats["first_request_at"])
    console.print(
        f"budget while busy: {busy_rate:.2f} requests/s, {stats['max_in_window']} most in any"
        f" second, {stats['by_status'].get('429', 0)} 429s"
    )
    console.print(
        f"resync requests per beneficiary: incremental {incremental:.2f}, full pass {full:.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bulk", type=int, default=2000)
    parser.add_argument("--connects", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.bulk, args.connects))
