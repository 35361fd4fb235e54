"""Which connections a caller reaches: pure decisions, on what the database says of the
connection an event or a read names."""

from __future__ import annotations

from dataclasses import dataclass

from worker.intake.callers import Caller
from worker.jobs.payloads import ConnectJob, JobPayload


@dataclass(frozen=True)
class Owner:
    """What decides access to a stored connection: its app and status."""

    app: str
    status: str


@dataclass(frozen=True)
class Refusal:
    """An answer refusing a request: HTTP status and message."""

    status: int
    message: str


UNKNOWN = Refusal(404, "unknown connection")


def may_read(caller: Caller, owner: Owner | None) -> Refusal | None:
    """A caller reads only its apps' connections; another app's is answered as absent."""
    if owner is None or not caller.may_reach(owner.app):
        return UNKNOWN
    return None


def may_send(caller: Caller, job: JobPayload, owner: Owner | None) -> Refusal | None:
    """Whether ``caller`` may queue ``job`` for the connection ``owner`` describes (None:
    not stored yet).

    Another app's connection is answered as absent (404), so a caller learns nothing of it.
    A caller bound to apps cannot unlink or resync a connection nobody stored (it cannot be
    shown to be its own); the all-apps key keeps the old behaviour (the job finds nothing).
    A connect names its app, which must be the caller's, and cannot move a live connection
    to another app: it must be unlinked first (the patient is checked once the code is
    exchanged, by store.grants.save_grant).
    """
    if owner is not None and not caller.may_reach(owner.app):
        return UNKNOWN
    if not isinstance(job, ConnectJob):
        return UNKNOWN if owner is None and caller.apps is not None else None
    if not caller.may_reach(job.app):
        return Refusal(403, "this key may not connect connections of that app")
    if owner is not None and owner.status != "revoked" and owner.app != job.app:
        return Refusal(409, "the connection belongs to another app: unlink it first")
    return None
