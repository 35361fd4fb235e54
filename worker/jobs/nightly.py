"""The nightly cron: queue the resyncs that are due (within the budget), purge dormant data.

arq runs it on exactly one replica per fire time (``unique=True``), however many run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from arq.connections import ArqRedis

from worker.jobs.capacity import plan_night, requests_per_resync
from worker.jobs.payloads import ResyncJob, UnlinkJob
from worker.jobs.queue import enqueue
from worker.jobs.services import Services
from worker.store import connections

log = structlog.get_logger(__name__)


async def nightly(ctx: dict[str, Any]) -> dict[str, Any]:
    """arq cron job: schedule tonight's resyncs, oldest first, and purge dormant accounts."""
    services: Services = ctx["services"]
    queue: ArqRedis = ctx["redis"]
    settings = services.settings
    now = datetime.now(UTC)
    synced_before = now - timedelta(hours=settings.resync_cadence_hours)
    async with services.pool.acquire() as conn:
        due = await connections.count_due(conn, synced_before)
        capacity = plan_night(
            due,
            rate=settings.bb_rate_limit,
            share=settings.resync_daily_share,
            per_resync=requests_per_resync(
                settings.resync_full_every_days, settings.resync_cadence_hours
            ),
        )
        chosen = await connections.due_for_resync(conn, synced_before, capacity.scheduled)
        dormant = await connections.dormant(
            conn, now - timedelta(days=settings.dormant_retention_days)
        )
    for connection_id in chosen:
        await enqueue(queue, ResyncJob(connection_id=connection_id))
    for connection_id in dormant:
        await enqueue(queue, UnlinkJob(connection_id=connection_id))
    log.info(
        "nightly_scheduled",
        connections_due=capacity.due,
        resyncs_queued=len(chosen),
        requests_expected=round(capacity.requests_expected),
        daily_budget=round(capacity.daily_budget),
        hours_for_backlog=round(capacity.hours_for_backlog, 2),
        dormant_purged=len(dormant),
    )
    return {"resyncs": len(chosen), "purged": len(dormant), "due": due}
