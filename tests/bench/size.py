"""``make bench``: a production-sized beneficiary against a backend that costs what CMS's does.

The emulator serves one beneficiary with 5,000 claims (90% Part D, realistic EOBs: 13 to
34 KB, median 20 KB) and charges each EOB search page 20 ms plus 0.5 ms per matching claim
(FACTS.md: every page builds the whole result; 502 past 30 s). Measured:

- the sync engine's own (unsplit) search, run by one worker process: backend time, wall
  time, and the process's peak RSS (``VmHWM``) and RSS each second;
- the split by service date that ``worker.bluebutton.split`` plans from the first page of
  the unsplit search, run directly: backend time, and that it returns every claim once;
- the split by ``type=``: its backend time, modelled from the per-type totals that each
  type's first page reports (running it would take minutes).

The memory series goes to ``bench/size-memory.json`` for charts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.bench.budget import wait_until_synced
from tests.bench.charts import BENCH_DIR, line_chart
from tests.integration.support import reset_stores
from worker.bluebutton.split import plan_ranges, search_cost, service_span
from worker.constants import EOB_PAGE_SIZE
from worker.emulator.claims import CLAIM_TYPES
from worker.emulator.config import EmulatorConfig
from worker.emulator.server import running_emulator
from worker.jobs.payloads import ConnectJob
from worker.local import (
    CLIENT_ID,
    CLIENT_SECRET,
    authorize_beneficiaries,
    emulator_stats,
    enqueue_all,
    start_workers,
    worker_environment,
)
from worker.settings import Settings, load_settings

LOG_DIR = Path(".bench/size")
SERIES = Path("bench/size-memory.json")
EOB_SEARCH = "/v2/fhir/ExplanationOfBenefit"


def _rss_mb(pid: int, field: str) -> float:
    """VmRSS or VmHWM (peak) of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for process {pid}")


async def _backend_seconds(base_url: str) -> float:
    return float((await emulator_stats(base_url))["backend_seconds"])


async def _token(http: httpx.AsyncClient, job: ConnectJob) -> str:
    """Exchange the connect job's code for an access token (the bench's own searches)."""
    form = {
        "grant_type": "authorization_code",
        "code": job.code,
        "code_verifier": job.code_verifier,
        "redirect_uri": job.redirect_uri,
    }
    answer = await http.post("/v2/o/token/", data=form, auth=(CLIENT_ID, CLIENT_SECRET))
    answer.raise_for_status()
    return str(answer.json()["access_token"])


async def _page_through(
    http: httpx.AsyncClient, token: str, params: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    """Every EOB of one search, page by page."""
    headers = {"Authorization": f"Bearer {token}"}
    answer = await http.get(
        EOB_SEARCH, params=[*params, ("_count", str(EOB_PAGE_SIZE))], headers=headers
    )
    eobs: list[dict[str, Any]] = []
    while True:
        answer.raise_for_status()
        bundle = answer.json()
        eobs += [entry["resource"] for entry in bundle.get("entry", [])]
        following = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        if not following:
            return eobs
        answer = await http.get(following[0], headers=headers)


async def _split_runs(base_url: str, job: ConnectJob) -> dict[str, Any]:
    """The planned service-date split (run) and the type split (modelled)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        token = await _token(http, job)
        headers = {"Authorization": f"Bearer {token}"}
        before = await _backend_seconds(base_url)
        started = time.monotonic()
        probe = await http.get(EOB_SEARCH, params={"_count": EOB_PAGE_SIZE}, headers=headers)
        bundle = probe.json()
        total = int(bundle["total"])
        span = service_span(entry["resource"] for entry in bundle.get("entry", []))
        assert span is not None
        ranges = plan_ranges(total, span[0], span[1], EOB_PAGE_SIZE)
        ids: list[str] = []
        for searched in ranges:
            ids += [eob["id"] for eob in await _page_through(http, token, searched.params())]
        split_wall = time.monotonic() - started
        split_backend = await _backend_seconds(base_url) - before
        by_type = {}
        for claim_type in CLAIM_TYPES:
            first = await http.get(
                EOB_SEARCH, params={"type": claim_type, "_count": 1}, headers=headers
            )
            by_type[claim_type] = int(first.json()["total"])
    return {
        "total": total,
        "ranges": len(ranges),
        "split_backend": split_backend,
        "split_wall": split_wall,
        "split_complete": len(ids) == len(set(ids)) == total,
        "by_type": by_type,
        "type_backend_model": sum(search_cost(n, EOB_PAGE_SIZE) for n in by_type.values() if n)
        / 1000,
        "unsplit_backend_model": search_cost(total, EOB_PAGE_SIZE) / 1000,
    }


async def _worker_sync(
    settings: Settings, base_url: str, job: ConnectJob
) -> tuple[float, float, float, list[tuple[float, float]]]:
    """One worker process syncs the beneficiary: backend s, wall s, peak MB, RSS series."""
    env = worker_environment(settings, base_url, BB_RATE_LIMIT="100", BB_CODE_LIFETIME="3600")
    (worker,) = await start_workers(env, 1, LOG_DIR, burst=False)
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
    worker.terminate()
    await worker.wait()
    return await _backend_seconds(base_url) - before, wall, peak, series


async def main(args: argparse.Namespace) -> None:
    """Split runs first (their own token), then the worker's sync; prints the figures."""
    sys.setswitchinterval(0.001)
    settings = load_settings()
    await reset_stores(settings.database_url, settings.redis_url)
    config = EmulatorConfig(
        beneficiaries=2,
        claims_per_beneficiary=args.claims,
        part_d_share=args.part_d_share,
        backend_cost=True,
        code_lifetime=3600,
    )
    began = time.monotonic()
    async with running_emulator(config) as emulator:
        split_job, sync_job = await authorize_beneficiaries(emulator.base_url, 2, "size-")
        split = await _split_runs(emulator.base_url, split_job)
        backend, wall, peak, series = await _worker_sync(settings, emulator.base_url, sync_job)
    write_series(series, peak)
    print(f"beneficiary: {split['total']} claims, by type {split['by_type']}")
    print(
        f"unsplit (the sync engine, 1 worker): backend {backend:.1f} s "
        f"(model {split['unsplit_backend_model']:.1f} s), wall {wall:.1f} s, "
        f"worker peak RSS {peak:.0f} MB"
    )
    print(
        f"split by service date ({split['ranges']} ranges, planned from the first page): "
        f"backend {split['split_backend']:.1f} s, wall {split['split_wall']:.1f} s, "
        f"every claim once: {split['split_complete']}"
    )
    print(
        f"split by type= (modelled from the per-type totals): {split['type_backend_model']:.1f} s"
    )
    print(f"size bench: {time.monotonic() - began:.0f} s")


def write_series(series: list[tuple[float, float]], peak: float) -> None:
    """The worker's RSS each second of the sync, for charts."""
    SERIES.parent.mkdir(exist_ok=True)
    SERIES.write_text(json.dumps({"peak_mb": round(peak, 1), "rss_mb": series}, indent=1))
    print(f"chart: {chart(series)}")


def chart(rss_mb: list[tuple[float, float]]) -> Path:
    """The worker's resident memory over the large sync, against the 200 MB target."""
    return line_chart(
        BENCH_DIR / "size-memory.png",
        "Worker memory while it syncs one beneficiary of 5,000 claims (unsplit search)",
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
