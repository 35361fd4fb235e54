"""Writing an event of the catalog, checked against its declaration, in the transaction of
the state change it reports (:func:`worker.store.outbox.record`)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from worker.events.catalog import BY_NAME, EventType
from worker.events.reasons import REASONS
from worker.store import outbox
from worker.store.db import Conn


def checked_data(event_type: EventType, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` as stored: exactly the declared fields (a reason's text added from its
    code), times as ISO 8601 text. ValueError for anything the catalog does not declare:
    a programming error, caught by the tests, never personal data slipping out."""
    given = dict(data)
    if "reason" in event_type.fields:
        if given.get("reason") not in REASONS:
            raise ValueError(f"{event_type.name}: unknown reason code {given.get('reason')!r}")
        given["reason_text"] = REASONS[given["reason"]]
    if set(given) != set(event_type.fields):
        raise ValueError(f"{event_type.name}: data keys {sorted(given)} are not the declared")
    return {
        key: value.isoformat() if isinstance(value, datetime) else value
        for key, value in given.items()
    }


async def emit(
    conn: Conn, name: str, *, app: str, connection_id: str | None, **data: Any
) -> uuid.UUID:
    """Write event ``name`` of the catalog inside the caller's transaction (after its state
    change, whose row lock orders the connection's events); its id."""
    event_type = BY_NAME[name]
    if (connection_id is not None) != event_type.per_connection:
        raise ValueError(f"{name}: connection_id must be given exactly for a connection's event")
    return await outbox.record(
        conn,
        app=app,
        connection_id=connection_id,
        type=name,
        version=event_type.version,
        data=checked_data(event_type, data),
    )
