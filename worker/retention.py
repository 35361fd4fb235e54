"""How long data is kept: connections waiting for a re-consent (DORMANT_RETENTION_DAYS) or
in ``error`` (ERROR_RETENTION_DAYS) go through the unlink path, which deletes their data,
ends the grant at CMS and keeps nothing that identifies the person. The nightly cron and
``bbingest purge`` both use :func:`due_for_purge`, so ``--dry-run`` shows what the next
nightly run deletes; they queue purges (``UnlinkJob(purge=True)``), which ask the same rules
again when they run (:func:`purge_cutoffs`): a re-consent meanwhile stands. Delivered
webhook deliveries are kept WEBHOOK_RETENTION_DAYS, then the nightly run deletes them
(:func:`purge_webhook_deliveries`); dead-lettered ones stay for ``bbingest webhooks
failures``, and the events themselves stay in the outbox."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from worker.settings import Settings
from worker.store import delivery_admin, listing
from worker.store.db import Conn
from worker.store.listing import Purgeable, PurgeCutoffs


def purge_cutoffs(settings: Settings, now: datetime) -> PurgeCutoffs:
    """The retention rules (DORMANT_/ERROR_RETENTION_DAYS) as they stand at ``now``."""
    return PurgeCutoffs(
        needs_reauth_before=now - timedelta(days=settings.dormant_retention_days),
        error_before=now - timedelta(days=settings.error_retention_days),
    )


async def due_for_purge(
    conn: Conn, settings: Settings, now: datetime, *, paused_apps: Sequence[str] = ()
) -> list[Purgeable]:
    """The connections whose retention period has run out at ``now``; none of an app CMS
    holds inactive (``paused_apps``): nobody could re-consent through it meanwhile."""
    return await listing.purgeable(conn, purge_cutoffs(settings, now), except_apps=paused_apps)


async def purge_webhook_deliveries(conn: Conn, settings: Settings, now: datetime) -> int:
    """Delete the webhook deliveries delivered more than WEBHOOK_RETENTION_DAYS before
    ``now``; how many went."""
    before = now - timedelta(days=settings.webhook_retention_days)
    return await delivery_admin.purge_delivered(conn, before)
