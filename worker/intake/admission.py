"""Admission of connect events: a code is queued only if it can be exchanged in time.

The intake never calls BB2. A connect event becomes an ``exchange`` job stamped with its
arrival (``received_at``: the code's age counts from it), and joins its app's exchange
backlog (:mod:`worker.jobs.backlog`) only while the backlog can still be exchanged within
the code's life at the app's budget; otherwise, and while CMS has made the app inactive,
the event is refused with 503 and ``Retry-After``, so that the upstream can tell the person
at once rather than a minute later.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import asyncpg
from redis.asyncio import Redis

from worker.apps import DEFAULT_APP
from worker.intake.errors import ApiError
from worker.jobs import backlog
from worker.jobs.backlog import AppBudget
from worker.jobs.payloads import ExchangeJob
from worker.settings import Settings
from worker.store import apps


@dataclass(frozen=True)
class ExchangeGate:
    """What admission needs: the code lifetime and the default app's budget."""

    lifetime: float
    default: AppBudget

    @classmethod
    def from_settings(cls, settings: Settings) -> ExchangeGate:
        """The gate of a deployment (the default app is the one the BB_* settings define)."""
        default = AppBudget(DEFAULT_APP, settings.bb_client_id, settings.bb_rate_limit)
        return cls(lifetime=settings.bb_code_lifetime, default=default)

    async def budget(self, pool: asyncpg.Pool, app: str) -> AppBudget | None:
        """The budget of ``app``; None for an app nobody registered (its exchange fails
        with a recorded reason, without spending anything)."""
        if app == DEFAULT_APP:
            return self.default
        async with pool.acquire() as conn:
            found = await apps.budget_of(conn, app)
        return None if found is None else AppBudget(app, *found)

    async def admit(self, redis: Redis, pool: asyncpg.Pool, job: ExchangeJob) -> ExchangeJob:
        """``job`` stamped with its arrival and counted in its app's backlog; an ApiError
        503 with Retry-After when it cannot be exchanged in time."""
        received_at = time.time()
        stamped = job.model_copy(update={"received_at": received_at})
        budget = await self.budget(pool, job.app)
        if budget is None:
            await backlog.enter(redis, job.app, stamped.job_id(), received_at)
            return stamped
        admission = await backlog.admit(redis, budget, stamped.job_id(), received_at, self.lifetime)
        if not admission.admitted:
            headers = {"Retry-After": str(admission.retry_after)}
            raise ApiError.plain(503, f"{admission.reason}; retry later", headers=headers)
        return stamped
