"""Lanes: where a job waits and how its requests rank in the app's budget, as one value.

arq has no priorities (``shared/ENGINEERING-NOTES.md``): a lane is a queue of its own,
served by a worker loop of its own on every replica, and every BB2 request a job of that
lane sends takes its budget slot at the lane's priority (``worker.bluebutton.budget``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from worker.bluebutton.app_clients import Priority
from worker.constants import QUEUE_BULK, QUEUE_EXCHANGE, QUEUE_INTERACTIVE


@dataclass(frozen=True)
class Lane:
    """A queue and the budget priority of the requests its jobs send."""

    queue: str
    priority: Priority


# Code exchanges: a code dies 60 s after the consent (FACTS.md), so they go first.
EXCHANGE: Final = Lane(QUEUE_EXCHANGE, "exchange")
# A person waits (connect, first syncs, unlink). arq's default queue, so upstreams that
# enqueue with arq's defaults land here.
INTERACTIVE: Final = Lane(QUEUE_INTERACTIVE, "interactive")
# Nobody waits (resync, the nightly run's purges and owed revocations): yields to the rest.
BULK: Final = Lane(QUEUE_BULK, "bulk")

LANES: Final = (EXCHANGE, INTERACTIVE, BULK)
