"""``make bench``: a production-sized beneficiary against a backend that costs what CMS's does.

The emulator serves one beneficiary with 5,000 claims (90% Part D, realistic EOBs: 13 to
34 KB, median 20 KB) and charges each EOB search page 20 ms plus 0.5 ms per matching claim
(FACTS.md: every page builds the whole result; 502 past 30 s). One worker process syncs it
as the service does: the first page of the unsplit search, then the narrower searches
``worker.sync.ranges`` plans from it. Measured: the backend time the emulator charged, the
wall time, that every claim is stored exactly once, and the process's peak RSS (``VmHWM``)
and RSS each second.

The alternatives are charged from the same cost model without waiting for them (the unsplit
search of 5,000 claims would keep the bench four minutes): paging through the one search,
and one search per ``type=``, from the beneficiary's claims as the emulator holds them.

The memory series goes to ``bench/size-memory.json`` for charts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg

from tests.bench.charts import BENCH_DIR, line_chart
from tests.bench.common import LOG_DIR, fresh_settings, replicas, timed, wait_until_synced
from worker.bluebutton.split import search_cost
from worker.constants import EOB_PAGE_SIZE
from worker.emulator.config import EmulatorConfig
from worker.emulator.data import Dataset
from worker.emulator.server import running_emulator
from worker.jobs.payloads import ConnectJob
from worker.local import authorize_beneficiaries, emulator_stats, enqueue_all, worker_environment
from worker.settings import Settings

SERIES = Path("bench/size-memory.json")


def _rss_mb(pid: int, field: str) -> float:
    """VmRSS or VmHWM (peak) of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for process {pid}")


async def _backend_seconds(base_url: str) -> float:
    return float((await emulator_stats(base_url))["backend_seconds"])


def modelled(config: EmulatorConfig) -> dict[str, Any]:
    """The beneficiary's claims (as the emulator holds them) and what the unsplit search and
    the split by type= cost under the backend's model, in seconds."""
    dataset = Dataset(config)
    claims = dataset.claims(dataset.population.get(0))
    by_type = Counter(claim.claim_type for claim in claims)
    return {
        "total": len(claims),
        "by_type": dict(by_type),
        "unsplit": search_cost(len(claims), EOB_PAGE_SIZE) / 1000,
        "by_type_cost": sum(search_cost(n, EOB_PAGE_SIZE) for n in by_type.values()) / 1000,
    }


async def stored(settings: Settings) -> dict[str, Any]:
    """What the sync stored and how: EOB rows, the run's pages and counts, its status."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        eobs = await conn.fetchval(
            "SELECT count(*) FROM fhir_resources WHERE resource_type = 'ExplanationOfBenefit'"
        )
        run = await conn.fetchrow("SELECT status, pages, inserted, updated FROM sync_runs")
    finally:
        await conn.close()
    assert run is not None
    return {"eobs": int(eobs), **dict(run)}


async def _worker_sync(
    settings: Settings, base_url: str, job: ConnectJob
) -> tuple[float, float, float, list[tuple[float, float]]]:
    """One worker process syncs the beneficiary: backend s, wall s, peak MB, RSS series."""
    env = worker_environment(settings, base_url, BB_RATE_LIMIT="100", BB_CODE_LIFETIME="3600")
    async with replicas(env, 1, LOG_DIR / "size") as (worker,):
        await asyncio.sleep(3)  # imported and polling: its start-up is not the sync's memory
        before = await _backend_seconds(base_url)
        started = time.monotonic()
        await enqueue_all(settings.redis_url, [job])
        series: list[tuple[float, float]] = []
        waiting = asyncio.create_task(wait_until_synced(settings, 1))
        while not waiting.done():
            series.append((round(time.monotonic() - started, 1), _rss_mb(worker.pid, "VmRSS")))
            await asyncio.wait([waiting], timeout=1.0)
        wall = time.monotonic() - started
        peak = _rss_mb(worker.pid, "VmHWM")
    return await _backend_seconds(base_url) - before, wall, peak, series


async def main(args: argparse.Namespace) -> None:
    """The worker's (split) sync, measured; the alternatives modelled; prints the figures."""
    settings = await fresh_settings()
    config = EmulatorConfig(
        beneficiaries=1,
        claims_per_beneficiary=args.claims,
        part_d_share=args.part_d_share,
        backend_cost=True,
        code_lifetime=3600,
    )
    model = modelled(config)
    with timed("size bench"):
        async with running_emulator(config) as emulator:
            (job,) = await authorize_beneficiaries(emulator.base_url, 1, "size-")
            backend, wall, peak, series = await _worker_sync(settings, emulator.base_url, job)
        write_series(series, peak)
        run = await stored(settings)
        print(f"beneficiary: {model['total']} claims, by type {model['by_type']}")
        print(
            f"split (the sync engine, 1 worker, {run['pages'] - 2} EOB pages): backend"
            f" {backend:.1f} s, wall {wall:.1f} s, worker peak RSS {peak:.0f} MB; run"
            f" {run['status']}, {run['eobs']} EOBs stored, inserted {run['inserted']}"
            f" (Patient, 4 Coverage and each claim once), updated {run['updated']}"
        )
        print(
            f"unsplit, charged from the model: backend {model['unsplit']:.1f} s"
            f" ({model['unsplit'] / backend:.0f} times the split)"
        )
        print(f"split by type= alone, charged from the model: {model['by_type_cost']:.1f} s")


def write_series(series: list[tuple[float, float]], peak: float) -> None:
    """The worker's RSS each second of the sync, for charts."""
    SERIES.parent.mkdir(exist_ok=True)
    SERIES.write_text(json.dumps({"peak_mb": round(peak, 1), "rss_mb": series}, indent=1))
    print(f"chart: {chart(series)}")


def chart(rss_mb: list[tuple[float, float]]) -> Path:
    """The worker's resident memory over the large sync, against the 200 MB target."""
    return line_chart(
        BENCH_DIR / "size-memory.png",
        "Worker memory while it syncs one beneficiary of 5,000 claims (split searches)",
        {"worker resident memory (MB)": [tuple(p) for p in rss_mb]},
        y_label="MB",
        limit=200,
        limit_label="target (200 MB)",
        steps=False,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--claims", type=int, default=5000)
    parser.add_argument("--part-d-share", type=float, default=0.9)
    asyncio.run(main(parser.parse_args()))
