"""Job-level retry: when a job comes back (arq ``Retry``), with the tries a job has
(JOB_MAX_TRIES). The one job-retry policy, beside the hook jobs meet failures through
(:mod:`worker.runtime.failures`); request-level retry is :mod:`worker.bluebutton.retry`.

Every retried job resumes where it stopped: its pages and cursor are committed together.
"""

from __future__ import annotations

import structlog
from arq import Retry
from arq.constants import retry_key_prefix
from redis.asyncio import Redis

from worker import errors
from worker.constants import JOB_MAX_TRIES, OUTAGE_RETRY_BASE_SECONDS, OUTAGE_RETRY_CAP_SECONDS
from worker.metrics import DECRYPT_KEY_MISSING
from worker.outages import unavailable

log = structlog.get_logger(__name__)


def job_retry_delay(
    job_try: int, retry_after: float | None, cap: float = 600.0, base: float = 15.0
) -> float:
    """Seconds before arq runs a job again after its in-job retries ran out.

    Grows ``base`` (15 s), twice that, four times ... up to ``cap``, and never sooner than
    the server asked.
    """
    delay = min(cap, base * 2.0 ** max(0, job_try - 1))
    return max(delay, retry_after or 0.0)


def outage_retry_delay(job_try: int) -> float:
    """Seconds before a job that met an outage runs again: 2, 4, 8 ... 120 (a restart takes
    seconds; a longer outage should not spend the tries of every job at once)."""
    return job_retry_delay(
        job_try, None, cap=OUTAGE_RETRY_CAP_SECONDS, base=OUTAGE_RETRY_BASE_SECONDS
    )


def retry_later(error: errors.RetryableError, job_try: int) -> Retry | None:
    """A Retry for a job whose BB2 request failed in a way that may pass (growing delays,
    never sooner than BB2 asked); None on the last try."""
    if job_try >= JOB_MAX_TRIES:
        return None
    return Retry(defer=job_retry_delay(job_try, error.retry_after))


def retry_for_outage(error: BaseException, job_try: int) -> Retry | None:
    """A Retry for a job that met an outage of Postgres or Redis while it has tries left.

    Its pages and cursor are committed together, so the next try resumes where it stopped.
    """
    if not isinstance(error, Exception) or job_try >= JOB_MAX_TRIES:
        return None
    outage = unavailable(error)
    if outage is None:
        return None
    log.warning("job_deferred", reason=str(outage), job_try=job_try)
    return Retry(defer=outage_retry_delay(job_try))


def key_missing_retry(error: errors.KeyMissing, job_try: int) -> Retry:
    """A Retry for a job whose stored value is sealed under a key this replica lacks, with an
    alert (log and ``bbingest_decrypt_key_missing_total``). Always a retry, never a final
    error: another replica may hold the key, or the deployment gets fixed; when arq's tries
    run out the job ends failed with the connection's status untouched."""
    DECRYPT_KEY_MISSING.labels(key_id=error.key_id).inc()
    log.error("decrypt_key_missing", key_id=error.key_id, job_try=job_try)
    return Retry(defer=outage_retry_delay(job_try))


async def give_back_try(redis: Redis, job_id: str) -> None:
    """Make the try that is ending free: arq counts a job's tries in its retry key, raised
    as each try starts, so a job that only waits (for an app CMS holds inactive) keeps its
    tries for real failures however long the wait lasts."""
    await redis.decr(retry_key_prefix + job_id)
