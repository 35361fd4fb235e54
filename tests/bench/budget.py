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
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench.charts import BENCH_DIR, line_chart, per_second, rate_of, since
from tests.bench.common import (
    LOG_DIR,
    active_connections,
    fresh_settings,
    print_table,
    timed,
    wait_until_synced,
)
from tests.bench.sampling import ReplicaSampler, free_port_range
from worker.emulator.config import EmulatorConfig
from worker.emulator.server import running_emulator
from worker.local import (
    CLIENT_ID,
    authorize_beneficiaries,
    emulator_stats,
    enqueue_all,
    start_workers,
    stop_workers,
    worker_environment,
)
from worker.settings import Settings

WARM_UP = 4.0
CODE_LIFETIME_SECONDS = 3600
REPLICA_RATE_WINDOW = 5.0


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
    replica_counts: list[list[tuple[float, float]]]  # each replica's (epoch, requests so far)

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


async def run(scenario: Scenario, settings: Settings, beneficiaries: int, replicas: int) -> Outcome:
    """Sync ``beneficiaries`` through ``replicas`` worker processes under one scenario.

    By default the replicas run as a service does: started (and warmed up) before the work
    arrives, so that three processes importing at once on two cores do not disturb the
    measurement; ``start_with_work`` starts them once the work is queued and counts their
    warm-ups.
    """
    # All the connect jobs are queued at once and wait their turn for the budget (800 requests
    # at 10/s): codes would die of old age (60 s from the enqueue, BB_CODE_LIFETIME; the storm
    # bench measures that clock). Here they live an hour, at the emulator too: the budget is
    # measured, not the code's life.
    config = EmulatorConfig(
        beneficiaries=beneficiaries,
        rate_limit=scenario.server_limit,
        code_lifetime=CODE_LIFETIME_SECONDS,
    )
    async with running_emulator(config) as emulator:
        jobs = await authorize_beneficiaries(emulator.base_url, beneficiaries, "bench-")
        env = worker_environment(
            settings,
            emulator.base_url,
            BB_RATE_LIMIT=str(scenario.worker_limit),
            BB_CODE_LIFETIME=str(CODE_LIFETIME_SECONDS),
            WORKER_CONCURRENCY="8",
        )
        log_dir = LOG_DIR / scenario.name.replace(" ", "-").replace(",", "")
        first_port = free_port_range(replicas)
        sampler = ReplicaSampler(range(first_port, first_port + replicas))
        if not scenario.start_with_work:
            workers = await start_workers(
                env, replicas, log_dir, metrics_port=first_port, burst=False
            )
            await asyncio.sleep(WARM_UP)
        await emulator_stats(emulator.base_url, reset=True)
        sampling = asyncio.create_task(sampler.run())
        started = time.monotonic()
        await enqueue_all(settings.redis_url, jobs)
        if scenario.start_with_work:  # their warm-ups count
            workers = await start_workers(
                env, replicas, log_dir, metrics_port=first_port, burst=False
            )
        await wait_until_synced(settings, beneficiaries)
        wall = time.monotonic() - started
        stats = await emulator_stats(emulator.base_url)
        sampling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampling
        await stop_workers(workers)
    active = await active_connections(settings)
    return Outcome(scenario, stats, active, beneficiaries, wall, sampler.samples)


def chart(outcome: Outcome) -> Path:
    """Requests per second at the server over the run (every arrival, 429s included), and each
    replica's own count of what it sent (its bbingest_bb2_requests_total, sampled every
    second, as a mean over the last few seconds: a replica's share jitters from second to
    second), against the limit."""
    start = int(outcome.stats["first_request_at"])
    series = {"at the server (all replicas)": per_second(outcome.stats["by_second"], start)}
    for index, samples in enumerate(outcome.replica_counts):
        rates = rate_of(samples, window=REPLICA_RATE_WINDOW)
        series[f"replica {index + 1} (its own count, {REPLICA_RATE_WINDOW:.0f} s mean)"] = since(
            rates, start
        )
    scenario = outcome.scenario
    return line_chart(
        BENCH_DIR
        / (
            f"budget-limit-{scenario.server_limit}-told-{scenario.worker_limit}"
            + ("-started-with-work" if scenario.start_with_work else "")
            + ".png"
        ),
        f"Shared budget: BB2 admits {scenario.server_limit}/s,"
        f" {len(outcome.replica_counts)} replicas told {scenario.worker_limit}/s",
        series,
        y_label="requests per second",
        limit=scenario.server_limit,
        limit_label=f"BB2's limit ({scenario.server_limit}/s)",
    )


def report(outcomes: list[Outcome]) -> None:
    """Print the table the README quotes."""
    columns = (
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
    )
    print_table("shared budget", columns, [outcome.row() for outcome in outcomes])


SCENARIOS = {
    "before-work": Scenario("limit 10, workers 10", server_limit=10, worker_limit=10),
    "with-work": Scenario(
        "limit 10, workers 10, replicas started with the work",
        server_limit=10,
        worker_limit=10,
        start_with_work=True,
    ),
}


async def main(scenarios: list[str], beneficiaries: int, replicas: int) -> None:
    """The scenarios asked for, one after the other, each on emptied stores."""
    outcomes = []
    for name in scenarios:
        settings = await fresh_settings()
        with timed(SCENARIOS[name].name):
            outcomes.append(await run(SCENARIOS[name], settings, beneficiaries, replicas))
    report(outcomes)
    for outcome in outcomes:
        print(f"chart: {chart(outcome)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--beneficiaries", type=int, default=200)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument(
        "--scenario", action="append", choices=sorted(SCENARIOS), help="default: both"
    )
    args = parser.parse_args()
    asyncio.run(main(args.scenario or list(SCENARIOS), args.beneficiaries, args.replicas))
