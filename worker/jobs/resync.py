"""The ``resync`` job: fetch what changed since the last successful sync (or a full pass)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from worker.jobs.payloads import ResyncJob, parse_payload
from worker.runtime.context import JobContext
from worker.runtime.job_retry import Attempt
from worker.runtime.services import Services
from worker.store import connections, sync_runs
from worker.sync.outcome import run_sync
from worker.sync.plan import choose_plan
from worker.sync.revocation import settle_owed_for_now

log = structlog.get_logger(__name__)

# A connection in these states holds live tokens worth a sync; needs_reauth does not.
RESYNCABLE = ("active", "error")


async def resync(ctx: JobContext, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """arq job ``resync(connection_id)``."""
    job = parse_payload(ResyncJob, args, kwargs)
    services: Services = ctx["services"]  # the bulk lane's (worker.jobs.worker)
    settings = services.settings
    with structlog.contextvars.bound_contextvars(job="resync", connection_id=job.connection_id):
        async with services.pool.acquire() as conn:
            connection = await connections.get(conn, job.connection_id)
            history = await sync_runs.history(conn, job.connection_id)
        # Tokens a relink replaced are owed a revocation; the nightly unlink retries only
        # those of unlinked connections, so a live connection's next resync settles them,
        # one waiting for a re-consent included (the nightly run queues its resync).
        if connection is not None and connection.status != "revoked":
            await settle_owed_for_now(services, job.connection_id)
        if connection is None or connection.status not in RESYNCABLE:
            status = connection.status if connection else "unknown"
            log.info("resync_not_needed", status=status)
            return {"status": status}
        plan = choose_plan(
            datetime.now(UTC),
            history,
            full_every=timedelta(days=settings.resync_full_every_days),
            margin=timedelta(hours=settings.resync_margin_hours),
        )
        return await run_sync(
            services,
            connection,
            "resync",
            Attempt.of(ctx),
            plan=plan,
        )
