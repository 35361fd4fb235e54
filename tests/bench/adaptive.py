"""``make bench``: does the adaptive budget find an edge's unannounced limit by itself?

The emulator's edge admits 5 requests/s per app while the workers are told 10/s
(``BB_RATE_LIMIT``). Three worker processes (concurrency 8) sync beneficiaries for at least
``--work-seconds``; then the edge is raised to 10/s and the run measures how long the shared
rate takes to reach 10/s again, and waits until every connection is synced. Twice: with
bare 429s (as an edge may send them), and with 429s that carry ``Retry-After``.

Printed per run: the 429s' share of the requests after the first 30 s, the share of the
edge's 5/s used over the limited phase, the seconds back to 10/s, the connections synced
and the run's time. The time series (requests, 429s and the budget's rate each second) go
to ``bench/adaptive-<run>.json`` for charts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis

from tests.bench import common
from tests.bench.charts import BENCH_DIR, line_chart, per_second
from worker.bluebutton.budget import RequestBudget
from worker.emulator.config import EmulatorConfig
from worker.emulator.server import running_emulator
from worker.local import (
    CLIENT_ID,
    authorize_beneficiaries,
    emulator_stats,
    enqueue_all,
    start_workers,
    stop_workers,
    wait_for_replicas,
    worker_environment,
)
from worker.settings import Settings

SERIES_DIR = Path("bench")
EDGE_RATE = 5
TOLD_RATE = 10
# 429s while the budget first comes down from 10/s to the edge's 5/s are expected.
SETTLING_SECONDS = 30
# Give up waiting for the rate to come back after this long (the README promises 120 s).
RECOVERY_TIMEOUT = 180.0


@dataclass(frozen=True)
class Scenario:
    """One run: whether the edge's 429s carry Retry-After."""

    name: str
    retry_after: bool


@dataclass
class Outcome:
    """What one run saw: the emulator's counts, the budget's rate over time, the phases."""

    scenario: Scenario
    stats: dict[str, Any]
    started: float
    edge_raised: float
    recovered: float | None
    rates: list[tuple[float, float]] = field(default_factory=list)
    active: int = 0
    beneficiaries: int = 0
    wall: float = 0.0

    def _sum(self, counts: Mapping[str, int], first: float, last: float) -> int:
        return sum(n for second, n in counts.items() if first <= int(second) < last)

    def throttled_share(self) -> float:
        """429s / requests during the limited phase, after the first SETTLING_SECONDS."""
        first, last = self.started + SETTLING_SECONDS, self.edge_raised
        total = self._sum(self.stats["by_second"], first, last)
        return self._sum(self.stats["throttled_by_second"], first, last) / max(1, total)

    def used(self) -> float:
        """Admitted requests / what the edge's 5/s allowed over the limited phase."""
        first, last = self.started, self.edge_raised
        admitted = self._sum(self.stats["by_second"], first, last) - self._sum(
            self.stats["throttled_by_second"], first, last
        )
        return admitted / (EDGE_RATE * (last - first))

    def row(self) -> list[str]:
        back = "-" if self.recovered is None else f"{self.recovered - self.edge_raised:.0f} s"
        return [
            self.scenario.name,
            f"{self.edge_raised - self.started:.0f} s",
            str(self.stats["total"]),
            str(self.stats["by_status"].get("429", 0)),
            f"{self.throttled_share():.1%}",
            f"{self.used():.1%}",
            back,
            f"{self.active}/{self.beneficiaries}",
            f"{self.wall:.0f} s",
        ]

    def series(self) -> dict[str, Any]:
        """The run's time series, seconds counted from the start of the work."""
        start = int(self.started)
        return {
            "edge_rate": EDGE_RATE,
            "told_rate": TOLD_RATE,
            "retry_after": self.scenario.retry_after,
            "edge_raised_at": round(self.edge_raised - self.started, 1),
            "recovered_at": None
            if self.recovered is None
            else round(self.recovered - self.started, 1),
            "requests_per_second": {
                str(int(s) - start): n for s, n in self.stats["by_second"].items()
            },
            "throttled_per_second": {
                str(int(s) - start): n for s, n in self.stats["throttled_by_second"].items()
            },
            "budget_rate": [[round(t - self.started, 1), rate] for t, rate in self.rates],
        }


async def _set_edge(base_url: str, rate: int, retry_after: bool) -> None:
    async with httpx.AsyncClient(base_url=base_url) as http:
        body = {"rate": rate, "retry_after": retry_after}
        (await http.post("/_emulator/edge/rate", json=body)).raise_for_status()


async def _follow(
    budget: RequestBudget, rates: list[tuple[float, float]], until: float, goal: float | None
) -> float | None:
    """Sample the shared rate each second until ``until`` (epoch s), or until it reaches
    ``goal``: when it did, the time it did."""
    while (now := time.time()) < until:
        rate = await budget.rate()
        rates.append((now, rate))
        if goal is not None and rate >= goal:
            return now
        await asyncio.sleep(1.0)
    return None


async def run(scenario: Scenario, settings: Settings, args: argparse.Namespace) -> Outcome:
    """Sync under a 5/s edge for ``args.work_seconds``, raise the edge, finish."""
    config = EmulatorConfig(
        beneficiaries=args.beneficiaries,
        claims_per_beneficiary=args.claims,
        code_lifetime=3600,
        edge_rate=EDGE_RATE,
        edge_retry_after=scenario.retry_after,
    )
    redis: Redis = Redis.from_url(settings.redis_url)
    budget = RequestBudget(redis, CLIENT_ID, TOLD_RATE)
    async with running_emulator(config) as emulator:
        jobs = await authorize_beneficiaries(emulator.base_url, args.beneficiaries, "adaptive-")
        env = worker_environment(
            settings,
            emulator.base_url,
            BB_RATE_LIMIT=str(TOLD_RATE),
            BB_CODE_LIFETIME="3600",
            WORKER_CONCURRENCY="8",
        )
        log_dir = common.LOG_DIR / scenario.name
        workers = await start_workers(env, args.replicas, log_dir, burst=False)
        await wait_for_replicas(settings.redis_url, args.replicas)
        await emulator_stats(emulator.base_url, reset=True)
        started = time.time()
        await enqueue_all(settings.redis_url, jobs)
        rates: list[tuple[float, float]] = []
        await _follow(budget, rates, started + args.work_seconds, None)
        edge_raised = time.time()
        await _set_edge(emulator.base_url, TOLD_RATE, scenario.retry_after)
        recovered = await _follow(budget, rates, edge_raised + RECOVERY_TIMEOUT, TOLD_RATE)
        await common.wait_until_synced(settings, args.beneficiaries)
        wall = time.time() - started
        stats = await emulator_stats(emulator.base_url)
        await stop_workers(workers)
    await redis.aclose()
    outcome = Outcome(scenario, stats, started, edge_raised, recovered, rates)
    outcome.active = await common.active_connections(settings)
    outcome.beneficiaries, outcome.wall = args.beneficiaries, wall
    return outcome


def report(outcomes: list[Outcome]) -> None:
    """Print the table the README quotes."""
    columns = (
        "run",
        "limited for",
        "requests",
        "429s",
        f"429s after {SETTLING_SECONDS} s",
        f"of the edge's {EDGE_RATE}/s used",
        f"back to {TOLD_RATE}/s after",
        "active",
        "wall",
    )
    title = f"adaptive budget: edge at {EDGE_RATE}/s, workers told {TOLD_RATE}/s"
    common.print_table(title, columns, [outcome.row() for outcome in outcomes])


async def main(args: argparse.Namespace) -> None:
    """Both runs, one after the other; the series into bench/."""
    scenarios = [Scenario("bare 429s", False), Scenario("429s with Retry-After", True)]
    outcomes = []
    for scenario in scenarios:
        settings = await common.fresh_settings()
        with common.timed(scenario.name):
            outcome = await run(scenario, settings, args)
        outcomes.append(outcome)
        write_series(outcome)
    report(outcomes)


def write_series(outcome: Outcome) -> None:
    """The run's time series as bench/adaptive-bare.json or bench/adaptive-retry-after.json,
    and its chart beside them."""
    SERIES_DIR.mkdir(exist_ok=True)
    slug = "retry-after" if outcome.scenario.retry_after else "bare"
    series = outcome.series()
    (SERIES_DIR / f"adaptive-{slug}.json").write_text(json.dumps(series, indent=1))
    print(f"chart: {chart(series, slug)}")


def chart(series: dict[str, Any], slug: str) -> Path:
    """Requests and 429s per second at the server, and the shared rate the replicas keep,
    against the edge's limit (from a run's saved series, so it can be drawn again)."""

    def counts(name: str) -> list[tuple[float, float]]:
        return per_second({int(t): n for t, n in series[name].items()}, origin=0)

    answer = "with Retry-After" if series["retry_after"] else "bare"
    return line_chart(
        BENCH_DIR / f"adaptive-{slug}.png",
        f"Adaptive rate: edge {series['edge_rate']}/s ({answer} 429s), told"
        f" {series['told_rate']}/s, edge raised at {series['edge_raised_at']:.0f} s",
        {
            "requests at the server /s": counts("requests_per_second"),
            "429s /s": counts("throttled_per_second"),
            "shared budget rate": [tuple(p) for p in series["budget_rate"]],
        },
        y_label="per second",
        limit=series["edge_rate"],
        limit_label=f"edge limit ({series['edge_rate']}/s)",
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--beneficiaries", type=int, default=360)
    parser.add_argument("--claims", type=int, default=150, help="EOBs per beneficiary")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--work-seconds", type=float, default=300.0)
    asyncio.run(main(parser.parse_args()))
