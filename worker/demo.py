"""``bbingest demo``: the whole flow on the local emulator, end to end.

Starts the emulator, walks every synthetic beneficiary through the real authorize redirect
with PKCE, queues their connect jobs, runs worker replicas as separate processes until the
queue drains, and prints what was stored and what it cost.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from worker.bluebutton import oauth
from worker.emulator.config import EmulatorConfig
from worker.emulator.server import running_emulator
from worker.emulator.useragent import authorize
from worker.jobs.enqueue import enqueue_connect, open_queue
from worker.jobs.payloads import ConnectJob
from worker.settings import Settings
from worker.status import ConnectionStatus, load_status
from worker.store.migrate import migrate

DEMO_PREFIX = "demo-"
REDIRECT_URI = "http://localhost:3000/api/auth/smart/callback"
CLIENT_ID, CLIENT_SECRET = "emulator-client", "emulator-secret"
TERMINAL = ("active", "error", "needs_reauth", "revoked")
LOG_DIR = Path(".demo")


@dataclass(frozen=True)
class Authorized:
    """A beneficiary who consented: what the upstream app would push as a connect event."""

    username: str
    job: ConnectJob


async def _reset(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await migrate(conn)
        # The demo owns the demo- ids: start from nothing so its counts are its own.
        await conn.execute("DELETE FROM connections WHERE connection_id LIKE 'demo-%'")
    finally:
        await conn.close()


async def _authorize_one(
    http: httpx.AsyncClient, base_url: str, user: dict[str, Any]
) -> Authorized:
    pkce, state = oauth.make_pkce(), oauth.make_state()
    url = oauth.authorize_url(
        base_url,
        client_id=CLIENT_ID,
        redirect_uri=REDIRECT_URI,
        state=state,
        challenge=pkce.challenge,
    )
    location = await authorize(http, url, user["username"], user["password"])
    query = parse_qs(urlsplit(location).query)
    if not secrets.compare_digest(query.get("state", [""])[0], state):
        raise RuntimeError("the authorization redirect carried a different state")
    job = ConnectJob(
        connection_id=DEMO_PREFIX + user["username"],
        code=query["code"][0],
        code_verifier=pkce.verifier,
        redirect_uri=REDIRECT_URI,
    )
    return Authorized(user["username"], job)


async def _authorize_all(base_url: str, count: int) -> list[Authorized]:
    async with httpx.AsyncClient(base_url=base_url) as http:
        users = (await http.get("/_emulator/beneficiaries", params={"limit": count})).json()
        return [await _authorize_one(http, base_url, user) for user in users]


def _worker_env(settings: Settings, base_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "BB_BASE_URL": base_url,
        "BB_CLIENT_ID": CLIENT_ID,
        "BB_CLIENT_SECRET": CLIENT_SECRET,
        "BB_RATE_LIMIT": str(settings.bb_rate_limit),
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "TOKEN_ENCRYPTION_KEY": settings.token_encryption_key.get_secret_value(),
        "LOG_FORMAT": "json",
    }


def _open_log(index: int) -> BinaryIO:
    LOG_DIR.mkdir(exist_ok=True)
    return (LOG_DIR / f"worker-{index + 1}.log").open("wb")


async def _start_workers(env: dict[str, str], replicas: int) -> list[asyncio.subprocess.Process]:
    processes = []
    for index in range(replicas):
        log = _open_log(index)
        processes.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "worker.cli",
                "worker",
                "--burst",
                env=env,
                stdout=log,
                stderr=log,
            )
        )
        log.close()
    return processes


async def _demo_statuses(database_url: str) -> list[ConnectionStatus]:
    conn = await asyncpg.connect(database_url)
    try:
        return [
            s
            for s in await load_status(conn, None)
            if s.connection.connection_id.startswith(DEMO_PREFIX)
        ]
    finally:
        await conn.close()


async def _watch(database_url: str, total: int, workers: list[asyncio.subprocess.Process]) -> None:
    columns = (TextColumn("syncing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task("sync", total=total)
        while True:
            done = sum(s.connection.status in TERMINAL for s in await _demo_statuses(database_url))
            progress.update(task, completed=done)
            if done >= total or all(w.returncode is not None for w in workers):
                return
            await asyncio.sleep(0.3)


async def _pages(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        pages = await conn.fetchval(
            "SELECT coalesce(sum(pages), 0) FROM sync_runs WHERE connection_id LIKE 'demo-%'"
        )
        return int(pages)
    finally:
        await conn.close()


def _summary(
    statuses: list[ConnectionStatus], stats: dict[str, Any], pages: int, elapsed: float
) -> None:
    console = Console()
    table = Table(title="stored per beneficiary")
    for column in ("connection", "status", "Patient", "Coverage", "EOB"):
        table.add_column(column, justify="left" if column in ("connection", "status") else "right")
    for item in statuses:
        counts = item.counts
        table.add_row(
            item.connection.connection_id,
            item.connection.status,
            str(counts.get("Patient", 0)),
            str(counts.get("Coverage", 0)),
            str(counts.get("ExplanationOfBenefit", 0)),
        )
    console.print(table)
    requests = int(stats.get("total", 0))
    totals = Table(title="totals")
    for column in ("requests", "pages", "429s", "most in 1 s", "elapsed", "requests/s"):
        totals.add_column(column, justify="right")
    totals.add_row(
        str(requests),
        str(pages),
        str(stats.get("by_status", {}).get("429", 0)),
        str(stats.get("max_per_second", "-")),
        f"{elapsed:.1f} s",
        f"{requests / elapsed:.2f}",
    )
    console.print(totals)


async def run_demo(settings: Settings, *, beneficiaries: int, replicas: int) -> int:
    """Run the demo; 0 when every beneficiary ends ``active``."""
    console = Console(stderr=True)
    await _reset(settings.database_url)
    config = EmulatorConfig(beneficiaries=beneficiaries, rate_limit=settings.bb_rate_limit)
    async with running_emulator(config) as emulator:
        console.print(f"emulator on {emulator.base_url}; authorizing {beneficiaries} beneficiaries")
        authorized = await _authorize_all(emulator.base_url, beneficiaries)
        queue = await open_queue(settings.redis_url)
        try:
            for item in authorized:
                await enqueue_connect(queue, item.job)
        finally:
            await queue.aclose()
        async with httpx.AsyncClient(base_url=emulator.base_url) as http:
            await http.post("/_emulator/stats/reset")
            started = time.monotonic()
            workers = await _start_workers(_worker_env(settings, emulator.base_url), replicas)
            await _watch(settings.database_url, len(authorized), workers)
            for worker in workers:
                await worker.wait()
            elapsed = time.monotonic() - started
            stats = (await http.get("/_emulator/stats")).json()
    statuses = await _demo_statuses(settings.database_url)
    _summary(statuses, stats, await _pages(settings.database_url), elapsed)
    active = sum(s.connection.status == "active" for s in statuses)
    console.print(f"{active} of {len(authorized)} connections active; worker logs in {LOG_DIR}/")
    return 0 if active == len(authorized) else 1
