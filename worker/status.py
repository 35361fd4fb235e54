"""``bbingest status``: what each connection holds, as a table or JSON."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from worker.store import listing, resources
from worker.store.connections import Connection
from worker.store.db import Conn


@dataclass(frozen=True)
class ConnectionStatus:
    """A connection row with its stored resource counts."""

    connection: Connection
    counts: dict[str, int]
    app_inactive_since: datetime | None = None  # CMS made the app inactive (worker.pauses)

    def as_json(self) -> dict[str, Any]:
        """Plain JSON-ready fields (no tokens: the row never carries them)."""
        c = self.connection
        return {
            "connection_id": c.connection_id,
            "app": c.app,
            "environment": c.environment,
            "status": c.status,
            "patient_id": c.patient_id,
            "scopes": list(c.scopes),
            "counts": self.counts,
            "last_synced_at": _iso(c.last_synced_at),
            "consent_expires_at": _iso(c.consent_expires_at),
            "last_error": c.last_error,
        }

    def as_cli_json(self) -> dict[str, Any]:
        """:meth:`as_json` and, for operators, since when CMS holds the app inactive."""
        return {**self.as_json(), "app_inactive_since": _iso(self.app_inactive_since)}


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


async def load_status(
    conn: Conn,
    connection_id: str | None,
    *,
    consent_before: datetime | None = None,
    app: str | None = None,
    paused: Mapping[str, datetime] | None = None,
) -> list[ConnectionStatus]:
    """Every connection (or the one named, those whose consent lapses before a time, those
    of one app) with its counts per resource type, and since when CMS has held its app
    inactive (``paused``: app name to time), if it does."""
    rows = await listing.list_all(conn, connection_id, consent_before=consent_before, app=app)
    counts = await resources.count_by_type(conn, [row.connection_id for row in rows])
    paused = paused or {}
    return [ConnectionStatus(row, counts[row.connection_id], paused.get(row.app)) for row in rows]


def render_table(statuses: list[ConnectionStatus], console: Console) -> None:
    """Print the statuses as a table an operator can read at a glance."""
    table = Table(title="connections")
    for column in (
        "connection",
        "app (environment)",
        "status",
        "patient",
        "Patient",
        "Coverage",
        "EOB",
        "last sync",
        "consent expires",
        "last error",
    ):
        table.add_column(column)
    for item in statuses:
        c = item.connection
        table.add_row(
            c.connection_id,
            f"{c.app} ({c.environment})" if c.environment else c.app,
            c.status + (" (app inactive at CMS)" if item.app_inactive_since else ""),
            c.patient_id or "-",
            str(item.counts.get("Patient", 0)),
            str(item.counts.get("Coverage", 0)),
            str(item.counts.get("ExplanationOfBenefit", 0)),
            _short(c.last_synced_at),
            _short(c.consent_expires_at),
            c.last_error or "",
        )
    console.print(table)


def _short(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M")
