"""``bbingest demo``: the whole flow on the local emulator, end to end.

Starts the emulator, walks every synthetic beneficiary through the real authorize redirect
with PKCE (two in three through the default app, the others through a partner organisation's
own app, with its own credentials and budget), queues their connect jobs, runs worker
replicas as separate processes until the queue drains, and prints what was stored and what
it cost, and the webhooks a local receiver got (worker.demo_webhooks).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from worker.apps import App
from worker.crypto import cipher_for
from worker.demo_webhooks import receiving_webhooks
from worker.emulator.config import EmulatorConfig, RegisteredClient
from worker.emulator.server import running_emulator
from worker.local import (
    CLIENT_ID,
    authorize_beneficiaries,
    emulator_stats,
    enqueue_all,
    start_workers,
    worker_environment,
)
from worker.settings import Settings
from worker.status import ConnectionStatus, load_status
from worker.store import apps
from worker.store.db import connection
from worker.store.migrate import migrate

DEMO_PREFIX = "demo-"
DEMO_RATE_MARGIN = 0.05
TERMINAL = ("active", "error", "needs_reauth", "revoked")
LOG_DIR = Path(".demo")


PARTNER = RegisteredClient(
    client_id="demo-partner-client",
    client_secret="demo-partner-secret",  # noqa: S106 - the emulator's local demo credential
    name="Partner Health (demo)",
)
PARTNER_APP = "demo-partner"


async def _reset(settings: Settings, base_url: str) -> None:
    """Start from nothing the demo owns (its ids and its partner app), and register the
    partner's app at this run's emulator."""
    partner = App(
        name=PARTNER_APP,
        environment="sandbox",
        base_url=base_url,
        client_id=PARTNER.client_id,
        client_secret=PARTNER.client_secret,
        rate_limit=settings.bb_rate_limit,
    )
    cipher = cipher_for(settings)
    async with connection(settings.database_url) as conn:
        await migrate(conn)
        await conn.execute("DELETE FROM connections WHERE connection_id LIKE 'demo-%'")
        await apps.remove(conn, PARTNER_APP)
        await apps.add(conn, cipher, partner)


async def _demo_statuses(database_url: str) -> list[ConnectionStatus]:
    async with connection(database_url) as conn:
        return [
            s
            for s in await load_status(conn, None)
            if s.connection.connection_id.startswith(DEMO_PREFIX)
        ]


async def _requests_reported(http: httpx.AsyncClient, ports: list[int]) -> int:
    """BB2 requests the workers report on their /metrics (the counters an operator sees)."""
    total = 0
    for port in ports:
        try:
            text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
        except httpx.TransportError:
            continue  # not up yet, or already gone
        for family in text_string_to_metric_families(text):
            if family.name == "bbingest_bb2_requests":
                total += int(sum(s.value for s in family.samples if s.name.endswith("_total")))
    return total


async def _watch(
    database_url: str, total: int, workers: list[asyncio.subprocess.Process], ports: list[int]
) -> None:
    columns = (
        TextColumn("syncing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[requests]} BB2 requests on /metrics"),
    )
    async with httpx.AsyncClient(timeout=1) as http:
        with Progress(*columns, console=Console(stderr=True)) as progress:
            task = progress.add_task("sync", total=total, requests=0)
            while True:
                statuses = await _demo_statuses(database_url)
                done = sum(s.connection.status in TERMINAL for s in statuses)
                requests = await _requests_reported(http, ports)
                progress.update(task, completed=done, requests=requests)
                if done >= total or all(w.returncode is not None for w in workers):
                    return
                await asyncio.sleep(0.3)


async def _pages(database_url: str) -> int:
    async with connection(database_url) as conn:
        pages = await conn.fetchval(
            "SELECT coalesce(sum(pages), 0) FROM sync_runs WHERE connection_id LIKE 'demo-%'"
        )
        return int(pages)


def _summary(
    statuses: list[ConnectionStatus], stats: dict[str, Any], pages: int, elapsed: float
) -> None:
    console = Console()
    table = Table(title="stored per beneficiary")
    for column in ("connection", "app", "status", "Patient", "Coverage", "EOB"):
        left = column in ("connection", "app", "status")
        table.add_column(column, justify="left" if left else "right")
    for item in statuses:
        counts = item.counts
        table.add_row(
            item.connection.connection_id,
            item.connection.app,
            item.connection.status,
            str(counts.get("Patient", 0)),
            str(counts.get("Coverage", 0)),
            str(counts.get("ExplanationOfBenefit", 0)),
        )
    console.print(table)
    requests = int(stats.get("total", 0))
    totals = Table(title="totals")
    columns = ("requests", "pages", "429s", "most in 1 s per app", "elapsed", "requests/s")
    for column in columns:
        totals.add_column(column, justify="right")
    peaks = stats.get("max_in_window_by_client", {})
    totals.add_row(
        str(requests),
        str(pages),
        str(stats.get("by_status", {}).get("429", 0)),
        f"{peaks.get(CLIENT_ID, '-')} / {peaks.get(PARTNER.client_id, '-')}",
        f"{elapsed:.1f} s",
        f"{requests / elapsed:.2f}",
    )
    console.print(totals)


async def run_demo(settings: Settings, *, beneficiaries: int, replicas: int) -> int:
    """Run the demo; 0 when every beneficiary ends ``active``."""
    console = Console(stderr=True)
    config = EmulatorConfig(
        beneficiaries=beneficiaries,
        rate_limit=settings.bb_rate_limit,
        clients=(RegisteredClient(), PARTNER),
    )
    async with (
        running_emulator(config) as emulator,
        receiving_webhooks(settings, (PARTNER_APP,)),
    ):
        await _reset(settings, emulator.base_url)
        console.print(f"emulator on {emulator.base_url}; authorizing {beneficiaries} beneficiaries")
        own = beneficiaries - beneficiaries // 3
        authorized = await authorize_beneficiaries(emulator.base_url, own, DEMO_PREFIX)
        authorized += await authorize_beneficiaries(
            emulator.base_url,
            beneficiaries - own,
            DEMO_PREFIX,
            offset=own,
            client_id=PARTNER.client_id,
            app=PARTNER_APP,
        )
        await enqueue_all(settings.redis_url, authorized)
        await emulator_stats(emulator.base_url, reset=True)
        started = time.monotonic()
        # The emulator shares two cores with the workers here, serving two apps at once, so
        # requests reach it with more jitter than over a network: space them a little wider.
        margin = str(max(settings.bb_rate_margin, DEMO_RATE_MARGIN))
        env = worker_environment(settings, emulator.base_url, BB_RATE_MARGIN=margin)
        workers = await start_workers(env, replicas, LOG_DIR, metrics_port=settings.metrics_port)
        ports = (
            [settings.metrics_port + i for i in range(replicas)] if settings.metrics_port else []
        )
        await _watch(settings.database_url, len(authorized), workers, ports)
        for worker in workers:
            await worker.wait()
        elapsed = time.monotonic() - started
        stats = await emulator_stats(emulator.base_url)
    statuses = await _demo_statuses(settings.database_url)
    _summary(statuses, stats, await _pages(settings.database_url), elapsed)
    active = sum(s.connection.status == "active" for s in statuses)
    console.print(f"{active} of {len(authorized)} connections active; worker logs in {LOG_DIR}/")
    return 0 if active == len(authorized) else 1
