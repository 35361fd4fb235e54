"""Job-level retry: when a job comes back (arq ``Retry``), with the tries a job has
(JOB_MAX_TRIES). The one job-retry policy, beside the hook jobs meet failures through
(:mod:`worker.runtime.failures`); request-level retry is :mod:`worker.bluebutton.retry`.

Every retried job resumes where it stopped: its pages and cursor are committed together.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from arq import Retry
from arq.constants import retry_key_prefix
from redis.asyncio import Redis

from worker import errors
from worker.constants import JOB_MAX_TRIES, OUTAGE_RETRY_BASE_SECONDS, OUTAGE_RETRY_CAP_SECONDS
from worker.metrics import DECRYPT_KEY_MISSING
from worker.outages import unavailable
from worker.runtime.context import JobContext

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


@dataclass(frozen=True)
class Attempt:
    """One try of a job: arq's count of it (``job_try``, from 1) and arq's job id (None when
    a test calls the job directly). What comes after a failure is decided here."""

    job_try: int
    job_id: str | None = None

    @classmethod
    def of(cls, ctx: JobContext) -> Attempt:
        """The try a job function's ``ctx`` stands for."""
        return cls(ctx["job_try"], ctx.get("job_id"))

    @property
    def last(self) -> bool:
        """Whether no try follows this one (JOB_MAX_TRIES)."""
        return self.job_try >= JOB_MAX_TRIES

    def retry_later(self, error: errors.RetryableError) -> Retry | None:
        """A Retry for a job whose BB2 request failed in a way that may pass (growing
        delays, never sooner than BB2 asked); None on the last try."""
        if self.last:
            return None
        return Retry(defer=job_retry_delay(self.job_try, error.retry_after))

    def retry_for_outage(self, error: BaseException) -> Retry | None:
        """A Retry for a job that met an outage of Postgres or Redis while it has tries
        left. Its pages and cursor are committed together, so the next try resumes where
        it stopped."""
        if not isinstance(error, Exception) or self.last:
            return None
        outage = unavailable(error)
        if outage is None:
            return None
        log.warning("job_deferred", reason=str(outage), job_try=self.job_try)
        return Retry(defer=outage_retry_delay(self.job_try))

    def key_missing(self, error: errors.KeyMissing) -> Retry:
        """A Retry for a job whose stored value is sealed under a key this replica lacks,
        with an alert (log and ``bbingest_decrypt_key_missing_total``). Always a retry,
        never a final error: another replica may hold the key, or the deployment gets
        fixed; when arq's tries run out the job ends failed with the connection's status
        untouched."""
        DECRYPT_KEY_MISSING.labels(key_id=error.key_id).inc()
        log.error("decrypt_key_missing", key_id=error.key_id, job_try=self.job_try)
        return Retry(defer=outage_retry_delay(self.job_try))

    async def give_back(self, redis: Redis) -> None:
        """Make this try free: arq counts a job's tries in its retry key, raised as each
        try starts, so a job that only waits (for an app CMS holds inactive) keeps its
        tries for real failures however long the wait lasts."""
        if self.job_id is not None:
            await redis.decr(retry_key_prefix + self.job_id)
