"""What every bench shares: its settings and emptied stores, worker replicas started and
stopped, waiting for the connections to sync, its time, and its table.

Benches are not tests: they print figures the README quotes (with the machine's load
average, since the development machines are shared) and never assert on wall-clock time.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import asyncpg
from rich.console import Console
from rich.table import Table

from tests.integration.support import reset_stores
from worker.local import start_workers, stop_workers
from worker.settings import Settings, load_settings

LOG_DIR = Path(".bench")


async def fresh_settings() -> Settings:
    """The bench's settings (its DATABASE_URL and REDIS_URL), both stores emptied.

    The emulator, the measuring instrument, runs in the bench's own process and renders
    pages in threads: a short switch interval lets its event loop timestamp arrivals
    promptly.
    """
    sys.setswitchinterval(0.001)
    settings = load_settings()
    await reset_stores(settings.database_url, settings.redis_url)
    return settings


def load() -> str:
    """The machine's load average (1, 5, 15 minutes), to print beside the figures."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


@contextmanager
def timed(label: str) -> Iterator[None]:
    """Print how long the block took, and the load average then."""
    began = time.monotonic()
    yield
    print(f"{label}: {time.monotonic() - began:.0f} s (load average {load()})", flush=True)


@asynccontextmanager
async def replicas(
    env: dict[str, str], count: int, log_dir: Path, *, metrics_port: int = 0
) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """``count`` long-running worker processes, stopped on exit."""
    workers = await start_workers(env, count, log_dir, metrics_port=metrics_port, burst=False)
    try:
        yield workers
    finally:
        await stop_workers(workers)


async def _count(settings: Settings, query: str) -> int:
    conn = await asyncpg.connect(settings.database_url)
    try:
        return int(await conn.fetchval(query))
    finally:
        await conn.close()


async def active_connections(settings: Settings) -> int:
    """How many connections are ``active``."""
    return await _count(settings, "SELECT count(*) FROM connections WHERE status = 'active'")


async def wait_until_synced(settings: Settings, count: int) -> None:
    """Poll until ``count`` connections have left ``pending``."""
    query = "SELECT count(*) FROM connections WHERE status <> 'pending'"
    while await _count(settings, query) < count:  # noqa: ASYNC110 - other processes' progress
        await asyncio.sleep(0.2)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A table of figures, right-aligned, wide enough to read in a log."""
    table = Table(title=f"{title} (load average {load()})")
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*row)
    Console(width=160).print(table)
