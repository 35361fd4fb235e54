"""``make chaos``: every scenario on 50 beneficiaries, and the table the README quotes.

Runs on ``DATABASE_URL`` and ``REDIS_URL`` (the Makefile gives it its own database and
Redis database 12, emptied first); the restart scenarios bring private servers of their
own. Exits 1 when a scenario lost, duplicated or leaked anything, or went wrong otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import time
from pathlib import Path

from tests.chaos.cms_events import EVENT_SCENARIOS, EventFigures, event_table, run_event
from tests.chaos.measure import Figures, table
from tests.chaos.receiver_outage import WebhookFigures, run_receiver_outage, webhook_table
from tests.chaos.run import Size, Target, run_scenario
from tests.chaos.scenarios import SCENARIOS

WORKDIR = Path(".chaos")


async def run_all(target: Target, size: Size, only: str | None) -> list[Figures]:
    """Each scenario in turn (they share the stores), its progress on stderr."""
    results = []
    for scenario in SCENARIOS:
        if only and only not in scenario.name:
            continue
        workdir = WORKDIR / scenario.slug
        shutil.rmtree(workdir, ignore_errors=True)
        started = time.monotonic()
        result = (await run_scenario(scenario, target, workdir, size)).figures
        verdict = "ok" if result.passed else "FAILED " + "; ".join(result.problems)
        took = time.monotonic() - started
        print(f"{scenario.name}: {verdict} ({took:.0f} s)", file=sys.stderr, flush=True)
        results.append(result)
    return results


async def run_events(target: Target, size: Size, only: str | None) -> list[EventFigures]:
    """The CMS-events rows (:mod:`tests.chaos.cms_events`), each in turn."""
    results = []
    for scenario in EVENT_SCENARIOS:
        if only and only not in scenario.name:
            continue
        started = time.monotonic()
        result = await run_event(scenario, target, size)
        verdict = "ok" if result.passed else "FAILED " + "; ".join(result.problems)
        took = time.monotonic() - started
        print(f"{scenario.name}: {verdict} ({took:.0f} s)", file=sys.stderr, flush=True)
        results.append(result)
    return results


async def run_webhooks(target: Target, size: Size, only: str | None) -> list[WebhookFigures]:
    """The webhook row (:mod:`tests.chaos.receiver_outage`)."""
    if only and only not in "receiver outage":
        return []
    workdir = WORKDIR / "receiver-outage"
    shutil.rmtree(workdir, ignore_errors=True)
    started = time.monotonic()
    result = await run_receiver_outage(target, size, workdir)
    verdict = "ok" if result.passed else "FAILED " + "; ".join(result.problems)
    took = time.monotonic() - started
    print(f"{result.scenario}: {verdict} ({took:.0f} s)", file=sys.stderr, flush=True)
    return [result]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--beneficiaries", type=int, default=Size.beneficiaries)
    parser.add_argument("--claims", type=int, default=Size.claims)
    parser.add_argument("--only", help="run the scenarios whose name contains this")
    args = parser.parse_args()
    target = Target(os.environ["DATABASE_URL"], os.environ["REDIS_URL"])
    size = Size(beneficiaries=args.beneficiaries, claims=args.claims)
    results = asyncio.run(run_all(target, size, args.only))
    events = asyncio.run(run_events(target, size, args.only))
    hooks = asyncio.run(run_webhooks(target, size, args.only))
    print(table(results))
    print()
    print(event_table(events))
    print()
    print(webhook_table(hooks))
    every: list[Figures | EventFigures | WebhookFigures] = [*results, *events, *hooks]
    for result in every:
        for problem in result.problems:
            print(f"{result.scenario}: {problem}", file=sys.stderr)
    return 0 if all(result.passed for result in every) else 1


if __name__ == "__main__":
    raise SystemExit(main())
