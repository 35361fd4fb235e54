"""``make bench``: does the shared budget use BB2's limit to the full without overrunning it?

Starts the emulator with a 10 requests/s limit and 200 synthetic beneficiaries, runs three
worker processes with concurrency 8 until every connection is synced, and prints what the
emulator saw. The first run starts the replicas before the work, as a running service's
are; the second starts them as the work arrives (as an autoscaler would), so that their
start-up warm-ups land inside the measurement: they take budget slots too, so the busiest
second stays within the limit and no 429 comes. (An edge lower than the configured limit:
``tests.bench.adaptive``.)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from rich.console import Console
from rich.table import Table

from tests.integration.support import reset_stores
from worker.emulator.config import EmulatorConfig
from worker.emulator.server import running_emulator
from worker.local import (
    CLIENT_ID,
    authorize_beneficiaries,
    emulator_stats,
    enqueue_all,
    start_workers,
    worker_environment,
)
from worker.settings import Settings, load_settings

LOG_DIR = Path(".bench")
WARM_UP = 4.0


@dataclass(frozen=True)
class Scenario:
    """One run: the limit BB2 enforces and the one the workers are told."""

    name: str
    server_limit: int
    worker_limit: int
    start_with_work: bool = False


@dataclass(frozen=True)
class Outcome:
    """What the emulator saw during one run."""

    scenario: Scenario
    stats: dict[str, Any]
    active: int
    beneficiaries: int
    wall: float

    @property
    def admitted(self) -> int:
        return int(self.stats["total"]) - self.throttled

    @property
    def throttled(self) -> int:
        return int(self.stats["by_status"].get("429", 0))

    @property
    def busy(self) -> float:
        return float(self.stats["last_request_at"]) - float(self.stats["first_request_at"])

    def row(self) -> list[str]:
        limit = self.scenario.server_limit
        rate = self.admitted / self.busy
        ideal = self.admitted / limit
        return [
            self.scenario.name,
            str(self.stats["total"]),
            str(self.stats["max_in_window_by_client"].get(CLIENT_ID, 0)),
            str(self.stats["max_in_window"]),
            f"{rate:.2f}/s",
            f"{rate / limit:.3f}",
            str(self.throttled),
            str(self.stats.get("during_cooldown", "-")),
            f"{self.busy / ideal:.3f}",
            f"{self.active}/{self.beneficiaries}",
            f"{self.wall:.1f} s",
        ]


async def active_connections(settings: Settings) -> int:
    conn = await asyncpg.connect(settings.database_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM connections WHERE status = 'active'"))
    finally:
        await conn.close()


async def wait_until_synced(settings: Settings, count: int) -> None:
    """Poll until every connection left ``pending``."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        query = "SELECT count(*) FROM connections WHERE status <> 'pending'"
        while await conn.fetchval(query) < count:  # noqa: ASYNC110 - other processes' progress
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def run(scenario: Scenario, settings: Settings, beneficiaries: int, replicas: int) -> Outcome:
    """Sync ``beneficiaries`` through ``replicas`` worker processes under one scenario.

    By default the replicas run as a service does: started (and warmed up) before the work
    arrives, so that three processes importing at once on two cores do not disturb the
    measurement; ``start_with_work`` starts them once the work is queued and counts their
    warm-ups.
    """
    await reset_stores(settings.database_url, settings.redis_url)
    # Everyone is authorized before the work starts, which on a busy machine ages the last
    # codes past CMS's 60 s: this bench measures the budget, so codes live an hour here
    # (tests.bench.storm measures exchanges within the minute).
    config = EmulatorConfig(
        beneficiaries=beneficiaries, rate_limit=scenario.server_limit, code_lifetime=3600
    )
    async with running_emulator(config) as emulator:
        jobs = await authorize_beneficiaries(emulator.base_url, beneficiaries, "bench-")
        env = worker_environment(
            settings,
            emulator.base_url,
            BB_RATE_LIMIT=str(scenario.worker_limit),
            BB_CODE_LIFETIME="3600",
            WORKER_CONCURRENCY="8",
        )
        log_dir = LOG_DIR / scenario.name.replace(" ", "-").replace(",", "")
        if scenario.start_with_work:
            await emulator_stats(emulator.base_url, reset=True)
            started = time.monotonic()
            await enqueue_all(settings.redis_url, jobs)
            workers = await start_workers(env, replicas, log_dir, burst=False)
        else:
            workers = await start_workers(env, replicas, log_dir, burst=False)
            await asyncio.sleep(WARM_UP)
            await emulator_stats(emulator.base_url, reset=True)
            started = time.monotonic()
            await enqueue_all(settings.redis_url, jobs)
        await wait_until_synced(settings, beneficiaries)
        wall = time.monotonic() - started
        stats = await emulator_stats(emulator.base_url)
        for worker in workers:
            worker.terminate()
            await worker.wait()
    return Outcome(scenario, stats, await active_connections(settings), beneficiaries, wall)


def report(outcomes: list[Outcome]) -> None:
    """Print the table the README quotes."""
    table = Table(title="shared budget")
    for column in (
        "run",
        "requests",
        "most in any 1 s (the app's)",
        "(all, warm-ups included)",
        "mean rate",
        "utilization",
        "429s",
        "sent in cool-down",
        "elapsed / ideal",
        "active",
        "wall",
    ):
        table.add_column(column, justify="right")
    for outcome in outcomes:
        table.add_row(*outcome.row())
    Console(width=160).print(table)


async def main(beneficiaries: int, replicas: int) -> None:
    """Both scenarios, one after the other."""
    # The emulator (the measuring instrument) renders pages in threads: let its event loop
    # timestamp arrivals promptly.
    sys.setswitchinterval(0.001)
    settings = load_settings()
    scenarios = [
        Scenario("limit 10, workers 10", server_limit=10, worker_limit=10),
        Scenario(
            "limit 10, workers 10, replicas started with the work",
            server_limit=10,
            worker_limit=10,
            start_with_work=True,
        ),
    ]
    outcomes = []
    for scenario in scenarios:
        began = time.monotonic()
        outcomes.append(await run(scenario, settings, beneficiaries, replicas))
        print(f"{scenario.name}: {time.monotonic() - began:.0f} s", flush=True)
    report(outcomes)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--beneficiaries", type=int, default=200)
    parser.add_argument("--replicas", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.beneficiaries, args.replicas))
