"""Jobs that failed for good, kept for operators (``bbingest failures``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from worker.constants import MAX_ERROR_CHARS
from worker.store.db import Conn

FailureKind = Literal["invalid", "crashed"]


@dataclass(frozen=True)
class Failure:
    """One failed job: what, when, why (never its payload)."""

    at: datetime
    job: str
    job_id: str
    job_try: int
    kind: FailureKind
    reason: str


async def record(
    conn: Conn, job: str, job_id: str, job_try: int, kind: FailureKind, reason: str
) -> None:
    """Remember a job that will not be retried."""
    await conn.execute(
        "INSERT INTO job_failures (job, job_id, job_try, kind, reason) VALUES ($1, $2, $3, $4, $5)",
        job,
        job_id,
        job_try,
        kind,
        reason[:MAX_ERROR_CHARS],
    )


async def latest(conn: Conn, limit: int) -> list[Failure]:
    """The most recent failures, newest first."""
    records = await conn.fetch(
        "SELECT at, job, job_id, job_try, kind, reason FROM job_failures"
        " ORDER BY at DESC, failure_id DESC LIMIT $1",
        limit,
    )
    return [Failure(**dict(record)) for record in records]
