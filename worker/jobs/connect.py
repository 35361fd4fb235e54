"""The ``connect`` job of the contract: exchange the code, then fetch everything.

Upstreams that enqueue ``connect`` on arq's default queue keep what the contract promises
(the job ends with the connection ``active``): its exchange runs at once, through the
urgent lane of the budget like every exchange (:mod:`worker.jobs.exchange`), and the sync
follows in the same job. The intake and ``bbingest enqueue connect`` queue the ``exchange``
job instead, whose first sync is a job of its own, so that a connect storm never waits
behind syncs.
"""

from __future__ import annotations

from typing import Any

import structlog

from worker.jobs.exchange import exchange_step, settle_after_exchange
from worker.jobs.payloads import ConnectJob, parse_payload
from worker.runtime.context import JobContext
from worker.runtime.job_retry import Attempt
from worker.runtime.services import Services
from worker.sync.outcome import load, run_sync


async def connect(ctx: JobContext, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """arq job ``connect(connection_id, code, code_verifier, redirect_uri)``."""
    job = parse_payload(ConnectJob, args, kwargs)
    services: Services = ctx["services"]
    with structlog.contextvars.bound_contextvars(
        job="connect", connection_id=job.connection_id, app=job.app
    ):
        exchanged = await exchange_step(services, job, ctx)
        await settle_after_exchange(services, job.connection_id)
        if not exchanged.holds_tokens:
            return {"status": exchanged.status}
        connection = await load(services, job.connection_id)
        return await run_sync(services, connection, "connect", Attempt.of(ctx))
