"""Apps CMS holds inactive, as their events told it: a row per paused app, inserted with
``app.paused`` and deleted with ``app.resumed`` (``worker.pauses``), so each transition is
told once however many replicas meet it at once."""

from __future__ import annotations

from datetime import datetime

from worker.store.db import Conn


async def pause(conn: Conn, app: str) -> datetime | None:
    """Record ``app`` as paused; when it was not already, since when (else None)."""
    paused_at: datetime | None = await conn.fetchval(
        "INSERT INTO app_pauses (app) VALUES ($1) ON CONFLICT DO NOTHING RETURNING paused_at",
        app,
    )
    return paused_at


async def resume(conn: Conn, app: str) -> datetime | None:
    """Forget ``app``'s pause; when it was paused, since when (else None)."""
    paused_at: datetime | None = await conn.fetchval(
        "DELETE FROM app_pauses WHERE app = $1 RETURNING paused_at", app
    )
    return paused_at
