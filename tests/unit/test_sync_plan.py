from worker.bluebutton.fhir import RESOURCE_QUERIES, query_for
from worker.jobs.sync import DONE, cursor_after, remaining_steps
from worker.store.sync_runs import Cursor

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
