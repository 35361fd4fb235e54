"""arq workers: JSON job serializer (never pickle), one worker loop per lane, shared services.

A replica runs three arq workers in one process, one per queue (arq has no priorities; lanes
are separate queues): the exchange lane (code exchanges, whose codes die within a minute:
their own reserved slots, WORKER_EXCHANGE_CONCURRENCY, and a 5 s lease), the interactive
lane (connect, first syncs, unlink) and the bulk lane (resync, and the nightly run's
unlinks). They share one set of connections to Postgres, Redis and BB2. Beside them runs the
webhook dispatcher (worker.webhooks.dispatcher), on a Postgres pool and HTTP client of its own.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import structlog
from arq import Worker, cron
from arq.connections import ArqRedis
from arq.worker import Function, func

from worker.apps import default_app
from worker.constants import JOB_KEEP_RESULT_SECONDS, JOB_MAX_TRIES, JOB_TIMEOUT_SECONDS
from worker.errors import AppUnavailable
from worker.jobs.nightly import nightly
from worker.jobs.queue import deserialize, open_queue, serialize
from worker.jobs.spec import JobSpec, specs_in
from worker.ops import Heartbeat, operations
from worker.outages import unavailable
from worker.runtime import lanes
from worker.runtime.instrument import instrumented
from worker.runtime.lanes import Lane
from worker.runtime.resilient import ResilientWorker
from worker.runtime.services import Services, close_services, open_services
from worker.settings import Settings
from worker.webhooks.dispatcher import dispatching

log = structlog.get_logger(__name__)


def _function(spec: JobSpec) -> Function:
    return func(
        instrumented(spec.name, spec.function, lease_seconds=spec.lease),
        name=spec.name,
        max_tries=spec.tries,
        timeout=spec.timeout,
    )


# Each lane's arq functions, built from the job specs (worker.jobs.spec).
LANES: dict[str, list[Function]] = {
    lane.queue: [_function(spec) for spec in specs_in(lane)] for lane in lanes.LANES
}
_LANE_OF: dict[str, Lane] = {lane.queue: lane for lane in lanes.LANES}


def build_worker(
    settings: Settings,
    services: Services,
    queue: str,
    redis: ArqRedis,
    *,
    burst: bool,
    max_jobs: int,
) -> Worker:
    """The arq worker of one lane; signals are handled by :func:`run_replica`."""
    # The nightly cron lives in the bulk lane; unique=True fires it on one replica only.
    # Under a lease like every job: its claim lasts a lease, not arq's half hour, so a run
    # that outlasts the lease unrenewed would run twice.
    nightly_cron = cron(
        instrumented("nightly", nightly),
        name="nightly",
        hour={settings.resync_hour_utc},
        minute={0},
        unique=True,
    )
    return ResilientWorker(
        redis_patience=settings.redis_outage_seconds,
        claim_seconds=settings.job_lease_seconds,
        functions=LANES[queue],
        queue_name=queue,
        cron_jobs=[nightly_cron] if queue == lanes.BULK.queue else None,
        redis_pool=redis,
        # A lane's jobs send their requests at its budget priority: a nightly unlink in the
        # bulk lane yields to interactive work like a resync does.
        ctx={"services": services.in_lane(_LANE_OF[queue])},
        handle_signals=False,
        job_completion_wait=round(settings.worker_shutdown_grace),
        burst=burst,
        max_jobs=max_jobs,
        job_timeout=JOB_TIMEOUT_SECONDS,
        keep_result=JOB_KEEP_RESULT_SECONDS,
        max_tries=JOB_MAX_TRIES,
        poll_delay=0.2,
        job_serializer=serialize,
        job_deserializer=deserialize,
        log_results=False,
    )


async def run_replica(
    settings: Settings, *, burst: bool = False, concurrency: int | None = None
) -> None:
    """One replica: every lane until stopped (or, with ``burst``, until the queues are empty).

    ``concurrency`` caps the jobs of the interactive and the bulk lane each (the exchange
    lane has WORKER_EXCHANGE_CONCURRENCY of its own), and the sockets to BB2 of the replica.
    """
    max_jobs = concurrency or settings.worker_concurrency
    exchanges = settings.worker_exchange_concurrency
    # Pages are parsed and hashed in threads; a 1 ms switch interval (5 ms by default) lets
    # the event loop send a granted request promptly while a thread holds the GIL.
    sys.setswitchinterval(0.001)
    services = await open_services(settings, concurrency=2 * max_jobs + exchanges)
    redis = await open_queue(settings.redis_url)  # one Redis pool for both lanes
    await _open_default_app(services)
    workers = _lane_workers(settings, services, redis, burst=burst, max_jobs=max_jobs)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, _stop, workers, signum, stopping)
    log.info("worker_started", concurrency=max_jobs, exchanges=exchanges, burst=burst)
    try:
        heartbeat = Heartbeat(
            services.redis, services.pool, code_lifetime=settings.bb_code_lifetime
        )
        async with (
            operations(heartbeat, settings.metrics_port),
            dispatching(settings, services.cipher),
        ):
            await _run_lanes(workers, redis, burst=burst)
    except asyncio.CancelledError:
        if not stopping.is_set():
            raise
        log.info("worker_stopping", signal="received")
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        for worker in workers:
            await _settle(worker)
        await redis.aclose()
        await close_services(services)
        log.info("worker_stopped")


def _lane_workers(
    settings: Settings, services: Services, redis: ArqRedis, *, burst: bool, max_jobs: int
) -> list[Worker]:
    """One arq worker per lane: ``max_jobs`` each, the exchange lane its own reserved slots."""
    exchanges = settings.worker_exchange_concurrency
    return [
        build_worker(
            settings,
            services,
            queue,
            redis,
            burst=burst,
            max_jobs=exchanges if queue == lanes.EXCHANGE.queue else max_jobs,
        )
        for queue in LANES
    ]


async def _run_lanes(workers: list[Worker], redis: ArqRedis, *, burst: bool) -> None:
    """Every lane until stopped; in burst mode, rounds until every queue is empty, since
    one lane's jobs queue another's (an exchange queues its first sync)."""
    while True:
        await asyncio.gather(*(worker.async_run() for worker in workers))
        if not burst:
            return
        depths = [await redis.zcard(worker.queue_name) for worker in workers]
        if not any(depths):
            return


async def _open_default_app(services: Services) -> None:
    """Open (and warm up) the default app's connection before the first job: a request
    that has to connect first leaves late and crowds the next second at the server. Other
    apps open theirs on first use."""
    try:
        await services.bluebutton(default_app(services.settings))
    except AppUnavailable as exc:
        # Not fatal: a deployment may serve registered apps only (bbingest apps).
        log.warning("default_app_not_configured", reason=str(exc))
    except Exception as exc:
        # The warm-up takes a budget slot in Redis: a Redis (or Postgres) away as the replica
        # starts is met by the workers' outage handling, and the app opens on first use.
        outage = unavailable(exc)
        if outage is None:
            raise
        log.warning("default_app_not_opened", reason=str(outage))


async def _settle(worker: Worker) -> None:
    """Cancel what still runs and let every job finish its bookkeeping (arq re-queues a
    cancelled job) before the connections close. arq's own ``close()`` would cancel the
    jobs a second time, mid-bookkeeping, and re-raise their cancellation."""
    pending = [task for task in worker.tasks.values() if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)


def _stop(workers: list[Worker], signum: int, stopping: asyncio.Event) -> None:
    # Stop taking jobs; running ones get WORKER_SHUTDOWN_GRACE to finish, then are cancelled
    # and left for another replica (their cursor makes the re-run resume).
    stopping.set()
    for worker in workers:
        worker.handle_sig_wait_for_completion(signal.Signals(signum))
