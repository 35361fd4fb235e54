"""Queries over many connections: listings, resync candidates, retention, counts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from worker.store.connections import COLUMNS, Connection, Status, row_of
from worker.store.db import Conn


async def list_all(
    conn: Conn,
    connection_id: str | None = None,
    *,
    consent_before: datetime | None = None,
    app: str | None = None,
) -> list[Connection]:
    """Every connection (or the one named), in id order; ``consent_before`` keeps the live
    ones whose consent lapses before then, ``app`` those of one app."""
    records = await conn.fetch(
        f"""SELECT {COLUMNS} FROM connections
            WHERE ($1::text IS NULL OR connection_id = $1)
              AND ($2::timestamptz IS NULL OR (consent_expires_at < $2
                   AND status IN ('active', 'pending', 'error')))
              AND ($3::text IS NULL OR app = $3)
            ORDER BY connection_id""",
        connection_id,
        consent_before,
        app,
    )
    return [row_of(record) for record in records]


async def due_for_resync(conn: Conn, synced_before: datetime, limit: int, *, app: str) -> list[str]:
    """Active connections of ``app`` last synced before ``synced_before``, the oldest first."""
    records = await conn.fetch(
        """SELECT connection_id FROM connections
           WHERE status = 'active' AND app = $3
             AND (last_synced_at IS NULL OR last_synced_at < $1)
           ORDER BY last_synced_at NULLS FIRST, connection_id LIMIT $2""",
        synced_before,
        limit,
        app,
    )
    return [record["connection_id"] for record in records]


async def count_due(conn: Conn, synced_before: datetime) -> dict[str, int]:
    """How many active connections of each app are due for a resync."""
    records = await conn.fetch(
        """SELECT app, count(*) AS n FROM connections
           WHERE status = 'active' AND (last_synced_at IS NULL OR last_synced_at < $1)
           GROUP BY app""",
        synced_before,
    )
    return {record["app"]: int(record["n"]) for record in records}


@dataclass(frozen=True)
class Purgeable:
    """A connection the retention rules send through the unlink path."""

    connection_id: str
    status: Status
    since: datetime
    resources: int


@dataclass(frozen=True)
class PurgeCutoffs:
    """The retention rules at one moment: a connection waiting for a re-consent since
    before ``needs_reauth_before``, or in ``error`` since before ``error_before``, is due
    for purge. :func:`purgeable` asks it of every connection, a purge of its own one
    (:func:`worker.store.unlinks.purge`)."""

    needs_reauth_before: datetime
    error_before: datetime

    def covers(self, status: str, since: datetime) -> bool:
        """Whether a connection in ``status`` since ``since`` is due for purge."""
        cutoff = {"needs_reauth": self.needs_reauth_before, "error": self.error_before}
        return status in cutoff and since < cutoff[status]


async def purgeable(
    conn: Conn, due: PurgeCutoffs, *, except_apps: Sequence[str] = ()
) -> list[Purgeable]:
    """The connections ``due`` covers, with how many resources each still stores; none of
    ``except_apps`` (apps CMS holds inactive: nobody could re-consent through them)."""
    records = await conn.fetch(
        """SELECT c.connection_id, c.status, c.status_changed_at AS since,
                  (SELECT count(*) FROM fhir_resources r
                   WHERE r.connection_id = c.connection_id) AS resources
           FROM connections c
           WHERE ((c.status = 'needs_reauth' AND c.status_changed_at < $1)
              OR (c.status = 'error' AND c.status_changed_at < $2))
             AND NOT (c.app = ANY($3::text[]))
           ORDER BY c.connection_id""",
        due.needs_reauth_before,
        due.error_before,
        list(except_apps),
    )
    return [Purgeable(**dict(record)) for record in records]


async def count_by_app_and_status(conn: Conn) -> dict[tuple[str, str], int]:
    """How many connections each app has in each status."""
    records = await conn.fetch(
        "SELECT app, status, count(*) AS n FROM connections GROUP BY app, status"
    )
    return {(record["app"], record["status"]): int(record["n"]) for record in records}


async def active_ids(conn: Conn) -> list[str]:
    """Every active connection's id."""
    records = await conn.fetch(
        "SELECT connection_id FROM connections WHERE status = 'active' ORDER BY connection_id"
    )
    return [record["connection_id"] for record in records]


@dataclass(frozen=True)
class Expiring:
    """A live connection whose consent lapses soon."""

    connection_id: str
    app: str
    consent_expires_at: datetime


async def mark_consent_expiring(
    conn: Conn, now: datetime, lapses_before: datetime, limit: int
) -> list[Expiring]:
    """Mark up to ``limit`` live connections whose consent lapses between ``now`` and
    ``lapses_before`` and that were not told yet for this consent (a re-consent clears the
    mark: :func:`worker.store.grants.save_grant`); them. Call inside a transaction."""
    records = await conn.fetch(
        """UPDATE connections SET consent_expiring_sent_at = $1
           WHERE connection_id IN (
               SELECT connection_id FROM connections
               WHERE consent_expiring_sent_at IS NULL
                 AND consent_expires_at > $1 AND consent_expires_at <= $2
                 AND status IN ('active', 'pending', 'error')
               ORDER BY connection_id LIMIT $3 FOR NO KEY UPDATE)
           RETURNING connection_id, app, consent_expires_at""",
        now,
        lapses_before,
        limit,
    )
    return [Expiring(r["connection_id"], r["app"], r["consent_expires_at"]) for r in records]
