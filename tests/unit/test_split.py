"""The split of a large EOB search: pure decisions on the backend's cost model."""

import itertools
from datetime import date

from worker.bluebutton.split import (
    DateRange,
    best_range_count,
    plan_ranges,
    search_cost,
    service_span,
    split_cost,
)


def test_a_beneficiary_within_a_page_or_two_is_not_split() -> None:
    assert best_range_count(30, 50) == 1
    assert plan_ranges(30, date(2020, 1, 1), date(2020, 12, 31), 50) == [DateRange(None, None)]


def test_thousands_of_claims_are_split_into_ranges_of_about_a_page() -> None:
    count = best_range_count(5000, 50)
    assert 100 <= count <= 200
    # Quadratic unsplit, linear split: fifty times cheaper for 5,000 claims.
    assert split_cost(5000, count, 50) * 40 < search_cost(5000, 50)


def test_ranges_cover_every_day_once_with_open_ends() -> None:
    ranges = plan_ranges(1000, date(2014, 1, 1), date(2019, 12, 31), 50)
    assert ranges[0].start is None
    assert ranges[-1].end is None
    for before, after in itertools.pairwise(ranges):
        assert before.end == after.start  # contiguous, no overlap (end is exclusive)
    assert ranges[1].params() == [
        ("service-date", f"ge{ranges[1].start}"),
        ("service-date", f"lt{ranges[1].end}"),
    ]


def test_never_more_ranges_than_days() -> None:
    ranges = plan_ranges(5000, date(2020, 1, 1), date(2020, 1, 3), 50)
    assert len(ranges) == 3


def test_service_span_reads_billable_period_ends() -> None:
    eobs = [
        {"billablePeriod": {"start": "2015-01-01", "end": "2015-01-09"}},
        {"billablePeriod": {"start": "2018-03-01", "end": "2018-03-02"}},
        {"id": "no period"},
    ]
    assert service_span(eobs) == (date(2015, 1, 9), date(2018, 3, 2))
    assert service_span([]) is None
