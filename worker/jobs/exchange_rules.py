"""The code exchange's pure decisions: a code's age and life, when to retry, why it failed,
and the grant a token response makes (no I/O; :mod:`worker.jobs.exchange` applies them)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from worker import errors
from worker.apps import App
from worker.bluebutton import oauth
from worker.constants import JOB_MAX_TRIES
from worker.jobs.payloads import ConnectJob, code_fingerprint
from worker.runtime.job_retry import job_retry_delay
from worker.store.grants import Grant
from worker.store.tokens import Tokens

# A grant without access_grant_expiration lapses 13 months after authorization.
_DEFAULT_GRANT_DAYS = 396
EXPIRED: Final = "the authorization code expired before it could be exchanged: authorize again"
LOST_IN_FLIGHT: Final = (
    "the code exchange was lost in flight (its worker stopped while BB2 answered): authorize again"
)
# A retry needs at least this much of the code's life left to be worth queueing.
_MIN_LIFE_FOR_RETRY: Final = 1.0


@dataclass(frozen=True)
class Exchanged:
    """What a code exchange left: whether the connection now holds this code's tokens (its
    first sync follows), and the connection's status, so that nobody reads the row again."""

    holds_tokens: bool
    status: str


def ended(status: str) -> Exchanged:
    """An exchange that left the connection without this code's tokens, in ``status``."""
    return Exchanged(holds_tokens=False, status=status)


def arrival_of(received_at: float | None, enqueued_at: datetime | None, now: float) -> float:
    """When the code's event arrived (Unix seconds): the intake's receipt, else the job's
    enqueue time (arq), else now."""
    if received_at is not None:
        return received_at
    return enqueued_at.timestamp() if enqueued_at is not None else now


def retry_delay(retry_after: float | None, job_try: int, life_left: float) -> float | None:
    """Seconds until a failed exchange (BB2 could not answer) is tried again, never past
    the code's life; None when no try or too little life is left."""
    if job_try >= JOB_MAX_TRIES or life_left < _MIN_LIFE_FOR_RETRY:
        return None
    return min(job_retry_delay(job_try, retry_after), life_left - _MIN_LIFE_FOR_RETRY)


def refusal_reason(error: errors.IngestError, sent_before: bool) -> str:
    """Why the code exchange failed, for ``last_error``: a code refused after an earlier run
    had sent it was spent by that run, whose tokens died with it."""
    if isinstance(error, errors.AuthorizationFailed) and sent_before:
        return LOST_IN_FLIGHT
    return str(error)


def grant_from(app: App, tokens: oauth.TokenSet, code: str, now: datetime) -> Grant:
    """The connection's new grant from a token response of ``app``'s client."""
    return Grant(
        app=app.name,
        client_id=app.client_id,
        environment=app.environment,
        tokens=Tokens.issued(tokens),
        patient_id=tokens.patient_id,
        scopes=tuple(sorted(tokens.scopes)),
        consent_expires_at=tokens.grant_expires_at or now + timedelta(days=_DEFAULT_GRANT_DAYS),
        code_sha256=code_fingerprint(code),
    )


@dataclass(frozen=True)
class Code:
    """One code's exchange while it runs."""

    job: ConnectJob
    fingerprint: str
    arrival: float
    lifetime: float

    def age(self) -> float:
        return time.time() - self.arrival

    def life_left(self) -> float:
        return self.arrival + self.lifetime - time.time()
