"""Pure planning of a sync: full or incremental, what is left to fetch, where to resume."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Final

from worker.bluebutton.fhir import ResourceQuery
from worker.sync.model import FULL, Cursor, History, Plan, Split

# The cursor of a run whose every resource type is stored.
DONE: Final = "*"
# BB2's documentation: never ask _lastUpdated for dates before this.
LAST_UPDATED_FLOOR: Final = datetime(2020, 2, 12, tzinfo=UTC)


@dataclass(frozen=True)
class Step:
    """A resource type still to fetch, from ``start_url`` (None: its first page); with
    ``split``, by the split's searches from its current one (``start_url`` is then a page of
    that search)."""

    query: ResourceQuery
    start_url: str | None
    split: Split | None = None


def choose_plan(
    now: datetime, history: History, *, full_every: timedelta, margin: timedelta
) -> Plan:
    """A full pass when none succeeded within ``full_every``; else the changes since the
    start of the last successful sync, less a safety ``margin`` (never before BB2's floor)."""
    if history.last_success is None or history.last_full is None:
        return FULL
    if now - history.last_full >= full_every:
        return FULL
    return Plan("incremental", max(history.last_success - margin, LAST_UPDATED_FLOOR))


def queries_for(plan: Plan, queries: Sequence[ResourceQuery]) -> list[ResourceQuery]:
    """The queries a plan runs: all of them, or on an incremental pass the searches."""
    return [q for q in queries if plan.mode == "full" or q.search]


def remaining_steps(cursor: Cursor | None, queries: Sequence[ResourceQuery]) -> list[Step]:
    """What is left to fetch after ``cursor`` (None: everything)."""
    if cursor is None:
        return [Step(query, None) for query in queries]
    types = [query.resource_type for query in queries]
    if cursor.resource_type not in types:
        return []
    at = types.index(cursor.resource_type)
    rest = [Step(query, None) for query in queries[at + 1 :]]
    return [Step(queries[at], cursor.url, cursor.split), *rest]


def cursor_after(
    query: ResourceQuery,
    next_url: str | None,
    queries: Sequence[ResourceQuery],
    split: Split | None = None,
) -> Cursor:
    """The cursor once a page of ``query`` (of ``split``'s current search, when split) with
    link ``next_url`` is stored: its next page, the split's next search, or the next type."""
    if next_url is not None:
        return Cursor(query.resource_type, next_url, split)
    if split is not None and split.at + 1 < len(split.searches):
        return Cursor(query.resource_type, None, replace(split, at=split.at + 1))
    types = [q.resource_type for q in queries]
    following = types.index(query.resource_type) + 1
    return Cursor(types[following] if following < len(types) else DONE, None)
