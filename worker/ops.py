"""What an operator and Kubernetes see of a replica: a heartbeat in Redis, gauges, and an
HTTP endpoint with ``/metrics`` (Prometheus), ``/healthz`` (liveness) and ``/readyz``
(readiness: Redis and Postgres answer). ``bbingest health`` reads the same signals."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Final, get_args

import asyncpg
import structlog
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from worker import metrics, pauses
from worker.apps import DEFAULT_APP
from worker.constants import REDIS_PREFIX
from worker.jobs import backlog
from worker.runtime.lanes import LANES
from worker.store import listing
from worker.store.connections import Status

log = structlog.get_logger(__name__)

REPLICA_KEY: Final = REDIS_PREFIX + ":replica:{replica}"
HEARTBEAT_SECONDS: Final = 10.0
# A replica that has not beaten for this long is dead to `bbingest health` and to /healthz.
REPLICA_TTL_SECONDS: Final = 30
PROBE_TIMEOUT_SECONDS: Final = 2.0
CONNECTION_COUNT_SECONDS: Final = 60.0


def _replica_id() -> str:
    """This process, as operators see it: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Heartbeat:
    """When this replica last proved its event loop and its Redis connection work."""

    redis: Redis
    pool: asyncpg.Pool
    replica: str = field(default_factory=_replica_id)
    last_beat: float = field(default=0.0)
    next_count: float = field(default=0.0)
    apps_counted: set[str] = field(default_factory=lambda: {DEFAULT_APP})
    code_lifetime: float = 60.0  # BB_CODE_LIFETIME: older codes no longer count as waiting

    def alive(self) -> bool:
        """Beaten within the TTL: the event loop runs and Redis answers."""
        return time.monotonic() - self.last_beat < REPLICA_TTL_SECONDS

    async def beat(self) -> None:
        """Announce this replica in Redis and refresh the queue, pause and connection gauges."""
        key = REPLICA_KEY.format(replica=self.replica)
        await self.redis.set(key, int(time.time()), ex=REPLICA_TTL_SECONDS)
        for queue in (lane.queue for lane in LANES):  # every lane the workers serve
            metrics.QUEUE_DEPTH.labels(queue).set(await self.redis.zcard(queue))
        # The pause flags are shared: every replica reports them, not only the one that met
        # CMS's refusal (or its end).
        paused = await pauses.paused_since(self.redis)
        self.apps_counted |= set(paused)
        for app in self.apps_counted:
            metrics.APP_PAUSED.labels(app).set(1 if app in paused else 0)
        for app, count in (
            await backlog.waiting(self.redis, time.time(), self.code_lifetime)
        ).items():
            metrics.EXCHANGE_BACKLOG.labels(app).set(count)
        # Liveness is the event loop and Redis: a slow Postgres must not fail the probe.
        self.last_beat = now = time.monotonic()
        if now >= self.next_count:
            # Counting connections scans the table: once a minute, not with every beat.
            self.next_count = now + CONNECTION_COUNT_SECONDS
            async with asyncio.timeout(PROBE_TIMEOUT_SECONDS), self.pool.acquire() as conn:
                counts = await listing.count_by_app_and_status(conn)
            self.apps_counted |= {app for app, _ in counts}
            # A status (or app) nobody has any more reads 0 rather than its last count.
            for app in self.apps_counted:
                for status in get_args(Status):
                    metrics.CONNECTIONS.labels(app, status).set(counts.get((app, status), 0))

    async def run(self) -> None:
        """Beat every HEARTBEAT_SECONDS until cancelled; a failed beat is logged, not fatal."""
        while True:
            try:
                await self.beat()
            except (OSError, asyncpg.PostgresError, RedisError, TimeoutError) as exc:
                log.warning("heartbeat_failed", error=type(exc).__name__)
            await asyncio.sleep(HEARTBEAT_SECONDS)


async def readiness(redis: Redis, pool: asyncpg.Pool) -> dict[str, str]:
    """Each dependency's state: "ok" or the kind of failure."""
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            await redis.ping()
        checks["redis"] = "ok"
    except (OSError, RedisError, TimeoutError) as exc:
        checks["redis"] = type(exc).__name__
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            await pool.fetchval("SELECT 1")
        checks["postgres"] = "ok"
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        checks["postgres"] = type(exc).__name__
    return checks


def probe_app(heartbeat: Heartbeat) -> Starlette:
    """The replica's HTTP endpoint for Prometheus and Kubernetes probes."""

    async def metrics_endpoint(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    async def healthz(_: Request) -> JSONResponse:
        alive = heartbeat.alive()
        return JSONResponse({"alive": alive}, status_code=200 if alive else 503)

    async def readyz(_: Request) -> JSONResponse:
        checks = await readiness(heartbeat.redis, heartbeat.pool)
        ready = all(state == "ok" for state in checks.values())
        return JSONResponse(checks, status_code=200 if ready else 503)

    return Starlette(
        routes=[
            Route("/metrics", metrics_endpoint),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
        ]
    )


@asynccontextmanager
async def operations(heartbeat: Heartbeat, port: int) -> AsyncIterator[None]:
    """Beat, and serve the probe endpoint on ``port`` (0: no endpoint), while inside.

    The first beat runs in the heartbeat's own task, whose failures are logged: a Redis
    that goes away as the replica starts must meet the workers' outage handling, not end
    the replica with a traceback.
    """
    tasks = [asyncio.create_task(heartbeat.run())]
    server = None
    if port:
        config = uvicorn.Config(
            probe_app(heartbeat),
            host="0.0.0.0",  # noqa: S104 - probes and Prometheus reach the pod, not loopback
            port=port,
            log_level="warning",
            lifespan="off",
        )
        server = uvicorn.Server(config)
        tasks.append(asyncio.create_task(server.serve()))
    try:
        yield
    finally:
        if server is not None:
            server.should_exit = True
        tasks[0].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await heartbeat.redis.delete(REPLICA_KEY.format(replica=heartbeat.replica))
        except RedisError as exc:  # stopping because Redis is away: the key lapses itself
            log.warning("replica_key_not_removed", error=type(exc).__name__)


async def live_replicas(redis: Redis) -> list[str]:
    """Replicas that beat within the TTL."""
    prefix = REPLICA_KEY.format(replica="")
    return sorted(
        [key.decode().removeprefix(prefix) async for key in redis.scan_iter(prefix + "*")]
    )
