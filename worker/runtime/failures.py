"""The one hook through which a job meets a failure.

A job states what it does per :class:`~worker.errors.Decision` (its own small table of
handlers); :func:`on_failure` asks :func:`worker.decisions.decide` for the failure's decision
and runs that handler. Jobs catch only :class:`~worker.errors.IngestError` (failures of
ours); a failure the job has no handler for is raised again, like every other exception (a
driver's outage, a bug): arq records it (``worker.runtime.instrument``), and an outage of our
own Postgres or Redis comes back soon through the outage retry there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from worker import errors
from worker.decisions import decide
from worker.errors import Decision

T = TypeVar("T")
Handler = Callable[[errors.IngestError], Awaitable[T]]


async def on_failure(error: errors.IngestError, handlers: Mapping[Decision, Handler[T]]) -> T:
    """Run the job's handler for ``decide(error)``; raise ``error`` again when it has none."""
    handler = handlers.get(decide(error))
    if handler is None:
        raise error
    return await handler(error)
