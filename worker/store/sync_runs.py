"""Sync runs: one row per connect or resync, holding counts and the resume cursor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from worker.constants import MAX_ERROR_CHARS
from worker.store.db import Conn
from worker.store.resources import UpsertCounts

Kind = Literal["connect", "resync"]


@dataclass(frozen=True)
class Cursor:
    """Where a sync stands: a resource type and its next page (None: its first page)."""

    resource_type: str
    url: str | None


@dataclass(frozen=True)
class Run:
    """A sync run in progress; ``cursor`` is None when nothing was stored yet."""

    run_id: int
    cursor: Cursor | None
    resumed: bool


async def start_or_resume(conn: Conn, connection_id: str, kind: Kind) -> Run:
    """Resume the connection's unfinished run, or start a new one."""
    async with conn.transaction():
        record = await conn.fetchrow(
            "SELECT run_id, cursor_type, cursor_url FROM sync_runs"
            " WHERE connection_id = $1 AND status = 'running' FOR UPDATE",
            connection_id,
        )
        if record is not None:
            cursor = (
                Cursor(record["cursor_type"], record["cursor_url"])
                if record["cursor_type"]
                else None
            )
            return Run(run_id=record["run_id"], cursor=cursor, resumed=True)
        run_id = await conn.fetchval(
            "INSERT INTO sync_runs (connection_id, kind) VALUES ($1, $2) RETURNING run_id",
            connection_id,
            kind,
        )
        return Run(run_id=run_id, cursor=None, resumed=False)


async def record_page(conn: Conn, run_id: int, counts: UpsertCounts, cursor: Cursor | None) -> None:
    """Count a stored page and move the cursor (inside the page's transaction)."""
    await conn.execute(
        """UPDATE sync_runs SET pages = pages + 1, inserted = inserted + $2,
               updated = updated + $3, unchanged = unchanged + $4,
               cursor_type = $5, cursor_url = $6
           WHERE run_id = $1""",
        run_id,
        counts.inserted,
        counts.updated,
        counts.unchanged,
        cursor.resource_type if cursor else None,
        cursor.url if cursor else None,
    )


async def skip_type(conn: Conn, run_id: int, resource_type: str, cursor: Cursor | None) -> None:
    """Record a resource type that was not fetched (scope not granted, or 403)."""
    await conn.execute(
        """UPDATE sync_runs SET skipped_types = array_append(skipped_types, $2),
               cursor_type = $3, cursor_url = $4
           WHERE run_id = $1""",
        run_id,
        resource_type,
        cursor.resource_type if cursor else None,
        cursor.url if cursor else None,
    )


async def finish(conn: Conn, run_id: int, *, error: str | None = None) -> None:
    """Close the run as succeeded, or failed with ``error``."""
    await conn.execute(
        """UPDATE sync_runs SET status = $2, error = $3, finished_at = now()
           WHERE run_id = $1 AND status = 'running'""",
        run_id,
        "failed" if error else "succeeded",
        None if error is None else error[:MAX_ERROR_CHARS],
    )


async def fail_running(conn: Conn, connection_id: str, error: str) -> None:
    """Close the connection's unfinished run (if any) as failed with ``error``."""
    await conn.execute(
        """UPDATE sync_runs SET status = 'failed', error = $2, finished_at = now()
           WHERE connection_id = $1 AND status = 'running'""",
        connection_id,
        error[:MAX_ERROR_CHARS],
    )
