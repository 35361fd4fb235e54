"""The nightly cron: queue the resyncs that are due (within each app's budget), purge
dormant and long-failed connections (worker.retention) and delivered webhook deliveries, and
retry revocations CMS still owes us, all in the bulk lane; and tell the consents about to lapse
(``connection.consent_expiring``).

arq runs it on exactly one replica per fire time (``unique=True``), however many run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import structlog
from arq.connections import ArqRedis

from worker import pauses
from worker.apps import DEFAULT_APP
from worker.events import consent
from worker.jobs.capacity import plan_night, requests_per_resync
from worker.jobs.payloads import ResyncJob, RevocationRetryJob, UnlinkJob
from worker.jobs.queue import enqueue
from worker.retention import due_for_purge, purge_webhook_deliveries
from worker.runtime import lanes
from worker.runtime.context import JobContext
from worker.runtime.services import Services
from worker.store import apps, listing, revocations
from worker.store.db import Conn

log = structlog.get_logger(__name__)


async def _choose_resyncs(
    conn: Conn, services: Services, synced_before: datetime
) -> tuple[list[str], int]:
    """Tonight's resyncs, the oldest first within each app's own budget; and how many
    were due. Connections of an app that is no longer registered wait for it."""
    settings = services.settings
    per_resync = requests_per_resync(settings.resync_full_every_days, settings.resync_cadence_hours)
    rates = {DEFAULT_APP: settings.bb_rate_limit, **await apps.rate_limits(conn)}
    chosen: list[str] = []
    due_by_app = await listing.count_due(conn, synced_before)
    for app, due in sorted(due_by_app.items()):
        if app not in rates:
            log.warning("nightly_app_unavailable", app=app, connections_due=due)
            continue
        capacity = plan_night(
            due, rate=rates[app], share=settings.resync_daily_share, per_resync=per_resync
        )
        chosen += await listing.due_for_resync(conn, synced_before, capacity.scheduled, app=app)
        log.info(
            "nightly_planned",
            app=app,
            connections_due=capacity.due,
            resyncs_queued=capacity.scheduled,
            requests_expected=round(capacity.requests_expected),
            daily_budget=round(capacity.daily_budget),
            hours_for_backlog=round(capacity.hours_for_backlog, 2),
        )
    return chosen, sum(due_by_app.values())


async def nightly(ctx: dict[str, Any]) -> dict[str, Any]:
    """arq cron job: schedule tonight's resyncs, oldest first, and purge dormant accounts."""
    context = cast(JobContext, ctx)  # arq's cron() takes functions of a plain dict
    services: Services = context["services"]
    queue: ArqRedis = context["redis"]
    settings = services.settings
    now = datetime.now(UTC)
    async with services.pool.acquire() as conn:
        chosen, due = await _choose_resyncs(
            conn, services, now - timedelta(hours=settings.resync_cadence_hours)
        )
        # An app CMS made inactive stops the clock: nobody could re-consent through it.
        paused = sorted(await pauses.paused_since(services.redis))
        due_purge = await due_for_purge(conn, settings, now, paused_apps=paused)
        dormant = [purge.connection_id for purge in due_purge]
        owed = await revocations.unlinked_with_owed(conn)
        expiring = await consent.announce_expiring(
            conn, now, timedelta(days=settings.webhook_consent_expiring_days)
        )
        # Their resync only settles what is owed: nothing to sync without a consent.
        chosen += [c for c in await revocations.unsynced_with_owed(conn) if c not in chosen]
        deliveries_purged = await purge_webhook_deliveries(conn, settings, now)
    for connection_id in chosen:
        await enqueue(queue, ResyncJob(connection_id=connection_id))
    # A purge unlinks a dormant (or long failed) connection unless a re-consent came first;
    # a retry tries again a revocation an unlink's tries could not complete (it is
    # idempotent, and leaves a relink alone). Each has its own job id: a person's unlink
    # queued meanwhile is never dropped as a duplicate of either.
    unlink_jobs = [UnlinkJob(connection_id=c, purge=True) for c in dormant]
    unlink_jobs += [RevocationRetryJob(connection_id=c) for c in owed]  # never due for purge
    for job in unlink_jobs:
        await enqueue(queue, job, lane=lanes.BULK)
    log.info(
        "nightly_scheduled",
        resyncs_queued=len(chosen),
        dormant_purged=len(dormant),
        revocations_retried=len(owed),
        consents_expiring=expiring,
        webhook_deliveries_purged=deliveries_purged,
    )
    return {"resyncs": len(chosen), "purged": len(dormant), "revocations": len(owed), "due": due}
