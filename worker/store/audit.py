"""The audit trail: what happened to a connection, with ids and counts only."""

from __future__ import annotations

from typing import Any

from worker.store.db import Conn


async def record(conn: Conn, connection_id: str, event: str, **detail: Any) -> None:
    """Append an audit row; ``detail`` must hold no token, code or personal data."""
    await conn.execute(
        "INSERT INTO audit_log (connection_id, event, detail) VALUES ($1, $2, $3)",
        connection_id,
        event,
        detail,
    )
