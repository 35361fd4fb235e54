"""Around every job: its metrics (duration and outcome, whatever it returns or raises) and
the short lease that lets another replica take it over after a crash."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Coroutine
from typing import Any

from arq import Retry

from worker import metrics
from worker.errors import InvalidJob
from worker.jobs.lease import lease
from worker.jobs.services import Services

Job = Callable[..., Coroutine[Any, Any, dict[str, Any]]]


def _outcome(error: BaseException) -> str:
    if isinstance(error, Retry):
        return "retry"
    return "invalid" if isinstance(error, InvalidJob) else "crashed"


def instrumented(name: str, job: Job) -> Job:
    """``job`` under a lease, counted in ``bbingest_jobs_total`` and timed in
    ``bbingest_job_duration_seconds``."""

    @functools.wraps(job)
    async def run(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        started = time.monotonic()
        services: Services = ctx["services"]
        try:
            async with lease(ctx["redis"], ctx["job_id"], services.settings.job_lease_seconds):
                result = await job(ctx, *args, **kwargs)
        except BaseException as exc:
            metrics.JOBS.labels(name, _outcome(exc)).inc()
            raise
        finally:
            metrics.JOB_DURATION.labels(name).observe(time.monotonic() - started)
        metrics.JOBS.labels(name, str(result.get("status", "done"))).inc()
        return result

    return run
