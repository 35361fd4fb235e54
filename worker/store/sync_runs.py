"""Sync runs: one row per connect or resync, holding counts and the resume cursor.

Every query names the run's ``connection_id`` (the distribution key of a sharded store,
which ``sync_runs`` and ``sync_seen`` are keyed by: migration 010), so that each one runs on
the one shard that holds the connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from worker.constants import MAX_ERROR_CHARS
from worker.store.db import Conn
from worker.store.resources import UpsertCounts
from worker.sync.model import Cursor, History, Plan, Run, RunKind, Split


@dataclass(frozen=True)
class Changes:
    """What a closed run inserted and updated."""

    inserted: int
    updated: int


def _split_json(cursor: Cursor | None) -> dict[str, Any] | None:
    """The cursor's split as stored in ``cursor_split`` (migration 016)."""
    if cursor is None or cursor.split is None:
        return None
    return {"searches": [list(map(list, s)) for s in cursor.split.searches], "at": cursor.split.at}


def _split_of(stored: dict[str, Any] | None) -> Split | None:
    if stored is None:
        return None
    searches = tuple(tuple((str(n), str(v)) for n, v in s) for s in stored["searches"])
    return Split(searches, int(stored["at"]))


def _cursor_args(cursor: Cursor | None) -> tuple[str | None, str | None, dict[str, Any] | None]:
    if cursor is None:
        return None, None, None
    return cursor.resource_type, cursor.url, _split_json(cursor)


async def start_or_resume(conn: Conn, connection_id: str, kind: RunKind, plan: Plan) -> Run:
    """Resume the connection's unfinished run (with the plan it started with), or start one."""
    async with conn.transaction():
        record = await conn.fetchrow(
            "SELECT run_id, mode, since, cursor_type, cursor_url, cursor_split FROM sync_runs"
            " WHERE connection_id = $1 AND status = 'running' FOR UPDATE",
            connection_id,
        )
        if record is not None:
            cursor = (
                Cursor(
                    record["cursor_type"], record["cursor_url"], _split_of(record["cursor_split"])
                )
                if record["cursor_type"]
                else None
            )
            stored = Plan(record["mode"], record["since"])
            return Run(run_id=record["run_id"], plan=stored, cursor=cursor)
        run_id = await conn.fetchval(
            "INSERT INTO sync_runs (connection_id, kind, mode, since) VALUES ($1, $2, $3, $4)"
            " RETURNING run_id",
            connection_id,
            kind,
            plan.mode,
            plan.since,
        )
        return Run(run_id=run_id, plan=plan, cursor=None)


async def record_page(
    conn: Conn, connection_id: str, run_id: int, counts: UpsertCounts, cursor: Cursor | None
) -> None:
    """Count a stored page and move the cursor (inside the page's transaction), while the
    run is still running: a closed run keeps no cursor (it may name the patient)."""
    await conn.execute(
        """UPDATE sync_runs SET pages = pages + 1, inserted = inserted + $3,
               updated = updated + $4, unchanged = unchanged + $5,
               cursor_type = $6, cursor_url = $7, cursor_split = $8
           WHERE connection_id = $1 AND run_id = $2 AND status = 'running'""",
        connection_id,
        run_id,
        counts.inserted,
        counts.updated,
        counts.unchanged,
        *_cursor_args(cursor),
    )


async def move_cursor(conn: Conn, connection_id: str, run_id: int, cursor: Cursor) -> None:
    """Move the cursor without storing a page (a split planned from a first page), while
    the run is still running."""
    await conn.execute(
        """UPDATE sync_runs SET cursor_type = $3, cursor_url = $4, cursor_split = $5
           WHERE connection_id = $1 AND run_id = $2 AND status = 'running'""",
        connection_id,
        run_id,
        *_cursor_args(cursor),
    )


async def skip_type(
    conn: Conn, connection_id: str, run_id: int, resource_type: str, cursor: Cursor | None
) -> None:
    """Record a resource type that was not fetched (scope not granted, or 403), while the
    run is still running."""
    await conn.execute(
        """UPDATE sync_runs SET skipped_types = array_append(skipped_types, $3),
               cursor_type = $4, cursor_url = $5, cursor_split = $6
           WHERE connection_id = $1 AND run_id = $2 AND status = 'running'""",
        connection_id,
        run_id,
        resource_type,
        *_cursor_args(cursor),
    )


async def finish(conn: Conn, connection_id: str, run_id: int) -> Changes | None:
    """Close the run as succeeded, dropping its cursor (a next link names the patient);
    what it inserted and updated.

    None when this call did not close it: only a running run closes, and only once. Two
    passes of one connection can share a run (a re-consent mid-sync resumes the running
    one), or a stale pass can outlive its run (failed, or closed by the other pass): only
    the pass that closed the run may delete what it did not see (:func:`delete_unseen`).
    """
    record = await conn.fetchrow(
        """UPDATE sync_runs SET status = 'succeeded', finished_at = now(),
               cursor_type = NULL, cursor_url = NULL, cursor_split = NULL
           WHERE connection_id = $1 AND run_id = $2 AND status = 'running'
           RETURNING inserted, updated""",
        connection_id,
        run_id,
    )
    return None if record is None else Changes(record["inserted"], record["updated"])


async def fail_running(conn: Conn, connection_id: str, error: str) -> None:
    """Close the connection's unfinished run (if any) as failed with ``error``, forgetting
    the ids it had seen and its cursor: a failed run is never resumed, and they may name
    the patient."""
    await conn.execute(
        """WITH failed AS (
               UPDATE sync_runs SET status = 'failed', error = $2, finished_at = now(),
                   cursor_type = NULL, cursor_url = NULL, cursor_split = NULL
               WHERE connection_id = $1 AND status = 'running' RETURNING run_id)
           DELETE FROM sync_seen s USING failed
           WHERE s.connection_id = $1 AND s.run_id = failed.run_id""",
        connection_id,
        error[:MAX_ERROR_CHARS],
    )


async def remember_seen(
    conn: Conn, connection_id: str, run_id: int, resource_type: str, resource_ids: list[str]
) -> None:
    """Note ids a full pass has seen (inside the page's transaction), only into a run still
    running: a closed run's seen ids were already used and deleted, and nothing would
    ever delete them again."""
    await conn.execute(
        """INSERT INTO sync_seen (connection_id, run_id, resource_type, resource_id)
           SELECT r.connection_id, $2, $3, unnest($4::text[]) FROM sync_runs r
           WHERE r.connection_id = $1 AND r.run_id = $2 AND r.status = 'running'
           ON CONFLICT DO NOTHING""",
        connection_id,
        run_id,
        resource_type,
        resource_ids,
    )


async def delete_unseen(conn: Conn, run_id: int, connection_id: str) -> int:
    """After a full pass, by the pass that closed the run (:func:`finish` said True): delete
    what BB2 no longer serves, of the types the pass read to the end; a type it skipped
    (not granted, or withheld) keeps its rows."""
    deleted = await conn.fetchval(
        """WITH gone AS (
               DELETE FROM fhir_resources r WHERE r.connection_id = $2 AND NOT EXISTS (
                   SELECT 1 FROM sync_seen s WHERE s.connection_id = $2 AND s.run_id = $1
                   AND s.resource_type = r.resource_type AND s.resource_id = r.resource_id)
               AND NOT r.resource_type = ANY(
                   SELECT unnest(skipped_types) FROM sync_runs
                   WHERE connection_id = $2 AND run_id = $1)
               RETURNING 1)
           SELECT count(*) FROM gone""",
        run_id,
        connection_id,
    )
    await conn.execute(
        "DELETE FROM sync_seen WHERE connection_id = $1 AND run_id = $2", connection_id, run_id
    )
    return int(deleted)


async def history(conn: Conn, connection_id: str) -> History:
    """Start times of the last successful sync, and of the last successful full pass."""
    record = await conn.fetchrow(
        """SELECT max(started_at) AS last_success,
                  max(started_at) FILTER (WHERE mode = 'full') AS last_full
           FROM sync_runs WHERE connection_id = $1 AND status = 'succeeded'""",
        connection_id,
    )
    assert record is not None
    return History(record["last_success"], record["last_full"])
