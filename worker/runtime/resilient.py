"""An arq worker that rides out a Redis restart instead of exiting.

arq 0.28 lets any Redis error escape its poll loop, which ends ``Worker.main`` and with it
the replica. This worker waits for Redis instead (for up to ``REDIS_OUTAGE_SECONDS``) and
carries on. What it cannot tell Redis meanwhile stays as it was: a job whose outcome could
not be recorded is still queued, and runs again (resuming from its cursor) once its lease
lapses; with AOF persistence the queue itself survives the restart.

A job is claimed for a lease too, not for arq's longest job timeout plus ten seconds: arq marks
the job in progress, then reads it, and a Redis restart between the two kills that run before
the job (and its renewed lease, ``worker.runtime.lease``) ever starts, leaving the job marked
for half an hour (``make chaos``'s Redis restart caught one).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from arq import Worker

from worker.outages import RedisOutage, is_redis_outage

log = structlog.get_logger(__name__)


class ResilientWorker(Worker):
    """arq's ``Worker``, waiting out Redis outages of up to ``redis_patience`` seconds."""

    def __init__(
        self, *args: Any, redis_patience: float, claim_seconds: float, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.outage = RedisOutage(redis_patience)
        # What arq's start_jobs gives a claimed job's in-progress key; the job's lease takes
        # over as soon as it runs.
        self.in_progress_timeout_s = claim_seconds

    async def main(self) -> None:
        """Poll until stopped (or, in burst mode, done); start again after a Redis outage."""
        while True:
            try:
                await super().main()
            except Exception as exc:
                if not is_redis_outage(exc):
                    raise
                # Raises RedisUnavailable once Redis has been away longer than the patience.
                pause = self.outage.failed(time.monotonic())
                log.warning(
                    "redis_unavailable",
                    queue=self.queue_name,
                    error=type(exc).__name__,
                    retry_in=round(pause, 2),
                )
                await asyncio.sleep(pause)
            else:
                return

    async def _poll_iteration(self) -> None:
        await super()._poll_iteration()
        lasted = self.outage.recovered(time.monotonic())
        if lasted is not None:
            log.info("redis_reconnected", queue=self.queue_name, outage_seconds=round(lasted, 1))

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """arq's, giving back the job slot it took before Redis failed to mark the job."""
        try:
            await super().start_jobs(job_ids)
        except Exception as exc:
            if is_redis_outage(exc):
                self._release_sem_dec_counter_on_complete()
            raise

    async def run_job(self, job_id: str, score: int) -> None:
        """arq's, with an outcome Redis could not record left for the lease to settle."""
        try:
            await super().run_job(job_id, score)
        except Exception as exc:
            if not is_redis_outage(exc):
                raise
            log.warning("job_outcome_unrecorded", queue=self.queue_name, error=type(exc).__name__)
