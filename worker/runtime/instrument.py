"""Around every job: its metrics (duration and outcome, whatever it returns or raises), the
short lease that lets another replica take it over after a crash, and a retry when the job
met an outage of our own Postgres or Redis."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine
from typing import Any

import structlog
from arq import Retry

from worker import metrics
from worker.errors import InvalidJob
from worker.runtime.context import JobContext
from worker.runtime.job_retry import Attempt
from worker.runtime.lease import lease
from worker.runtime.services import Services
from worker.store import failures

log = structlog.get_logger(__name__)

Job = Callable[..., Coroutine[Any, Any, dict[str, Any]]]


def _outcome(error: BaseException) -> str:
    if isinstance(error, Retry):
        return "retry"
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"  # shutdown: arq runs it again on another replica
    return "invalid" if isinstance(error, InvalidJob) else "crashed"


async def _remember(ctx: JobContext, name: str, outcome: str, error: Exception) -> None:
    # A crash's text is an exception message of ours or a library's: never a payload.
    reason = str(error) if outcome == "invalid" else f"{type(error).__name__}: {error}"
    services: Services = ctx["services"]
    kind: failures.FailureKind = "invalid" if outcome == "invalid" else "crashed"
    async with services.pool.acquire() as conn:
        await failures.record(conn, name, ctx["job_id"], ctx["job_try"], kind, reason)


def _finished(name: str, job_try: int, outcome: str) -> None:
    metrics.JOBS.labels(name, outcome).inc()
    log.info("job_finished", job=name, job_try=job_try, outcome=outcome)


def instrumented(name: str, job: Job, *, lease_seconds: float | None = None) -> Job:
    """``job`` under a lease (``lease_seconds``, else JOB_LEASE_SECONDS), counted in
    ``bbingest_jobs_total`` and timed in ``bbingest_job_duration_seconds``."""

    @functools.wraps(job)
    async def run(ctx: JobContext, *args: Any, **kwargs: Any) -> dict[str, Any]:
        started = time.monotonic()
        services: Services = ctx["services"]
        try:
            seconds = lease_seconds or services.settings.job_lease_seconds
            async with lease(ctx["redis"], ctx["job_id"], seconds):
                result = await job(ctx, *args, **kwargs)
        except BaseException as exc:
            retry = Attempt.of(ctx).retry_for_outage(exc)
            outcome = _outcome(retry or exc)
            _finished(name, ctx["job_try"], outcome)
            if outcome != "retry" and isinstance(exc, Exception):
                await _remember(ctx, name, outcome, exc)
            if retry is not None:
                raise retry from exc
            raise
        finally:
            metrics.JOB_DURATION.labels(name).observe(time.monotonic() - started)
        _finished(name, ctx["job_try"], str(result.get("status", "done")))
        return result

    return run
