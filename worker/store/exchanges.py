"""Code exchanges: one row per connection and authorization code, by the code's sha256
(never the code)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from worker.store.db import Conn

Outcome = Literal["exchanged", "expired", "refused", "lost_in_flight", "failed"]


@dataclass(frozen=True)
class Exchange:
    """What is known of one code's exchange."""

    code_sha256: str
    received_at: datetime
    started_at: datetime | None
    outcome: Outcome | None


async def note(
    conn: Conn, code_sha256: str, connection_id: str, app: str, received_at: datetime
) -> Exchange:
    """The code's row, created on its first job run; a later run finds the first one's."""
    record = await conn.fetchrow(
        """INSERT INTO code_exchanges (code_sha256, connection_id, app, received_at)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (connection_id, code_sha256) DO UPDATE SET app = code_exchanges.app
           RETURNING code_sha256, received_at, started_at, outcome""",
        code_sha256,
        connection_id,
        app,
        received_at,
    )
    assert record is not None  # the upsert always returns its row
    return Exchange(**dict(record))


async def mark_started(conn: Conn, connection_id: str, code_sha256: str) -> None:
    """The token request is about to leave: from now on the code may be spent."""
    await conn.execute(
        "UPDATE code_exchanges SET started_at = now()"
        " WHERE connection_id = $1 AND code_sha256 = $2",
        connection_id,
        code_sha256,
    )


async def finish(
    conn: Conn, connection_id: str, code_sha256: str, outcome: Outcome, age_seconds: float
) -> Outcome | None:
    """Record how the code's exchange ended and how old the code was then; the outcome an
    earlier run recorded (None: this run is the first to end it)."""
    before: Outcome | None = await conn.fetchval(
        """SELECT outcome FROM code_exchanges WHERE connection_id = $1 AND code_sha256 = $2
           FOR NO KEY UPDATE""",
        connection_id,
        code_sha256,
    )
    await conn.execute(
        """UPDATE code_exchanges SET outcome = $3, age_seconds = $4, finished_at = now()
           WHERE connection_id = $1 AND code_sha256 = $2""",
        connection_id,
        code_sha256,
        outcome,
        age_seconds,
    )
    return before
