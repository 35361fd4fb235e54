"""``make bench`` (part 3): a connect storm. Is every authorization code exchanged within
its minute, however much else is queued, and when a replica dies?

1,000 connections are linked first (at full speed, on an unlimited emulator). Then the
emulator enforces 10 requests/s, 1,000 resyncs are queued in the bulk lane, three worker
replicas (processes) run, and 300 beneficiaries authorize: their connect events reach
``bbingest serve`` (a process) within about 2 s. Printed: codes expired, lost in flight
and refused at the intake (503), the code age at exchange (from the event's arrival:
p50 / p95 / max, against N/R + 5 s), the time until every connection is active with all
its claims, and the busiest second at the server. The same storm runs again with one
replica SIGKILLed 5 s in.

The emulator counts a code's 60 s from its issue; the bench authorizes all 300 before the
storm (which takes a while), so the emulator's code lifetime is 60 s plus that time: the
service's own clock (``BB_CODE_LIFETIME`` = 60 s from the event) is the binding one.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from redis.asyncio import Redis
from rich.console import Console
from rich.table import Table

from tests.bench.charts import BENCH_DIR, distribution_chart
from tests.bench.common import LOG_DIR as BENCH_LOGS
from tests.bench.common import fresh_settings
from worker.emulator.config import EmulatorConfig
from worker.emulator.server import RunningEmulator, running_emulator
from worker.emulator.state import EmulatorState
from worker.intake.auth import sign
from worker.jobs.exchange_rules import LOST_IN_FLIGHT
from worker.jobs.payloads import ConnectJob, ResyncJob
from worker.local import (
    authorize_beneficiaries,
    emulator_stats,
    enqueue_all,
    start_workers,
    stop_workers,
    wait_for_replicas,
    worker_environment,
)
from worker.settings import Settings

LOG_DIR = BENCH_LOGS / "storm"
CLAIMS = 20  # one EOB page each: the bench measures waiting, not paging
INTAKE_SECRET = "storm-bench-intake-secret-" + "x" * 16
CODE_LIFETIME = 60.0
CLIENT_ID = "emulator-client"


@dataclass(frozen=True)
class StormSize:
    """One storm: how many codes, how fast BB2 lets us go, what else is queued."""

    codes: int = 300
    spread_seconds: float = 2.0
    rate: int = 10
    replicas: int = 3
    exchange_concurrency: int = 4
    bulk: int = 1000
    code_lifetime: float = CODE_LIFETIME
    kill_after: float | None = None  # SIGKILL one replica this long after the storm began
    lease_seconds: float = 60.0  # JOB_LEASE_SECONDS of every other job
    settle_seconds: float = 10.0  # the bulk lane fills the budget before the storm


@dataclass(frozen=True)
class StormFigures:
    """What a storm left behind."""

    codes: int
    refused_503: int
    exchanged: int
    expired: int
    lost_in_flight: int
    other_errors: int
    ages: list[float]
    all_active_after: float | None
    active: int
    busiest_second: int
    requests_429: int
    killed_exchanges_in_flight: int | None

    def percentile(self, share: float) -> float:
        ordered = sorted(self.ages)
        return ordered[max(0, math.ceil(share * len(ordered)) - 1)] if ordered else math.nan


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def intake_process(env: dict[str, str], log: Path) -> AsyncIterator[str]:
    """``bbingest serve`` as a process; its base URL once it answers."""
    port = free_port()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "worker.cli", "serve", "--port", str(port),
            env={**env, "INTAKE_SECRET": INTAKE_SECRET}, stdout=out, stderr=out,
        )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base_url) as http:
            for _ in range(200):
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("bbingest serve did not start")
        yield base_url
    finally:
        process.terminate()
        await process.wait()


async def post_events(base_url: str, jobs: list[ConnectJob], spread: float) -> list[int]:
    """Post each job's connect event, spread evenly over ``spread`` seconds; the statuses."""
    key = INTAKE_SECRET.encode()
    limits = httpx.Limits(max_connections=64)

    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as http:

        async def post(index: int, job: ConnectJob) -> int:
            await asyncio.sleep(index * spread / len(jobs))
            body = orjson.dumps({"event_id": f"evt-{job.connection_id}", **job.model_dump()})
            headers = {
                "Content-Type": "application/json",
                **sign(key, "POST", "/v1/events/connect", body),
            }
            response = await http.post("/v1/events/connect", content=body, headers=headers)
            return response.status_code

        return list(await asyncio.gather(*(post(i, job) for i, job in enumerate(jobs))))


async def wait_settled(database_url: str, ids: list[str], deadline: float) -> None:
    """Until every connection is active or in error (or the deadline passes)."""
    conn = await asyncpg.connect(database_url)
    try:
        while time.monotonic() < deadline:
            done = await conn.fetchval(
                "SELECT count(*) FROM connections WHERE connection_id = ANY($1)"
                " AND status IN ('active', 'error')",
                ids,
            )
            if done == len(ids):
                return
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


async def gather_figures(
    database_url: str,
    ids: list[str],
    started: float,
    statuses: list[int],
    stats: dict[str, Any],
    killed_in_flight: int | None,
) -> StormFigures:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT outcome, age_seconds FROM code_exchanges WHERE connection_id = ANY($1)", ids
        )
        connections = await conn.fetch(
            "SELECT c.status, c.last_error, c.status_changed_at,"
            " (SELECT count(*) FROM fhir_resources r WHERE r.connection_id = c.connection_id)"
            " AS stored FROM connections c WHERE connection_id = ANY($1)",
            ids,
        )
    finally:
        await conn.close()
    outcomes = [row["outcome"] for row in rows]
    active = [c for c in connections if c["status"] == "active" and c["stored"] > 0]
    errors = [c for c in connections if c["status"] == "error"]
    accepted = sum(1 for s in statuses if s == 202)
    all_active = None
    if len(active) == accepted and active:
        last = max(c["status_changed_at"].timestamp() for c in active)
        all_active = last - started
    return StormFigures(
        codes=len(ids),
        refused_503=sum(1 for s in statuses if s == 503),
        exchanged=outcomes.count("exchanged"),
        expired=outcomes.count("expired"),
        lost_in_flight=sum(1 for c in errors if c["last_error"] == LOST_IN_FLIGHT),
        other_errors=sum(1 for c in errors if c["last_error"] != LOST_IN_FLIGHT)
        - outcomes.count("expired"),
        ages=[row["age_seconds"] for row in rows if row["outcome"] == "exchanged"],
        all_active_after=all_active,
        active=len(active),
        busiest_second=int(stats.get("max_in_window_by_client", {}).get(CLIENT_ID, 0)),
        requests_429=int(stats.get("by_status", {}).get("429", 0)),
        killed_exchanges_in_flight=killed_in_flight,
    )


async def exchanges_in_flight(database_url: str) -> int:
    """Exchanges whose request has left and whose outcome is not recorded yet."""
    conn = await asyncpg.connect(database_url)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM code_exchanges WHERE started_at IS NOT NULL AND outcome IS NULL"
        )
        return count
    finally:
        await conn.close()


async def storm(
    settings: Settings,
    emulator: RunningEmulator,
    size: StormSize,
    prefix: str,
    bulk_ids: list[str],
    log_dir: Path,
) -> tuple[StormFigures, float]:
    """Queue the bulk resyncs, start the replicas and the intake, let ``size.codes``
    beneficiaries authorize, post their connect events, and measure; also the seconds the
    authorizations took (codes live from their issue at the emulator)."""
    env = worker_environment(
        settings,
        emulator.base_url,
        BB_RATE_LIMIT=str(size.rate),
        BB_CODE_LIFETIME=str(size.code_lifetime),
        WORKER_EXCHANGE_CONCURRENCY=str(size.exchange_concurrency),
        JOB_LEASE_SECONDS=str(size.lease_seconds),
    )
    await enqueue_all(settings.redis_url, [ResyncJob(connection_id=c) for c in bulk_ids])
    async with AsyncExitStack() as stack:
        workers = await start_workers(env, size.replicas, log_dir, burst=False)
        stack.push_async_callback(stop_workers, workers)
        base_url = await stack.enter_async_context(intake_process(env, log_dir / "intake.log"))
        await wait_for_replicas(settings.redis_url, size.replicas)
        if bulk_ids:
            await asyncio.sleep(size.settle_seconds)  # let the resyncs fill the budget
        authorizing = time.monotonic()
        # After the bulk beneficiaries: authorizing one again would delete its bulk grant.
        jobs = await authorize_beneficiaries(
            emulator.base_url, size.codes, prefix, offset=size.bulk
        )
        authorized_in = time.monotonic() - authorizing
        await emulator_stats(emulator.base_url, reset=True)
        started = time.time()
        killer = asyncio.create_task(_kill_later(workers, size.kill_after, settings))
        statuses = await post_events(base_url, jobs, size.spread_seconds)
        killed_in_flight = await killer
        ids = [job.connection_id for job in jobs]
        await wait_settled(settings.database_url, ids, time.monotonic() + 600)
        stats = await emulator_stats(emulator.base_url)
    figures = await gather_figures(
        settings.database_url, ids, started, statuses, stats, killed_in_flight
    )
    return figures, authorized_in


async def _kill_later(
    workers: list[asyncio.subprocess.Process], after: float | None, settings: Settings
) -> int | None:
    """SIGKILL the first replica ``after`` seconds in; the exchanges in flight then."""
    if after is None:
        return None
    await asyncio.sleep(after)
    in_flight = await exchanges_in_flight(settings.database_url)
    workers[0].send_signal(signal.SIGKILL)
    await workers[0].wait()
    return in_flight


async def link_bulk(settings: Settings, state: EmulatorState, size: StormSize) -> list[str]:
    """Link ``size.bulk`` connections at full speed; their ids."""
    if not size.bulk:
        return []
    config = EmulatorConfig(beneficiaries=size.bulk + size.codes, claims_per_beneficiary=CLAIMS)
    async with running_emulator(config, state=state) as free:
        jobs = await authorize_beneficiaries(free.base_url, size.bulk, "bulk-")
        await enqueue_all(settings.redis_url, jobs)
        env = worker_environment(
            settings, free.base_url, BB_RATE_LIMIT="500", WORKER_CONCURRENCY="16"
        )
        workers = await start_workers(env, 3, LOG_DIR / "seed")
        for worker in workers:
            await worker.wait()
    return [job.connection_id for job in jobs]


async def flush_redis(redis_url: str) -> None:
    redis: Redis = Redis.from_url(redis_url)
    try:
        await redis.flushdb()
    finally:
        await redis.aclose()


def authorization_allowance(codes: int) -> float:
    """Seconds the bench may spend authorizing before the storm (codes live from issue)."""
    return max(10.0, 0.1 * codes)


async def run_storms(
    settings: Settings, size: StormSize, kills: tuple[float | None, ...], log_dir: Path
) -> list[StormFigures]:
    """Link the bulk connections, then one storm per entry of ``kills`` (None: no kill)."""
    state = EmulatorState()
    bulk_ids = await link_bulk(settings, state, size)
    results = []
    allowance = authorization_allowance(size.codes)
    for round_, kill_after in enumerate(kills):
        await flush_redis(settings.redis_url)  # queues and budget state of the last round
        config = EmulatorConfig(
            beneficiaries=size.bulk + size.codes,
            claims_per_beneficiary=CLAIMS,
            rate_limit=size.rate,
            code_lifetime=math.ceil(size.code_lifetime + allowance),
        )
        this = StormSize(**{**size.__dict__, "kill_after": kill_after})
        async with running_emulator(config, state=state) as limited:
            figures, authorized_in = await storm(
                settings, limited, this, f"storm{round_}-", bulk_ids, log_dir / f"round{round_}"
            )
        if authorized_in > allowance:
            print(f"warning: authorizing took {authorized_in:.1f} s, over {allowance:.0f} s")
        results.append(figures)
    return results


def render(size: StormSize, labels: list[str], results: list[StormFigures]) -> Table:
    bound = size.codes / size.rate + 5
    table = Table(title=f"connect storm: {size.codes} codes, {size.rate} requests/s")
    columns = (
        "run", "503", "exchanged", "expired", "lost in flight", "other errors",
        "age p50", "age p95", "age max", f"≤ N/R+5 ({bound:.0f} s)", "all active after",
        "busiest second", "429s",
    )  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right")
    for label, f in zip(labels, results, strict=True):
        oldest = max(f.ages, default=math.nan)
        table.add_row(
            label,
            str(f.refused_503),
            f"{f.exchanged}/{f.codes}",
            str(f.expired),
            str(f.lost_in_flight)
            + (f" (in flight at kill: {f.killed_exchanges_in_flight})"
               if f.killed_exchanges_in_flight is not None else ""),
            str(f.other_errors),
            f"{f.percentile(0.5):.1f} s",
            f"{f.percentile(0.95):.1f} s",
            f"{oldest:.1f} s",
            "yes" if oldest <= bound else "no",
            "-" if f.all_active_after is None else f"{f.all_active_after:.0f} s",
            str(f.busiest_second),
            str(f.requests_429),
        )  # fmt: skip
    return table


async def main(size: StormSize) -> None:
    settings = await fresh_settings()
    console = Console(width=200)
    console.print(
        f"linking {size.bulk} connections, then {size.codes} codes in {size.spread_seconds:.0f} s"
        f" with {size.bulk} resyncs queued: a storm, and a storm with a replica SIGKILLed"
        f" {size.kill_after or 5:.0f} s in…"
    )
    kills = (None, size.kill_after or 5.0)
    results = await run_storms(settings, size, kills, LOG_DIR)
    labels = ["storm", "storm, replica SIGKILLed"]
    console.print(render(size, labels, results))
    chart = distribution_chart(
        BENCH_DIR / "code-age-at-exchange.png",
        f"Code age at exchange: {size.codes} codes, {size.bulk} resyncs queued,"
        f" {size.rate} requests/s",
        {label: f.ages for label, f in zip(labels, results, strict=True)},
        x_label="seconds from the connect event's arrival to BB2's answer",
        limit=size.code_lifetime,
        limit_label=f"a code's life ({size.code_lifetime:.0f} s)",
    )
    console.print(f"chart: {chart}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--codes", type=int, default=300)
    parser.add_argument("--bulk", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=10)
    args = parser.parse_args()
    os.environ.setdefault("LOG_LEVEL", "info")
    asyncio.run(main(StormSize(codes=args.codes, bulk=args.bulk, rate=args.rate)))
