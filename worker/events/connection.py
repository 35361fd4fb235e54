"""The events of a connection's sync outcome, written in the outcome's transaction: what
the state change was is decided here, once, for every job that syncs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from worker.events.emit import emit
from worker.events.reasons import reason_of
from worker.store import resources
from worker.store.connections import Connection, Status
from worker.store.db import Conn
from worker.store.sync_runs import Changes


@dataclass(frozen=True)
class Synced:
    """A sync that succeeded, as its outcome's transaction saw it."""

    app: str
    connection_id: str
    before: str  # the connection's status under the outcome's row lock, before it
    changes: Changes
    mode: str
    deleted: int
    synced_at: datetime


async def sync_succeeded(conn: Conn, synced: Synced) -> None:
    """``connection.active`` when the connection was not active (its first sync after a
    connect or a re-consent, or a recovery), with its counts per resource type;
    ``connection.synced`` when an active connection's sync changed something; else none."""
    cid = synced.connection_id
    if synced.before != "active":
        counts = (await resources.count_by_type(conn, [cid]))[cid]
        await emit(
            conn,
            "connection.active",
            app=synced.app,
            connection_id=cid,
            counts=counts,
            synced_at=synced.synced_at,
        )
        return
    inserted, updated = synced.changes.inserted, synced.changes.updated
    if inserted or updated or synced.deleted:
        await emit(
            conn,
            "connection.synced",
            app=synced.app,
            connection_id=cid,
            mode=synced.mode,
            inserted=inserted,
            updated=updated,
            deleted=synced.deleted,
            synced_at=synced.synced_at,
        )


async def sync_failed(
    conn: Conn, connection: Connection, status: Status, error: BaseException
) -> None:
    """``connection.needs_reauth`` (with the consent's expiry) or ``connection.error``, the
    failure's reason code in it."""
    common = {"app": connection.app, "connection_id": connection.connection_id}
    if status == "needs_reauth":
        await emit(
            conn,
            "connection.needs_reauth",
            **common,
            reason=reason_of(error),
            consent_expires_at=connection.consent_expires_at,
        )
    else:
        await emit(conn, "connection.error", **common, reason=reason_of(error))


# How a code exchange ended without tokens, as a reason code ("failed": the error's own).
_EXCHANGE_REASONS: Final = {
    "expired": "code_expired",
    "refused": "authorization_refused",
    "lost_in_flight": "authorization_lost",
}


async def exchange_failed(
    conn: Conn, app: str, connection_id: str, outcome: str, error: BaseException | None
) -> None:
    """``authorization.expired`` for a code not exchanged in time, else ``connection.error``
    with why the exchange failed."""
    reason = _EXCHANGE_REASONS.get(outcome) or reason_of(error or RuntimeError())
    if outcome == "expired":
        await emit(
            conn,
            "authorization.expired",
            app=app,
            connection_id=connection_id,
            reason=reason,
            expired_at=datetime.now(UTC),
        )
    else:
        await emit(conn, "connection.error", app=app, connection_id=connection_id, reason=reason)
