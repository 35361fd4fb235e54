"""``decide(exc)``: the one decision table, for any exception (``worker.errors`` draws it)."""

from __future__ import annotations

from worker import errors
from worker.errors import Decision
from worker.outages import unavailable


def decide(error: BaseException) -> Decision:
    """What a job does after ``error``: the decision of its class in the tree; for an
    exception of a driver or a library, RETRY_SOON when it stands for an outage of our own
    Postgres or Redis (:func:`worker.outages.unavailable`), else GIVE_UP (a bug)."""
    if isinstance(error, errors.IngestError):
        return error.decision
    outage = unavailable(error)
    return Decision.GIVE_UP if outage is None else outage.decision
