"""Each job declared once: from these specs the worker builds its lanes, ``make schemas``
writes the payload schemas, the intake finds the job an event queues, and ``bbingest
enqueue`` gets its subcommands (``worker.enqueue_cli``).

A job's name and home lane belong to its payload model (an enqueuer needs nothing else);
the spec adds what running it takes. ``also_in`` names the other lanes a job may be queued
in: nightly unlinks wait in the bulk lane, and their requests then take bulk priority.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from worker.constants import (
    EXCHANGE_LEASE_SECONDS,
    EXCHANGE_TIMEOUT_SECONDS,
    JOB_MAX_TRIES,
    JOB_TIMEOUT_SECONDS,
)
from worker.jobs.connect import connect
from worker.jobs.exchange import exchange
from worker.jobs.first_sync import first_sync
from worker.jobs.payloads import (
    ConnectJob,
    ExchangeJob,
    FirstSyncJob,
    JobPayload,
    ResyncJob,
    UnlinkJob,
)
from worker.jobs.resync import resync
from worker.jobs.unlink import unlink
from worker.runtime import lanes
from worker.runtime.instrument import Job
from worker.runtime.lanes import Lane


@dataclass(frozen=True)
class JobSpec:
    """One job: its payload, the function arq calls, how often and how long it may run,
    and the lease a replica holds while it runs (``worker.runtime.lease``). Every job keeps no
    result in Redis (JOB_KEEP_RESULT_SECONDS: the arguments hold codes and verifiers)."""

    payload: type[JobPayload]
    function: Job
    tries: int = JOB_MAX_TRIES
    timeout: float = JOB_TIMEOUT_SECONDS
    lease: float | None = None  # None: the JOB_LEASE_SECONDS setting
    also_in: tuple[Lane, ...] = ()
    event: str | None = None  # the intake's event kind (and CLI subcommand) queueing it
    summary: str = ""  # what the job does, for ``bbingest enqueue --help``

    @property
    def name(self) -> str:
        """The arq function name (the payload's)."""
        return self.payload.job_name

    @property
    def lanes(self) -> tuple[Lane, ...]:
        """Every lane whose worker runs this job, its home lane first."""
        return (self.payload.lane, *self.also_in)


SPECS: Final = (
    # A connect event queues the code exchange; its first sync follows as a job of its own.
    JobSpec(
        ExchangeJob,
        exchange,
        timeout=EXCHANGE_TIMEOUT_SECONDS,
        lease=EXCHANGE_LEASE_SECONDS,
        event="connect",
        summary="exchange a code (within its minute) and fetch everything",
    ),
    # The contract's connect job (enqueued by upstreams with arq): exchange, then sync.
    JobSpec(ConnectJob, connect),
    JobSpec(FirstSyncJob, first_sync),
    JobSpec(
        UnlinkJob,
        unlink,
        also_in=(lanes.BULK,),
        event="unlink",
        summary="revoke at CMS and delete everything stored",
    ),
    JobSpec(
        ResyncJob,
        resync,
        event="resync",
        summary="fetch what changed (one connection, or --all)",
    ),
)


def specs_in(lane: Lane) -> list[JobSpec]:
    """The jobs the worker of ``lane`` runs."""
    return [spec for spec in SPECS if lane in spec.lanes]
