"""Connection rows: one connection's status and consent. Its tokens are
:mod:`worker.store.tokens` and :mod:`worker.store.grants` (they only ever leave there
decrypted), its unlink :mod:`worker.store.unlinks`, queries over many rows
:mod:`worker.store.listing`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal, cast

import asyncpg

from worker.constants import MAX_ERROR_CHARS
from worker.errors import ConnectionRevoked
from worker.store.db import Conn

Status = Literal["pending", "active", "needs_reauth", "revoked", "error"]

COLUMNS: Final = """connection_id, app, client_id, environment, patient_id, status, scopes,
    consent_expires_at, last_synced_at, last_error, access_expires_at, code_sha256,
    status_changed_at, refresh_token_enc IS NOT NULL AS has_tokens"""


@dataclass(frozen=True)
class Connection:
    """A connection row, without its tokens."""

    connection_id: str
    app: str
    client_id: str | None  # the app's client that issued the tokens (None: before apps)
    environment: str | None
    patient_id: str | None
    status: Status
    scopes: tuple[str, ...]
    consent_expires_at: datetime | None
    last_synced_at: datetime | None
    last_error: str | None
    access_expires_at: datetime | None
    code_sha256: str | None
    status_changed_at: datetime
    has_tokens: bool


def row_of(record: asyncpg.Record) -> Connection:
    """The connection a ``SELECT {COLUMNS}`` record holds."""
    return Connection(**{**dict(record), "scopes": tuple(record["scopes"])})


async def get(conn: Conn, connection_id: str) -> Connection | None:
    """The connection, or None when the id is unknown."""
    record = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM connections WHERE connection_id = $1", connection_id
    )
    return None if record is None else row_of(record)


async def create_pending(conn: Conn, connection_id: str, app: str) -> Connection:
    """Insert the connection as ``pending`` unless it exists; returns the row either way."""
    await conn.execute(
        "INSERT INTO connections (connection_id, app) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        connection_id,
        app,
    )
    found = await get(conn, connection_id)
    assert found is not None
    return found


async def set_status(
    conn: Conn,
    connection_id: str,
    status: Status,
    *,
    error: str | None = None,
    synced_at: datetime | None = None,
    grant: str | None = None,
) -> bool:
    """Move the connection to ``status``; a revoked connection stays revoked. With
    ``grant`` (the ``code_sha256`` a job started from), only while no new authorization
    replaced it: a job of the old grant must not judge the new one. True when written."""
    result = await conn.execute(
        """UPDATE connections SET status = $2, last_error = $3,
               last_synced_at = COALESCE($4, last_synced_at), updated_at = now(),
               status_changed_at = CASE WHEN status = $2 THEN status_changed_at ELSE now() END
           WHERE connection_id = $1 AND status <> 'revoked'
             AND ($5::text IS NULL OR code_sha256 = $5)""",
        connection_id,
        status,
        None if error is None else error[:MAX_ERROR_CHARS],
        synced_at,
        grant,
    )
    return bool(result == "UPDATE 1")


async def lock_live(conn: Conn, connection_id: str, *, exclusive: bool = False) -> Status:
    """Share-lock the row for this transaction, or raise if it was unlinked meanwhile; the
    status it holds under the lock.

    Unlink takes the row FOR UPDATE, so a page written under this lock either commits
    before the unlink starts (and is deleted by it) or sees ``revoked`` and writes nothing.
    ``exclusive``: no other transaction of this connection runs meanwhile (two full passes
    finishing at once would delete overlapping rows in different orders: a deadlock).
    """
    mode = "FOR NO KEY UPDATE" if exclusive else "FOR SHARE"
    status = await conn.fetchval(
        f"SELECT status FROM connections WHERE connection_id = $1 {mode}", connection_id
    )
    if status is None or status == "revoked":
        raise ConnectionRevoked(f"connection {connection_id!r} was unlinked")
    return cast(Status, status)


async def fail_exchange(conn: Conn, connection_id: str, code_sha256: str, reason: str) -> bool:
    """Move the connection to ``error`` for a failed code exchange, unless it already holds
    the tokens of that very code (a duplicate run's refusal must never undo a success) or
    was unlinked; False when nothing changed."""
    result = await conn.execute(
        """UPDATE connections SET status = 'error', last_error = $3, updated_at = now(),
               status_changed_at = CASE WHEN status = 'error' THEN status_changed_at
                                        ELSE now() END
           WHERE connection_id = $1 AND status <> 'revoked'
             AND NOT (code_sha256 IS NOT DISTINCT FROM $2 AND refresh_token_enc IS NOT NULL)""",
        connection_id,
        code_sha256,
        reason[:MAX_ERROR_CHARS],
    )
    return bool(result == "UPDATE 1")
