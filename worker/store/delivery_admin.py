"""What operators do with webhook deliveries: see the dead-lettered ones, send an app's
events again, watch the backlog, purge delivered rows after WEBHOOK_RETENTION_DAYS."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from worker.store.db import Conn


@dataclass(frozen=True)
class DeadDelivery:
    """A dead-lettered delivery as ``bbingest webhooks failures`` shows it."""

    app: str
    url: str
    event_id: str
    type: str
    connection_id: str | None
    attempts: int
    last_status: int | None
    last_error: str | None
    dead_at: datetime


@dataclass(frozen=True)
class Backlog:
    """An app's undelivered rows, and how long the oldest has waited (seconds)."""

    app: str
    pending: int
    oldest_seconds: float


async def dead_letters(conn: Conn, app: str | None, limit: int) -> list[DeadDelivery]:
    """The most recently dead-lettered deliveries (of ``app``), newest first."""
    rows = await conn.fetch(
        """SELECT w.app, w.url, d.event_id::text AS event_id, e.type, d.connection_id,
                  d.attempts, d.last_status, d.last_error, d.dead_at
           FROM webhook_deliveries d
           JOIN webhook_endpoints w USING (endpoint_id)
           JOIN events e USING (event_id)
           WHERE d.dead_at IS NOT NULL AND ($1::text IS NULL OR w.app = $1)
           ORDER BY d.dead_at DESC LIMIT $2""",
        app,
        limit,
    )
    return [DeadDelivery(**dict(row)) for row in rows]


async def replay(conn: Conn, app: str, since: datetime) -> int:
    """Queue ``app``'s events created at or after ``since`` to every endpoint of the app
    again (delivered, dead-lettered or purged alike); how many deliveries were queued."""
    status = await conn.execute(
        """INSERT INTO webhook_deliveries (endpoint_id, event_id, seq, connection_id)
           SELECT w.endpoint_id, e.event_id, e.seq, e.connection_id
           FROM events e JOIN webhook_endpoints w ON w.app = e.app
           WHERE e.app = $1 AND e.created_at >= $2
           ON CONFLICT (endpoint_id, event_id) DO UPDATE
           SET delivered_at = NULL, dead_at = NULL, attempts = 0, last_status = NULL,
               last_error = NULL, pending_since = now(), next_attempt_at = now()""",
        app,
        since,
    )
    return int(status.split()[-1])


async def backlog(conn: Conn) -> list[Backlog]:
    """Every app's undelivered (and not dead-lettered) rows and the oldest one's age."""
    rows = await conn.fetch(
        """SELECT w.app, count(*) AS pending,
                  extract(epoch FROM now() - min(d.pending_since))::float8 AS oldest_seconds
           FROM webhook_deliveries d JOIN webhook_endpoints w USING (endpoint_id)
           WHERE d.delivered_at IS NULL AND d.dead_at IS NULL
           GROUP BY w.app"""
    )
    return [Backlog(**dict(row)) for row in rows]


async def purge_delivered(conn: Conn, before: datetime) -> int:
    """Delete the rows delivered before ``before``; how many went."""
    status = await conn.execute("DELETE FROM webhook_deliveries WHERE delivered_at < $1", before)
    return int(status.split()[-1])
