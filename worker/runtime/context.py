"""What a job function receives from arq as ``ctx``, typed."""

from __future__ import annotations

from datetime import datetime
from typing import Required, TypedDict

from arq.connections import ArqRedis

from worker.runtime.services import Services


class JobContext(TypedDict, total=False):
    """arq's job context: our services (in the lane of the worker that runs the job, see
    ``worker.jobs.worker``), and arq's own keys (absent when a test calls a job directly)."""

    services: Required[Services]
    job_try: Required[int]
    job_id: str
    redis: ArqRedis
    enqueue_time: datetime
