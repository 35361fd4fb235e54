"""The events outbox (issue 15): events are written in the transaction of the state change
they report, and read back in commit order by position.

A position is ``"<xid>.<seq>"``: opaque to readers, ordered by transaction id then sequence
(``schemas/migrations/012_events.sql`` explains why that is commit-safe)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import orjson

from worker.store.db import Conn

# The Postgres channel every committed event is announced on (payload: id, type, app,
# connection_id; never the data).
NOTIFY_CHANNEL: Final = "bbingest_events"


@dataclass(frozen=True)
class Event:
    """One stored event and its feed position."""

    event_id: uuid.UUID
    position: str
    app: str
    connection_id: str | None
    type: str
    version: int
    data: dict[str, Any]
    created_at: datetime


class BadPosition(ValueError):
    """A feed position that this service never handed out."""


def parse_position(position: str) -> tuple[int, int]:
    """``"<xid>.<seq>"`` as numbers; ``"0"`` (or ``"0.0"``) is the start of the feed."""
    head, _, tail = position.partition(".")
    # ASCII only: "²" passes isdigit() but makes int() raise.
    if not (position.isascii() and head.isdigit() and (tail.isdigit() or tail == "")):
        raise BadPosition(f"not a feed position: {position[:40]!r}")
    return int(head), int(tail or 0)


async def record(
    conn: Conn,
    *,
    app: str,
    connection_id: str | None,
    type: str,
    version: int,
    data: dict[str, Any],
) -> uuid.UUID:
    """Write one event inside the caller's transaction and announce it on commit.

    A connection's events take its row lock first, so that their ``seq`` follows commit order
    (the caller's state change usually holds it already)."""
    if not conn.is_in_transaction():
        raise RuntimeError("an event must be written in its state change's transaction")
    if connection_id is not None:
        await conn.execute(
            "SELECT 1 FROM connections WHERE connection_id = $1 FOR NO KEY UPDATE", connection_id
        )
    event_id = uuid.uuid4()
    await conn.execute(
        """INSERT INTO events (event_id, app, connection_id, type, version, data)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        event_id,
        app,
        connection_id,
        type,
        version,
        data,
    )
    announcement = {"id": str(event_id), "type": type, "app": app, "connection_id": connection_id}
    await conn.execute(
        "SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, orjson.dumps(announcement).decode()
    )
    return event_id


async def read_after(
    conn: Conn, position: str, *, apps: list[str] | None, limit: int
) -> list[Event]:
    """Events past ``position`` in commit order, only those no running transaction can precede;
    ``apps`` None means every app."""
    xid, seq = parse_position(position)
    rows = await conn.fetch(
        """SELECT event_id, xid::text AS xid, seq, app, connection_id, type, version, data,
                  created_at
           FROM events
           WHERE (xid, seq) > ($1::text::xid8, $2)
             AND xid < pg_snapshot_xmin(pg_current_snapshot())
             AND ($3::text[] IS NULL OR app = ANY($3))
           ORDER BY xid, seq
           LIMIT $4""",
        str(xid),
        seq,
        apps,
        limit,
    )
    return [
        Event(
            event_id=r["event_id"],
            position=f"{r['xid']}.{r['seq']}",
            app=r["app"],
            connection_id=r["connection_id"],
            type=r["type"],
            version=r["version"],
            data=r["data"],
            created_at=r["created_at"],
        )
        for r in rows
    ]
