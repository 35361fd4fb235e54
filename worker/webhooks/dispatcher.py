"""The webhook dispatcher of a worker replica (issue 15), beside its lane workers.

It leases due chain heads (worker.store.deliveries) with ``FOR UPDATE SKIP LOCKED``, so
several replicas share the work, and sends each in a task of its own: at most
WEBHOOK_CONCURRENCY at once and WEBHOOK_ENDPOINT_CONCURRENCY per endpoint, on an HTTP client
and a small Postgres pool of its own, so a slow or dead receiver never holds a job's
connection, a BB2 socket or a budget slot. A sender that delivered goes on with the next
event of the same chain (in order, without another claim), up to CHAIN_LIMIT, then yields
its slot. It wakes on ``LISTEN bbingest_events`` and polls every POLL_SECONDS besides (for
retries that come due, and if the listening connection is lost)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Final

import asyncpg
import httpx
import structlog

from worker import metrics
from worker.crypto import TokenCipher
from worker.settings import Settings
from worker.store import deliveries
from worker.store.db import create_pool
from worker.store.deliveries import Claimed
from worker.store.delivery_admin import backlog
from worker.store.outbox import NOTIFY_CHANNEL
from worker.webhooks.schedule import Schedule
from worker.webhooks.sender import TIMEOUT_SECONDS, Outcome, client, deliver

log = structlog.get_logger(__name__)

POLL_SECONDS: Final = 1.0
# Past the send's timeout: a lease outlives every send of a sender that is still alive.
LEASE: Final = timedelta(seconds=6 * TIMEOUT_SECONDS)
CHAIN_LIMIT: Final = 50
BACKLOG_EVERY_SECONDS: Final = 15.0
# Claims and outcomes are short transactions; no connection is held across a send.
DISPATCHER_POOL: Final = 4
_DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


class Dispatcher:
    """Sends the due webhook deliveries until cancelled."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        cipher: TokenCipher,
        http: httpx.AsyncClient,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._cipher = cipher
        self._http = http
        self._rng = rng or random.SystemRandom()
        self._schedule = Schedule.from_settings(settings)
        self._wake = asyncio.Event()
        self._senders: set[asyncio.Task[None]] = set()
        self._per_endpoint: Counter[int] = Counter()
        self._apps_seen: set[str] = set()

    async def run(self) -> None:
        """Claim and send until cancelled; Postgres being away is waited out, not fatal."""
        listener = asyncio.create_task(self._listen())
        gauges = asyncio.create_task(self._watch_backlog())
        try:
            while True:
                try:
                    await self._fill()
                except _DB_ERRORS as exc:
                    log.warning("webhook_claim_failed", error=type(exc).__name__)
                self._wake.clear()
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
        finally:
            listener.cancel()
            gauges.cancel()
            for task in self._senders:
                task.cancel()
            await asyncio.gather(listener, gauges, *self._senders, return_exceptions=True)

    async def _fill(self) -> None:
        """Claim as many due heads as there are free slots, endpoint by endpoint."""
        per_endpoint = self._settings.webhook_endpoint_concurrency
        while (free := self._settings.webhook_concurrency - len(self._senders)) > 0:
            full = [e for e, n in self._per_endpoint.items() if n >= per_endpoint]
            async with self._pool.acquire() as conn:
                claimed = await deliveries.claim(conn, free, full=full, lease=LEASE)
            over: list[Claimed] = []
            for item in claimed:
                if self._per_endpoint[item.endpoint_id] >= per_endpoint:
                    over.append(item)  # its endpoint filled up in this batch
                else:
                    self._start(item)
            if over:
                async with self._pool.acquire() as conn:
                    await deliveries.release(conn, over)
            elif len(claimed) < free:
                return  # nothing else is due

    def _start(self, claimed: Claimed) -> None:
        self._per_endpoint[claimed.endpoint_id] += 1
        task = asyncio.create_task(self._send_chain(claimed))
        self._senders.add(task)
        task.add_done_callback(lambda done: self._finished(done, claimed.endpoint_id))

    def _finished(self, task: asyncio.Task[None], endpoint_id: int) -> None:
        self._senders.discard(task)
        self._per_endpoint[endpoint_id] -= 1
        if self._per_endpoint[endpoint_id] <= 0:
            del self._per_endpoint[endpoint_id]
        self._wake.set()  # a slot is free

    async def _send_chain(self, claimed: Claimed | None) -> None:
        """Send ``claimed``, then the next events of its chain while they are delivered."""
        sent = 0
        while claimed is not None and sent < CHAIN_LIMIT:
            now = datetime.now(UTC)
            outcome = await deliver(self._http, self._cipher, claimed.secrets, claimed.event, now)
            sent += 1
            try:
                claimed = await self._record(claimed, outcome)
            except _DB_ERRORS as exc:
                # Its lease runs out and it is sent again: a duplicate with the same id.
                log.warning("webhook_outcome_not_recorded", error=type(exc).__name__)
                return
        if claimed is not None:
            # Hand the chain back to the claims: its lease ends now.
            try:
                async with self._pool.acquire() as conn:
                    await deliveries.release(conn, [claimed])
            except _DB_ERRORS as exc:
                log.warning("webhook_release_failed", error=type(exc).__name__)

    async def _record(self, claimed: Claimed, outcome: Outcome) -> Claimed | None:
        """Store ``outcome``; the chain's next due delivery, leased, after a success."""
        app = claimed.event.app
        async with self._pool.acquire() as conn:
            if outcome.ok:
                assert outcome.status is not None
                metrics.WEBHOOK_DELIVERIES.labels(app, "delivered").inc()
                return await deliveries.delivered(conn, claimed, outcome.status, lease=LEASE)
            now = datetime.now(UTC)
            # The give-up clock starts at the first attempt: a row that waited behind its
            # connection's earlier events still gets its own days of retries.
            since = claimed.pending_since if claimed.attempts else now
            retry_at = self._schedule.next_attempt(claimed.attempts + 1, since, now, self._rng)
            error = outcome.error or "failed"
            await deliveries.failed(
                conn, claimed, status=outcome.status, error=error, retry_at=retry_at, since=since
            )
        outcome_name = "failed" if retry_at is not None else "dead_lettered"
        metrics.WEBHOOK_DELIVERIES.labels(app, outcome_name).inc()
        log.info(
            "webhook_" + outcome_name,
            app=app,
            endpoint_id=claimed.endpoint_id,
            event_id=str(claimed.event.event_id),
            attempts=claimed.attempts + 1,
            status=outcome.status,
            error=error,
        )
        return None

    async def _listen(self) -> None:
        """Wake on every committed event; reconnect after a lost connection."""
        while True:
            try:
                await self._listen_once()
            except _DB_ERRORS as exc:
                log.warning("webhook_listen_failed", error=type(exc).__name__)
            await asyncio.sleep(POLL_SECONDS)

    async def _listen_once(self) -> None:
        """Listen on one connection until it is lost."""
        conn = await asyncpg.connect(self._settings.database_url)
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _: lost.set())
        try:
            await conn.add_listener(NOTIFY_CHANNEL, lambda *_: self._wake.set())
            await lost.wait()
        finally:
            await conn.close()

    async def _watch_backlog(self) -> None:
        """Refresh the backlog gauges now and then (the query scans the pending rows)."""
        while True:
            try:
                async with self._pool.acquire() as conn:
                    rows = await backlog(conn)
                seen = {row.app: row for row in rows}
                self._apps_seen |= set(seen)
                for app in self._apps_seen:
                    row = seen.get(app)
                    metrics.WEBHOOK_BACKLOG.labels(app).set(row.pending if row else 0)
                    metrics.WEBHOOK_OLDEST_UNDELIVERED.labels(app).set(
                        row.oldest_seconds if row else 0
                    )
            except _DB_ERRORS as exc:
                log.warning("webhook_backlog_failed", error=type(exc).__name__)
            await asyncio.sleep(BACKLOG_EVERY_SECONDS)


@asynccontextmanager
async def dispatching(settings: Settings, cipher: TokenCipher) -> AsyncIterator[Dispatcher]:
    """Run a dispatcher, with its own Postgres pool and HTTP client, while inside."""
    pool = await create_pool(settings.database_url, max_size=DISPATCHER_POOL)
    http = client(settings.webhook_concurrency)
    dispatcher = Dispatcher(settings, pool, cipher, http)
    task = asyncio.create_task(dispatcher.run())
    try:
        yield dispatcher
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await http.aclose()
        await pool.close()
