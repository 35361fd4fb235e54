"""The sync model: what a run is asked to do (plan), where it stands (cursor), the run itself
and a connection's history of runs. Pure types: ``worker.store.sync_runs`` stores them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

RunKind = Literal["connect", "resync"]
Mode = Literal["full", "incremental"]


@dataclass(frozen=True)
class Plan:
    """A full pass (everything, and deletions found), or the changes after ``since``."""

    mode: Mode
    since: datetime | None = None


FULL = Plan("full")


# The extra query parameters of one narrower search, as (name, value) pairs.
Params = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Split:
    """A resource type read by narrower searches (a large beneficiary's EOBs): every search
    planned, and the one the cursor is in (``at``, an index into ``searches``)."""

    searches: tuple[Params, ...]
    at: int = 0


@dataclass(frozen=True)
class Cursor:
    """Where a sync stands: a resource type and its next page (None: its first page); with
    ``split``, the page is of the split's current search."""

    resource_type: str
    url: str | None
    split: Split | None = None


@dataclass(frozen=True)
class Run:
    """A sync run in progress; ``cursor`` is None when nothing was stored yet."""

    run_id: int
    plan: Plan
    cursor: Cursor | None


@dataclass(frozen=True)
class History:
    """When the connection's last successful syncs started."""

    last_success: datetime | None
    last_full: datetime | None
