"""How to split a large EOB search so that CMS's backend spends least time on it.

FACTS.md "Errors and limits": the backend builds a beneficiary's whole matching result for
every page and then slices the page out, so a page costs about ``a + b·m`` for ``m``
matching claims, and paging through ``n`` claims ``p`` at a time costs ``(n/p)·(a + b·n)``:
quadratic in ``n``. Page size does not help; narrower searches do (``type=``,
``service-date``, ``_lastUpdated``; FACTS "FHIR searches"). Splitting by ``type=`` helps
little for the beneficiaries it matters for, whose claims are mostly Part D; splitting by
service date into ``k`` ranges of about ``n/k`` claims costs ``k·(a + b·n/k) = a·k + b·n``
once each range fits in one page: linear.

Pure decisions only: given what the first page of the unsplit search told (its ``total``
and its claims' service dates), which searches to run. The engine runs them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Final

# The backend's cost per page and per matching claim (FACTS.md, "Errors and limits": each
# page costs about as much as all matching claims), in the same unit: only their ratio
# matters to the plan. With 20 ms a page and 0.5 ms a claim, one page is worth 40 claims.
PAGE_COST: Final = 20.0
CLAIM_COST: Final = 0.5
# Ranges hold n/k claims on average, but claims are not spread evenly over time: plan as if
# each held this much more, so that few ranges need a second page.
HEADROOM: Final = 1.5


@dataclass(frozen=True)
class DateRange:
    """One search by ``service-date``: from ``start`` (inclusive) to ``end`` (exclusive);
    None: unbounded on that side."""

    start: date | None
    end: date | None

    def params(self) -> list[tuple[str, str]]:
        """The ``service-date`` query parameters of this range. BB2 passes ``service-date``
        on repeated (``getlist``) with any of ``lt|le|gt|ge`` (a bad operator: 400):
        apps/fhir/bluebutton/views/search.py:152-159, 181-184."""
        bounds = []
        if self.start is not None:
            bounds.append(("service-date", f"ge{self.start.isoformat()}"))
        if self.end is not None:
            bounds.append(("service-date", f"lt{self.end.isoformat()}"))
        return bounds


def search_cost(matching: int, page_size: int) -> float:
    """What paging through one search of ``matching`` claims costs the backend."""
    pages = max(1, math.ceil(matching / page_size))
    return pages * (PAGE_COST + CLAIM_COST * matching)


def split_cost(total: int, ranges: int, page_size: int) -> float:
    """The cost of ``ranges`` service-date searches sharing ``total`` claims (with HEADROOM)."""
    each = math.ceil(total * HEADROOM / ranges)
    pages = max(1, math.ceil(each / page_size))
    return ranges * pages * (PAGE_COST + CLAIM_COST * total / ranges)


def best_range_count(total: int, page_size: int) -> int:
    """How many service-date ranges make the cheapest plan (1: do not split)."""
    candidates = range(1, max(1, math.ceil(2 * total * HEADROOM / page_size)) + 1)
    return min(candidates, key=lambda k: (split_cost(total, k, page_size), k))


def plan_ranges(total: int, first: date, last: date, page_size: int) -> list[DateRange]:
    """The service-date searches that cover every claim at least backend cost.

    ``first`` and ``last`` are the earliest and latest service dates seen (say, on the first
    page of the unsplit search); the outer ranges are open so that claims outside them are
    still found. One unbounded range when splitting does not pay.
    """
    days = (last - first).days + 1
    count = min(best_range_count(total, page_size), days)
    if count <= 1:
        return [DateRange(None, None)]
    cuts = [first + timedelta(days=days * i // count) for i in range(1, count)]
    starts: list[date | None] = [None, *cuts]
    ends: list[date | None] = [*cuts, None]
    return [DateRange(start, end) for start, end in zip(starts, ends, strict=True)]


def service_span(eobs: Iterable[Mapping[str, Any]]) -> tuple[date, date] | None:
    """The earliest and latest service end date of these EOBs (``billablePeriod.end``, the
    date ``service-date`` searches match: BFD's "service completion date", its RFC
    0007-service-date-filter; BB2 only passes the parameter on), or None when none has one."""
    days = [
        date.fromisoformat(str(end)[:10])
        for eob in eobs
        if (end := eob.get("billablePeriod", {}).get("end"))
    ]
    return (min(days), max(days)) if days else None
