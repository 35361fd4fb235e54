"""The demo's webhook receiver: registered for both demo apps on loopback, it checks every
delivery's signature, and prints the events it received once the workers are done."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from rich.console import Console
from rich.table import Table

from worker.apps import DEFAULT_APP
from worker.crypto import cipher_for
from worker.emulator.server import serving
from worker.settings import Settings
from worker.store import webhooks
from worker.store.db import connection
from worker.store.migrate import migrate
from worker.webhooks.dispatcher import dispatching
from worker.webhooks.receiver import Receiver

SECRET: Final = "demo-webhook-secret-0123456789"  # noqa: S105 - the local demo receiver's
PATH: Final = "/demo-hooks"
DRAIN_SECONDS: Final = 20.0
_PENDING = """SELECT count(*) FROM webhook_deliveries d JOIN webhook_endpoints w USING (endpoint_id)
    WHERE w.url LIKE '%' || $1 AND d.delivered_at IS NULL AND d.dead_at IS NULL"""


@asynccontextmanager
async def receiving_webhooks(settings: Settings, apps: tuple[str, ...]) -> AsyncIterator[Receiver]:
    """A signed receiver for ``apps`` while inside; on the way out, the deliveries the
    workers left are made (by a dispatcher of this process) and the events printed."""
    receiver = Receiver([SECRET])
    async with serving(receiver.app()) as base_url:
        url = base_url + PATH
        async with connection(settings.database_url) as conn:
            await migrate(conn)  # the demo may be the database's first user
            # An earlier demo's receiver listened on another port: forget it.
            await conn.execute("DELETE FROM webhook_endpoints WHERE url LIKE '%' || $1", PATH)
            for app in (DEFAULT_APP, *apps):
                await webhooks.add(conn, cipher_for(settings), app, url, SECRET)
        yield receiver
        async with dispatching(settings, cipher_for(settings)):
            await _drained(settings)
        async with connection(settings.database_url) as conn:
            await conn.execute("DELETE FROM webhook_endpoints WHERE url LIKE '%' || $1", PATH)
    _show(receiver)


async def _drained(settings: Settings) -> None:
    deadline = time.monotonic() + DRAIN_SECONDS
    async with connection(settings.database_url) as conn:
        while await conn.fetchval(_PENDING, PATH) and time.monotonic() < deadline:  # noqa: ASYNC110 - polling the replicas' work
            await asyncio.sleep(0.2)


def _show(receiver: Receiver) -> None:
    table = Table(title="webhooks received (signatures verified)")
    for column in ("event type", "app", "events"):
        table.add_column(column, justify="right" if column == "events" else "left")
    counts = Counter((item.type, item.app) for item in receiver.received)
    for (kind, app), count in sorted(counts.items()):
        table.add_row(kind, app, str(count))
    console = Console()
    console.print(table)
    distinct = len({item.event_id for item in receiver.received})
    console.print(
        f"{distinct} events received ({len(receiver.received) - distinct} redelivered),"
        f" {receiver.refused} refused for a bad signature"
    )
