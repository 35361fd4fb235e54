"""``connection.consent_expiring``: told once per consent, a configurable number of days
(``WEBHOOK_CONSENT_EXPIRING_DAYS``) before it lapses; the nightly cron looks for them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

from worker.events.emit import emit
from worker.store import listing
from worker.store.db import Conn

# Connections marked and told per transaction: row locks stay few and short.
BATCH: Final = 500


async def announce_expiring(conn: Conn, now: datetime, ahead: timedelta) -> int:
    """Tell every live connection whose consent lapses within ``ahead`` and that was not
    told for this consent; how many were told. The mark and the event commit together."""
    told = 0
    while True:
        async with conn.transaction():
            batch = await listing.mark_consent_expiring(conn, now, now + ahead, BATCH)
            for item in batch:
                await emit(
                    conn,
                    "connection.consent_expiring",
                    app=item.app,
                    connection_id=item.connection_id,
                    consent_expires_at=item.consent_expires_at,
                )
        told += len(batch)
        if len(batch) < BATCH:
            return told
