"""Pure planning of a large search's split: which narrower searches read a beneficiary's
EOBs at least backend time.

CMS's backend builds the whole matching result for every page (FACTS.md, Errors and limits),
so under its cost model (:mod:`worker.bluebutton.split`: a page costs 20 ms + 0.5 ms per
matching claim) paging one search through ``n`` claims costs about ``n²/100`` ms. From the
first page of the unsplit search (its ``total``, and a sample of claims whose ids name their
type and whose service dates span the beneficiary's years: EOBs come in claim-id order) the
plan compares the rest of the unsplit search with a split by ``service-date`` ranges, by
``type=``, and by type then dates within the large types, and keeps the cheapest. Below
``SPLIT_FROM`` claims nothing is split: every page is then cheap (under 0.6 s), and a split
spends more requests of the app's budget than the pages it saves.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any, Final
from urllib.parse import urlencode

from worker.bluebutton.split import (
    CLAIM_COST,
    PAGE_COST,
    plan_ranges,
    search_cost,
    service_span,
    split_cost,
)
from worker.sync.model import Params

# Split a search only from this many matching claims on.
SPLIT_FROM: Final = 1000
# BB2's EOB types (FACTS.md, FHIR searches; the ``type`` values BB2 accepts, else 400:
# apps/fhir/bluebutton/views/search.py:128-158); an EOB id is its type, a dash, its claim
# id (FACTS.md). The first page's ``total`` is the searchset Bundle's (FACTS.md).
CLAIM_TYPES: Final = ("carrier", "dme", "hha", "hospice", "inpatient", "outpatient", "pde", "snf")

Plan = tuple[tuple[Params, ...], float]


def plan_split(
    total: int | None, sample: Sequence[Mapping[str, Any]], page_size: int
) -> tuple[Params, ...] | None:
    """The narrower searches that read every claim of a search matching ``total`` at least
    backend cost, given the first page's resources (``sample``); None: keep paging the
    unsplit search (small, or no split is cheaper than its remaining pages)."""
    if total is None or total < SPLIT_FROM or not sample:
        return None
    # The first page is paid whatever follows: compare what is left to spend.
    unsplit = search_cost(total, page_size) - (PAGE_COST + CLAIM_COST * total)
    by_type = _by_type(total, sample, page_size)
    options: list[Plan] = [by_type[0]] if by_type else []
    # A claim without a service date would match no service-date range: only when every
    # sampled claim has one are dates used at all.
    if all(eob.get("billablePeriod", {}).get("end") for eob in sample):
        by_date = _by_date(total, sample, page_size)
        options += ([by_type[1]] if by_type else []) + ([by_date] if by_date else [])
    if not options:
        return None
    searches, cost = min(options, key=lambda o: o[1])
    return searches if cost < unsplit else None


def search_url(first_url: str, params: Params) -> str:
    """The URL of a narrower search: the unsplit search's first page with ``params`` added."""
    return f"{first_url}&{urlencode(params)}" if params else first_url


def _by_date(total: int, sample: Sequence[Mapping[str, Any]], page_size: int) -> Plan | None:
    """Contiguous service-date ranges (outer ones open) of about a page each."""
    span = service_span(sample)
    if span is None:
        return None
    ranges = _date_ranges(total, span, page_size)
    return tuple(ranges), split_cost(total, len(ranges), page_size)


def _date_ranges(total: int, span: tuple[date, date], page_size: int) -> list[Params]:
    return [tuple(r.params()) for r in plan_ranges(total, span[0], span[1], page_size)]


def _by_type(
    total: int, sample: Sequence[Mapping[str, Any]], page_size: int
) -> tuple[Plan, Plan] | None:
    """One search per EOB type; and one per type with the large types split by date too.
    None when a sampled claim's type is unknown (a type search would miss its claims)."""
    types = Counter(str(eob.get("id", "")).partition("-")[0] for eob in sample)
    if not set(types) <= set(CLAIM_TYPES):
        return None
    share = {t: total * types[t] / len(sample) for t in CLAIM_TYPES}
    plain: list[Params] = [(("type", t),) for t in CLAIM_TYPES]
    plain_cost = sum(search_cost(math.ceil(share[t]), page_size) for t in CLAIM_TYPES)
    mixed: list[Params] = []
    mixed_cost = 0.0
    for claim_type in CLAIM_TYPES:
        expected = math.ceil(share[claim_type])
        dated = [eob for eob in sample if str(eob.get("id", "")).startswith(claim_type + "-")]
        span = service_span(dated)
        ranges = _date_ranges(expected, span, page_size) if span else [()]
        mixed += [(("type", claim_type), *params) for params in ranges]
        mixed_cost += (
            split_cost(expected, len(ranges), page_size)
            if len(ranges) > 1
            else search_cost(expected, page_size)
        )
    return (tuple(plain), plain_cost), (tuple(mixed), mixed_cost)
