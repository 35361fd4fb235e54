"""A job arq claims but never starts (Redis failed between marking it and reading it) is
free again after a lease, not after arq's longest job timeout (worker.runtime.resilient)."""

from __future__ import annotations

import asyncpg
import pytest
from arq.constants import in_progress_key_prefix
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.integration.conftest import Start
from worker.constants import QUEUE_BULK
from worker.jobs.payloads import ResyncJob
from worker.jobs.queue import enqueue, open_queue
from worker.jobs.worker import build_worker


async def test_a_claimed_job_that_never_started_is_held_for_a_lease_only(
    pool: asyncpg.Pool, redis: Redis, start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, settings, services = await start(JOB_LEASE_SECONDS="3")
    queue = await open_queue(settings.redis_url)
    try:
        job_id = await enqueue(queue, ResyncJob(connection_id="nobody"))
        assert job_id is not None
        replica = build_worker(settings, services, QUEUE_BULK, queue, burst=True, max_jobs=1)

        async def redis_gone(job_id: str, score: int) -> None:
            raise RedisConnectionError("Redis restarted while the job was read")

        monkeypatch.setattr(replica, "run_job", redis_gone)
        await replica.start_jobs([job_id.encode()])
        for task in list(replica.tasks.values()):
            with pytest.raises(RedisConnectionError):
                await task
        held = await redis.pttl(in_progress_key_prefix + job_id)
        assert 0 < held <= 3000  # arq's own claim: the 30-minute job timeout plus 10 s
    finally:
        await queue.aclose()
