"""The ``first_sync`` job: fetch everything of a connection whose code was just exchanged.

Queued by the ``exchange`` job in the interactive lane; it may wait its turn, since the
tokens, unlike the code, live for an hour and refresh.
"""

from __future__ import annotations

from typing import Any

import structlog

from worker.jobs.exchange import settle_after_exchange
from worker.jobs.payloads import FirstSyncJob, parse_payload
from worker.runtime.context import JobContext
from worker.runtime.job_retry import Attempt
from worker.runtime.services import Services
from worker.sync.outcome import load, run_sync


async def first_sync(ctx: JobContext, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """arq job ``first_sync(connection_id)``."""
    job = parse_payload(FirstSyncJob, args, kwargs)
    services: Services = ctx["services"]
    with structlog.contextvars.bound_contextvars(job="first_sync", connection_id=job.connection_id):
        await settle_after_exchange(services, job.connection_id)
        connection = await load(services, job.connection_id)
        return await run_sync(services, connection, "connect", Attempt.of(ctx))
