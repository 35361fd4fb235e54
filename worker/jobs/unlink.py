"""The ``unlink`` job: delete everything stored for a connection, then end the grant at CMS.

Local deletion comes first and commits at once, whatever BB2 is doing; the revocation at
CMS is owed until it is settled (``pending_revocations``, :mod:`worker.sync.revocation`)
and is retried with the job, and nightly. Running it twice, or on an unknown id, does
nothing more. A retention purge (``purge``, queued by the nightly run or ``bbingest purge``)
unlinks only a connection the retention rules still cover when it runs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import structlog

from worker import errors
from worker.errors import Decision
from worker.jobs.payloads import UnlinkJob, parse_payload
from worker.retention import purge_cutoffs
from worker.runtime.context import JobContext
from worker.runtime.failures import on_failure
from worker.runtime.job_retry import Attempt
from worker.runtime.services import Services
from worker.store import unlinks
from worker.sync.revocation import KEPT, settle_owed

log = structlog.get_logger(__name__)


async def _delete_locally(services: Services, job: UnlinkJob, asked_at: datetime | None) -> str:
    """Unlink the connection (its data, tokens and audit row go in one transaction); the
    job's status: ``unknown`` id; ``superseded`` when it was authorized again since this
    job's unlink took effect (a retry after a relink: the relink stands); ``not_due`` for
    a purge the retention rules no longer ask for (a re-consent since it was decided)."""
    async with services.pool.acquire() as conn:
        if job.purge:
            due = purge_cutoffs(services.settings, datetime.now(UTC))
            unlinked = await unlinks.purge(conn, job.connection_id, due)
            if unlinked is None:
                log.info("purge_not_due")
                return "not_due"
        else:
            if asked_at is not None and await unlinks.relinked_since_unlinked(
                conn, job.connection_id, asked_at
            ):
                log.info("unlink_superseded_by_relink")
                return "superseded"
            unlinked = await unlinks.unlink(conn, job.connection_id)
            if unlinked is None:
                log.info("unlink_of_unknown_connection")
                return "unknown"
    if unlinked.tokens_dropped or unlinked.resources_deleted:
        log.info("unlinked", resources_deleted=unlinked.resources_deleted, purge=job.purge)
    return "revoked"


async def _revoke_at_cms(services: Services, connection_id: str, attempt: Attempt) -> list[str]:
    async def retry_later_else_keep(exc: errors.IngestError) -> list[str]:
        assert isinstance(exc, errors.RetryableError)
        if retry := attempt.retry_later(exc):
            raise retry from exc
        return [KEPT]

    try:
        return await settle_owed(services, connection_id)
    except errors.IngestError as exc:
        return await on_failure(exc, {Decision.RETRY_LATER: retry_later_else_keep})


async def unlink(ctx: JobContext, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """arq job ``unlink(connection_id, purge=False)``."""
    job = parse_payload(UnlinkJob, args, kwargs)
    services: Services = ctx["services"]
    with structlog.contextvars.bound_contextvars(job="unlink", connection_id=job.connection_id):
        status = await _delete_locally(services, job, ctx.get("enqueue_time"))
        # Rows owed for a connection that is gone (a purge), or kept, are settled all the same.
        revocation = await _revoke_at_cms(services, job.connection_id, Attempt.of(ctx))
        if status == "unknown" and not revocation:
            return {"status": status}
        return {"status": status, "cms": revocation}
