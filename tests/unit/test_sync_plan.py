from datetime import UTC, datetime, timedelta, timezone

import pytest

from worker.bluebutton.fhir import RESOURCE_QUERIES, query_for
from worker.sync.model import FULL, Cursor, History, Plan, Split
from worker.sync.plan import (
    DONE,
    LAST_UPDATED_FLOOR,
    choose_plan,
    cursor_after,
    queries_for,
    remaining_steps,
)

TYPES = [q.resource_type for q in RESOURCE_QUERIES]


def test_fresh_run_fetches_every_type_from_its_first_page() -> None:
    steps = remaining_steps(None, RESOURCE_QUERIES)
    assert [s.query.resource_type for s in steps] == TYPES
    assert all(s.start_url is None for s in steps)


def test_resume_mid_type_starts_at_the_saved_page() -> None:
    steps = remaining_steps(Cursor("ExplanationOfBenefit", "https://x/p3"), RESOURCE_QUERIES)
    assert [(s.query.resource_type, s.start_url) for s in steps] == [
        ("ExplanationOfBenefit", "https://x/p3")
    ]


def test_finished_run_has_nothing_left() -> None:
    assert remaining_steps(Cursor(DONE, None), RESOURCE_QUERIES) == []


def test_cursor_moves_through_pages_then_types_then_done() -> None:
    coverage, eob = query_for("Coverage"), query_for("ExplanationOfBenefit")
    assert cursor_after(coverage, "https://x/c2", RESOURCE_QUERIES) == Cursor(
        "Coverage", "https://x/c2"
    )
    assert cursor_after(coverage, None, RESOURCE_QUERIES) == Cursor("ExplanationOfBenefit", None)
    assert cursor_after(eob, None, RESOURCE_QUERIES) == Cursor(DONE, None)


def test_first_urls_use_the_largest_page_size() -> None:
    base = "https://sandbox.bluebutton.cms.gov"
    urls = {q.resource_type: q.first_url(base, "-1") for q in RESOURCE_QUERIES}
    assert urls == {
        "Patient": f"{base}/v2/fhir/Patient/-1",
        "Coverage": f"{base}/v2/fhir/Coverage?beneficiary=Patient/-1&_count=50",
        "ExplanationOfBenefit": f"{base}/v2/fhir/ExplanationOfBenefit?patient=-1&_count=50",
    }


NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
WEEK, DAY = timedelta(days=7), timedelta(days=1)


def plan_for(history: History) -> Plan:
    return choose_plan(NOW, history, full_every=4 * WEEK, margin=DAY)


def test_never_synced_means_a_full_pass() -> None:
    assert plan_for(History(None, None)) == FULL


def test_recent_full_pass_means_incremental_since_last_start_less_margin() -> None:
    plan = plan_for(History(last_success=NOW - WEEK, last_full=NOW - 2 * WEEK))
    assert plan == Plan("incremental", NOW - WEEK - DAY)


def test_old_full_pass_means_a_new_full_pass() -> None:
    assert plan_for(History(last_success=NOW - DAY, last_full=NOW - 4 * WEEK)) == FULL


def test_since_never_goes_below_bb2_floor() -> None:
    old = datetime(2020, 2, 12, 12, tzinfo=UTC)
    plan = choose_plan(old + DAY, History(old, old), full_every=4 * WEEK, margin=7 * DAY)
    assert plan.since == LAST_UPDATED_FLOOR


def test_incremental_passes_skip_reads() -> None:
    incremental = queries_for(Plan("incremental", NOW), RESOURCE_QUERIES)
    assert [q.resource_type for q in incremental] == ["Coverage", "ExplanationOfBenefit"]
    assert queries_for(FULL, RESOURCE_QUERIES) == list(RESOURCE_QUERIES)


def test_incremental_url_asks_last_updated_in_utc() -> None:
    since = datetime(2026, 11, 1, 7, 30, tzinfo=timezone(timedelta(hours=5)))
    url = query_for("ExplanationOfBenefit").first_url("https://h", "-1", since)
    assert url.endswith("&_lastUpdated=gt2026-11-01T02%3A30%3A00.000Z")
    with pytest.raises(ValueError, match="reads"):
        query_for("Patient").first_url("https://h", "-1", since)


SPLIT = Split(((("service-date", "lt2019-01-01"),), (("service-date", "ge2019-01-01"),)))


def test_a_split_cursor_moves_through_pages_then_searches_then_types() -> None:
    eob = query_for("ExplanationOfBenefit")
    assert cursor_after(eob, "https://x/r0p2", RESOURCE_QUERIES, SPLIT) == Cursor(
        "ExplanationOfBenefit", "https://x/r0p2", SPLIT
    )
    second = Split(SPLIT.searches, at=1)
    assert cursor_after(eob, None, RESOURCE_QUERIES, SPLIT) == Cursor(
        "ExplanationOfBenefit", None, second
    )
    assert cursor_after(eob, None, RESOURCE_QUERIES, second) == Cursor(DONE, None)


def test_resume_mid_split_keeps_its_searches() -> None:
    cursor = Cursor("ExplanationOfBenefit", "https://x/r1p3", Split(SPLIT.searches, at=1))
    (step,) = remaining_steps(cursor, RESOURCE_QUERIES)
    assert (step.start_url, step.split) == ("https://x/r1p3", cursor.split)
