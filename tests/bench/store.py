"""``make bench`` (part 3): the store path's ceiling, and the table layout and compression.

Realistic EOB search pages (10 EOBs a page, as BB2 sends them by default; each EOB a real
BB2/BFD claim from the emulator's templates, 13 to 26 KB of JSON, weighted towards the large
institutional claims so the mean is about 20 KB as FACTS.md says) are stored exactly as a sync
stores them, with no HTTP: parse and validate the Bundle, read the rows out and hash them (both
in a thread, as the sync does), then one transaction per page that locks the connection,
upserts, notes the seen ids and moves the run's cursor. Several pages are stored at once, as
several jobs of one worker process would.

For each layout of ``fhir_resources`` (plain or hash-partitioned, ``pglz`` or ``lz4``) it
prints EOBs/s and MB/s of JSON for a first pass (every row new) and a second pass over the same
pages (every row unchanged: hash compared, nothing written), the time per stage, and the
table's size on disk. The bench owns its database: it recreates ``fhir_resources`` per layout.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from rich.console import Console
from rich.table import Table

from worker.bluebutton.bundle import parse_search_page
from worker.gctune import tune_gc
from worker.store import connections, resources, sync_runs
from worker.store.db import create_pool
from worker.store.migrate import migrate
from worker.sync.engine import rows_of
from worker.sync.model import FULL, Cursor

TEMPLATES = Path(__file__).resolve().parents[2] / "worker" / "emulator" / "templates"
# Institutional claims (the big ones) twice: the mix's mean is then about 20 KB.
MIX = ("carrier", "dme", "hha", "hospice", "inpatient", "inpatient", "outpatient",
       "outpatient", "snf", "snf", "pde")  # fmt: skip
PAGE_SIZE = 10
EOB = "ExplanationOfBenefit"
BASE = "https://api.bluebutton.cms.gov/v2/fhir/ExplanationOfBenefit"
PLAIN_LIKE = """
CREATE TABLE fhir_resources_next (LIKE fhir_resources INCLUDING ALL);
ALTER TABLE fhir_resources_next ADD CONSTRAINT fhir_resources_connection_id_fkey
    FOREIGN KEY (connection_id) REFERENCES connections ON DELETE CASCADE;
ALTER TABLE fhir_resources_next ALTER COLUMN resource SET COMPRESSION {method};
"""


@dataclass(frozen=True)
class Layout:
    """One way to lay out ``fhir_resources``."""

    name: str
    partitions: int  # 0: a plain table
    compression: str


LAYOUTS = (
    Layout("plain, pglz", 0, "pglz"),
    Layout("plain, lz4", 0, "lz4"),
    Layout("partitioned 16, pglz", 16, "pglz"),
    Layout("partitioned 16, lz4", 16, "lz4"),
)


@dataclass(frozen=True)
class Beneficiary:
    """A connection and its EOB search pages, as the bytes BB2 would send."""

    connection_id: str
    patient_id: str
    pages: tuple[tuple[str, bytes], ...]


@dataclass
class Timings:
    """Seconds spent in each stage, summed over pages (stages of concurrent pages overlap)."""

    parse: float = 0.0
    rows: float = 0.0
    db: float = 0.0
    pages: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {"inserted": 0, "unchanged": 0})


def eob(template: dict[str, Any], patient_id: str, seq: int) -> dict[str, Any]:
    """A copy of a template claim as this beneficiary's claim number ``seq``."""
    claim: dict[str, Any] = orjson.loads(orjson.dumps(template))
    claim["id"] = f"{template['id'].split('-')[0]}-{patient_id[1:]}{seq:04d}"
    claim["patient"] = {"reference": f"Patient/{patient_id}"}
    claim["meta"] = {**claim.get("meta", {}), "lastUpdated": "2024-03-01T12:00:00.000+00:00"}
    return claim


def bundle(claims: list[dict[str, Any]], url: str, next_url: str | None, total: int) -> bytes:
    """A searchset Bundle page as BB2 sends it (resources under ``entry[].resource``)."""
    links = [{"relation": "self", "url": url}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    return orjson.dumps(
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": total,
            "link": links,
            "entry": [{"resource": claim} for claim in claims],
        }
    )


def beneficiaries(count: int, claims_each: int) -> list[Beneficiary]:
    """``count`` beneficiaries of ``claims_each`` EOBs, cut into pages of ten."""
    templates = [orjson.loads((TEMPLATES / f"eob_{name}.json").read_bytes()) for name in MIX]
    result = []
    for index in range(count):
        patient_id = f"-{19990000000001 + index}"
        claims = [eob(templates[(index + n) % len(MIX)], patient_id, n) for n in range(claims_each)]
        urls = [f"{BASE}?patient={patient_id}&startIndex={start}&_count={PAGE_SIZE}"
                for start in range(0, claims_each, PAGE_SIZE)]  # fmt: skip
        pages = tuple(
            (url, bundle(claims[i * PAGE_SIZE : (i + 1) * PAGE_SIZE], url, nxt, claims_each))
            for i, (url, nxt) in enumerate(zip(urls, [*urls[1:], None], strict=True))
        )
        result.append(Beneficiary(f"bench-{index:05d}", patient_id, pages))
    return result


async def store_page(
    pool: asyncpg.Pool, who: Beneficiary, run_id: int, page: tuple[str, bytes], t: Timings
) -> None:
    """What ``worker.sync.engine`` does with one page, timed by stage."""
    url, body = page
    start = time.perf_counter()
    parsed = await asyncio.to_thread(parse_search_page, body, url, EOB, who.patient_id)
    parsed_at = time.perf_counter()
    rows = await asyncio.to_thread(rows_of, parsed)
    rows_at = time.perf_counter()
    async with pool.acquire() as conn, conn.transaction():
        await connections.lock_live(conn, who.connection_id)
        counts = await resources.upsert(conn, who.connection_id, EOB, rows)
        ids = [row.resource_id for row in rows]
        await sync_runs.remember_seen(conn, who.connection_id, run_id, EOB, ids)
        cursor = Cursor(EOB, parsed.next_url)
        await sync_runs.record_page(conn, who.connection_id, run_id, counts, cursor)
    t.parse += parsed_at - start
    t.rows += rows_at - parsed_at
    t.db += time.perf_counter() - rows_at
    t.pages += 1
    t.counts["inserted"] += counts.inserted
    t.counts["unchanged"] += counts.unchanged


async def store_all(pool: asyncpg.Pool, people: list[Beneficiary], concurrency: int) -> Timings:
    """Store every beneficiary's pages, ``concurrency`` beneficiaries at a time."""
    timings = Timings()
    queue: Iterator[Beneficiary] = iter(people)

    async def lane() -> None:
        for who in queue:
            async with pool.acquire() as conn:
                run = await sync_runs.start_or_resume(conn, who.connection_id, "connect", FULL)
            for page in who.pages:
                await store_page(pool, who, run.run_id, page, timings)
            async with pool.acquire() as conn:
                await conn.execute(
                    "DELETE FROM sync_seen WHERE connection_id = $1 AND run_id = $2",
                    who.connection_id,
                    run.run_id,
                )
                await sync_runs.finish(conn, who.connection_id, run.run_id)

    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return timings


async def set_layout(conn: asyncpg.Connection, layout: Layout) -> None:
    """Replace the (empty) ``fhir_resources`` by one of the layout."""
    if layout.partitions:
        await conn.execute(
            "SELECT fhir_resources_create_partitioned('fhir_resources_next', $1, $2)",
            layout.partitions,
            layout.compression,
        )
    else:
        await conn.execute(PLAIN_LIKE.format(method=layout.compression))
    await conn.execute("DROP TABLE fhir_resources")
    await conn.execute("SELECT fhir_resources_take_name('fhir_resources_next')")


async def prepare(dsn: str, layout: Layout, people: list[Beneficiary]) -> None:
    """Empty the bench database and give ``fhir_resources`` the layout."""
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        await conn.execute("TRUNCATE sync_runs, connections RESTART IDENTITY CASCADE")
        # The same functions as migration 010 and `bbingest partition-resources` use.
        async with conn.transaction():
            await set_layout(conn, layout)

        await conn.executemany(
            "INSERT INTO connections (connection_id, patient_id, status) VALUES ($1, $2, 'active')",
            [(who.connection_id, who.patient_id) for who in people],
        )
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def table_size(dsn: str) -> tuple[int, str]:
    """Bytes on disk of ``fhir_resources`` (all partitions, TOAST and indexes), and the
    compression its stored values really use."""
    conn = await asyncpg.connect(dsn)
    try:
        size = await conn.fetchval(
            "SELECT coalesce(sum(pg_total_relation_size(relid)),"
            " pg_total_relation_size('fhir_resources')) FROM pg_partition_tree('fhir_resources')"
        )
        methods = await conn.fetchval(
            "SELECT string_agg(DISTINCT coalesce(pg_column_compression(resource), 'none'), '+')"
            " FROM fhir_resources"
        )
        return int(size), str(methods)
    finally:
        await conn.close()


def backend_cpu(pids: list[int]) -> float:
    """CPU seconds (user and system) the Postgres processes ``pids`` have used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue  # a backend that has gone used what it used before it went
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


async def pool_pids(pool: asyncpg.Pool, size: int) -> list[int]:
    """The server processes behind the pool's ``size`` connections (the server runs on this
    machine, as the bench needs)."""
    held = [await pool.acquire() for _ in range(size)]
    try:
        return [conn.get_server_pid() for conn in held]
    finally:
        for conn in held:
            await pool.release(conn)


@dataclass(frozen=True)
class Pass:
    """One process's pass over its pages: when it ran and the CPU each side used."""

    timings: Timings
    started: float
    ended: float
    worker_cpu: float
    postgres_cpu: float


async def timed_pass(dsn: str, people: list[Beneficiary], concurrency: int, start: Barrier) -> Pass:
    """Store every page once, measuring this process's CPU and its Postgres backends'."""
    pool = await create_pool(dsn, max_size=concurrency)
    try:
        pids = await pool_pids(pool, concurrency)
        await asyncio.to_thread(start.wait)
        pg_before, cpu_before, began = backend_cpu(pids), time.process_time(), time.monotonic()
        timings = await store_all(pool, people, concurrency)
        ended, cpu = time.monotonic(), time.process_time() - cpu_before
        return Pass(timings, began, ended, cpu, backend_cpu(pids) - pg_before)
    finally:
        await pool.close()


def run_share(args: tuple[str, list[Beneficiary], int, Barrier, Queue[Pass]]) -> None:
    """A worker process's share of a pass (its own event loop and pool, as a replica)."""
    dsn, people, concurrency, start, results = args
    tune_gc()  # as `bbingest worker` does
    results.put(asyncio.run(timed_pass(dsn, people, concurrency, start)))


def one_pass(dsn: str, people: list[Beneficiary], concurrency: int, processes: int) -> Pass:
    """Every page stored once by ``processes`` worker processes started together, each
    taking its share of the beneficiaries; their figures added up."""
    ctx = multiprocessing.get_context("fork")
    start, results = ctx.Barrier(processes), ctx.Queue()
    workers = [
        ctx.Process(
            target=run_share, args=((dsn, people[n::processes], concurrency, start, results),)
        )
        for n in range(processes)
    ]
    for worker in workers:
        worker.start()
    shares = [results.get() for _ in workers]
    for worker in workers:
        worker.join()
    total = Timings()
    for share in shares:
        total.parse += share.timings.parse
        total.rows += share.timings.rows
        total.db += share.timings.db
        total.pages += share.timings.pages
        for key, value in share.timings.counts.items():
            total.counts[key] += value
    return Pass(
        total,
        min(share.started for share in shares),
        max(share.ended for share in shares),
        sum(share.worker_cpu for share in shares),
        sum(share.postgres_cpu for share in shares),
    )


def rate_row(label: str, run: Pass, eobs: int, json_mb: float, processes: int) -> list[str]:
    """A row of the table: rates, stage times, CPU per EOB, and the ceiling on two cores."""
    t = run.timings
    seconds = run.ended - run.started
    per_page = 1000 / max(t.pages, 1)
    worker_ms, pg_ms = 1000 * run.worker_cpu / eobs, 1000 * run.postgres_cpu / eobs
    # A worker process uses one core at most (the GIL); Postgres and the others share the rest.
    ceiling = min(processes * 1000 / worker_ms, 2000 / (worker_ms + pg_ms))
    return [
        label,
        f"{eobs / seconds:,.0f}",
        f"{json_mb / seconds:,.1f}",
        f"{t.parse * per_page:.1f} / {t.rows * per_page:.1f} / {t.db * per_page:.1f}",
        f"{worker_ms:.2f} / {pg_ms:.2f}",
        f"{ceiling:,.0f}",
        f"{t.counts['inserted']} / {t.counts['unchanged']}",
    ]


def main(
    dsn: str, count: int, claims: int, concurrency: int, processes: int, only: list[str]
) -> None:
    """Build the pages, then store them twice in each layout, printing one table."""
    began = time.perf_counter()
    console = Console()
    people = beneficiaries(count, claims)
    eobs = count * claims
    json_bytes = sum(len(body) for who in people for _, body in who.pages)
    json_mb = json_bytes / 1e6
    console.print(
        f"store bench: {eobs:,} EOBs in {eobs // PAGE_SIZE:,} pages, {json_mb:,.0f} MB of JSON"
        f" (mean {json_bytes / eobs / 1000:.1f} KB an EOB); {processes} worker processes storing"
        f" {concurrency} pages at once each; {os.cpu_count()} cores, load average"
        f" {os.getloadavg()[0]:.1f} at the start"
    )
    table = Table(title="store path: parse, hash, upsert (one transaction a page)")
    for column in ("layout, pass", "EOBs/s", "MB/s", "ms a page: parse / hash / db",
                   "CPU ms an EOB: worker / postgres", "EOBs/s ceiling, 2 free cores",
                   "inserted / unchanged", "size MB", "stored as"):  # fmt: skip
        table.add_column(column)
    for layout in (lay for lay in LAYOUTS if lay.name in only or not only):
        asyncio.run(prepare(dsn, layout, people))
        for label in ("new", "unchanged"):
            run = one_pass(dsn, people, concurrency, processes)
            size, method = asyncio.run(table_size(dsn))
            row = rate_row(f"{layout.name}, {label}", run, eobs, json_mb, processes)
            table.add_row(*row, f"{size / 1e6:,.0f}", method)
    console.print(table)
    console.print(
        f"store bench took {time.perf_counter() - began:.0f} s;"
        f" load average {os.getloadavg()[0]:.1f} at the end"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--beneficiaries", type=int, default=300)
    parser.add_argument("--claims", type=int, default=30, help="EOBs each (pages of 10)")
    parser.add_argument("--processes", type=int, default=2, help="worker processes (replicas)")
    parser.add_argument("--concurrency", type=int, default=4, help="pages each stores at once")
    parser.add_argument("--layout", action="append", default=[], help="only these layouts")
    args = parser.parse_args()
    database_url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1/bbingest_bench")
    main(
        database_url,
        args.beneficiaries,
        args.claims,
        args.concurrency,
        args.processes,
        args.layout,
    )
