"""Webhook deliveries (issue 15): one row per event and endpoint, filled by a trigger on the
events outbox (``schemas/migrations/014_webhooks.sql``) and worked by the dispatcher.

A connection's deliveries to one endpoint form a chain in ``seq`` order; only its head (the
oldest row neither delivered nor dead-lettered) is ever sent. Claiming the head leases it:
``next_attempt_at`` moves past the send's timeout, so no other replica takes the chain
until the sender records the outcome (or its lease runs out, if it died)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from worker.store.db import Conn
from worker.store.outbox import Event
from worker.store.webhooks import SealedSecrets

_COLUMNS = """d.delivery_id, d.endpoint_id, d.attempts, d.pending_since, w.url,
    w.app AS endpoint_app, w.secret_enc, w.previous_secret_enc, w.previous_until,
    e.event_id, e.xid::text || '.' || e.seq AS position, e.app, e.connection_id, e.type,
    e.version, e.data, e.created_at"""
_EVENT_FIELDS = [field.name for field in fields(Event)]

# The due heads of every chain, endpoints that are full excluded (an index-only walk of the
# pending rows), then those rows locked by primary key in a second statement: right after a
# burst of events the statistics still call the table empty, and a one-statement plan that
# re-ran the DISTINCT ON for every row took minutes for 10,000 rows. The lock re-checks the
# row itself: a head another replica just leased is no longer due.
_HEADS = """
SELECT delivery_id FROM (
    SELECT DISTINCT ON (endpoint_id, connection_id) delivery_id, next_attempt_at
    FROM webhook_deliveries
    WHERE delivered_at IS NULL AND dead_at IS NULL AND endpoint_id <> ALL($2::bigint[])
    ORDER BY endpoint_id, connection_id, seq
) heads
WHERE next_attempt_at <= now()
ORDER BY next_attempt_at
LIMIT $1"""
_CLAIM = f"""
SELECT {_COLUMNS}
FROM webhook_deliveries d
JOIN webhook_endpoints w USING (endpoint_id)
JOIN events e USING (event_id)
WHERE d.delivery_id = ANY($1::bigint[])
  AND d.next_attempt_at <= now() AND d.delivered_at IS NULL AND d.dead_at IS NULL
ORDER BY d.next_attempt_at
LIMIT $2
FOR UPDATE OF d SKIP LOCKED"""

# The next row of a chain whose head was just delivered, in the same transaction. A
# connection's chain and the app's own (connection_id NULL) have a query each: `IS NOT
# DISTINCT FROM` cannot use the pending index, and scanned every pending row per delivery.
_NEXT = f"""
SELECT {_COLUMNS}, d.next_attempt_at <= now() AS due
FROM webhook_deliveries d
JOIN webhook_endpoints w USING (endpoint_id)
JOIN events e USING (event_id)
WHERE d.endpoint_id = $1 AND {{chain}}
  AND d.delivered_at IS NULL AND d.dead_at IS NULL
ORDER BY d.seq
LIMIT 1
FOR UPDATE OF d SKIP LOCKED"""
_NEXT_OF_CONNECTION = _NEXT.format(chain="d.connection_id = $2::text")
_NEXT_OF_APP = _NEXT.format(chain="d.connection_id IS NULL AND $2::text IS NULL")


@dataclass(frozen=True)
class Claimed:
    """A leased delivery: the event to send, and where and what signs it (``secrets``)."""

    delivery_id: int
    endpoint_id: int
    attempts: int
    pending_since: datetime
    secrets: SealedSecrets
    event: Event


def _claimed(row: Any) -> Claimed:
    return Claimed(
        delivery_id=row["delivery_id"],
        endpoint_id=row["endpoint_id"],
        attempts=row["attempts"],
        pending_since=row["pending_since"],
        secrets=SealedSecrets(
            app=row["endpoint_app"],
            url=row["url"],
            secret_enc=row["secret_enc"],
            previous_secret_enc=row["previous_secret_enc"],
            previous_until=row["previous_until"],
        ),
        event=Event(**{name: row[name] for name in _EVENT_FIELDS}),
    )


async def _lease(conn: Conn, ids: Sequence[int], lease: timedelta) -> None:
    await conn.execute(
        """UPDATE webhook_deliveries SET next_attempt_at = now() + $2
           WHERE delivery_id = ANY($1::bigint[])""",
        list(ids),
        lease,
    )


async def claim(conn: Conn, limit: int, *, full: Sequence[int], lease: timedelta) -> list[Claimed]:
    """Lease up to ``limit`` due chain heads, none of the endpoints in ``full``."""
    # Twice the heads wanted: some may be locked by another replica's claim right now.
    heads = [row["delivery_id"] for row in await conn.fetch(_HEADS, 2 * limit, list(full))]
    if not heads:
        return []
    async with conn.transaction():
        rows = await conn.fetch(_CLAIM, heads, limit)
        await _lease(conn, [row["delivery_id"] for row in rows], lease)
    return [_claimed(row) for row in rows]


async def delivered(conn: Conn, done: Claimed, status: int, *, lease: timedelta) -> Claimed | None:
    """Record ``done`` as delivered, and lease the next row of its chain when that one is
    due (the sender goes on with it); None when the chain has nothing due."""
    async with conn.transaction():
        await conn.execute(
            """UPDATE webhook_deliveries
               SET delivered_at = now(), attempts = attempts + 1, last_status = $2,
                   last_error = NULL
               WHERE delivery_id = $1""",
            done.delivery_id,
            status,
        )
        cid = done.event.connection_id
        query = _NEXT_OF_APP if cid is None else _NEXT_OF_CONNECTION
        row = await conn.fetchrow(query, done.endpoint_id, cid)
        if row is None or not row["due"]:
            return None
        await _lease(conn, [row["delivery_id"]], lease)
    return _claimed(row)


async def failed(
    conn: Conn,
    attempt: Claimed,
    *,
    status: int | None,
    error: str,
    retry_at: datetime | None,
    since: datetime,
) -> None:
    """Record a failed attempt: tried again at ``retry_at``, or dead-lettered (None);
    ``since`` is when its retries began (the give-up clock)."""
    await conn.execute(
        """UPDATE webhook_deliveries
           SET attempts = attempts + 1, last_status = $2, last_error = $3,
               next_attempt_at = coalesce($4, next_attempt_at),
               dead_at = CASE WHEN $4::timestamptz IS NULL THEN now() END,
               pending_since = $5
           WHERE delivery_id = $1""",
        attempt.delivery_id,
        status,
        error[:500],
        retry_at,
        since,
    )


async def release(conn: Conn, leased: Sequence[Claimed]) -> None:
    """End the leases of deliveries claimed but not sent: due again at once."""
    await conn.execute(
        """UPDATE webhook_deliveries SET next_attempt_at = now()
           WHERE delivery_id = ANY($1::bigint[]) AND delivered_at IS NULL AND dead_at IS NULL""",
        [item.delivery_id for item in leased],
    )
