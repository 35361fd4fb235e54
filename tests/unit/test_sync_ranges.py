"""Planning a large EOB search's split: pure decisions on the backend's cost model."""

import itertools
from datetime import date, timedelta

from worker.bluebutton.split import search_cost
from worker.sync.ranges import CLAIM_TYPES, SPLIT_FROM, plan_split, search_url

START = date(2015, 1, 1)


def eob(claim_type: str, day: int, claim: int) -> dict[str, object]:
    end = (START + timedelta(days=day)).isoformat()
    return {"id": f"{claim_type}--{claim}", "billablePeriod": {"start": end, "end": end}}


def sample(types: list[str], days: int = 3000) -> list[dict[str, object]]:
    """A first page: claims in claim-id order, their dates spread over the years."""
    return [eob(t, (i * 7919) % days, i) for i, t in enumerate(types)]


def modelled(total: int, searches: int) -> float:
    """What the plan's searches cost if each matched total/searches claims."""
    return searches * search_cost(total // searches, 50)


def test_small_beneficiaries_keep_the_one_search() -> None:
    page = sample(["pde"] * 50)
    assert plan_split(SPLIT_FROM - 1, page, 50) is None
    assert plan_split(None, page, 50) is None
    assert plan_split(5000, [], 50) is None


def test_a_large_mostly_part_d_beneficiary_is_split_by_service_date() -> None:
    page = sample(["pde"] * 45 + ["carrier"] * 5)
    searches = plan_split(5000, page, 50)
    assert searches is not None
    assert 100 <= len(searches) <= 200
    # Contiguous ranges, outer ones open: every claim falls in exactly one of them.
    assert searches[0] == (("service-date", f"lt{searches[1][0][1][2:]}"),)
    assert searches[-1] == (("service-date", searches[-2][1][1].replace("lt", "ge")),)
    for before, after in itertools.pairwise(searches[1:-1]):
        assert before[1][1][2:] == after[0][1][2:]
    # Linear instead of quadratic: far cheaper than paging the one search.
    assert modelled(5000, len(searches)) * 20 < search_cost(5000, 50)


def test_claims_all_on_one_day_are_split_by_type() -> None:
    # No date range can cut a single day: the types can.
    page = [eob(t, 0, i) for i, t in enumerate(["carrier", "outpatient", "pde", "dme"] * 12)]
    searches = plan_split(2000, page, 50)
    assert searches is not None
    assert {dict(s)["type"] for s in searches} == set(CLAIM_TYPES)


def test_an_unknown_claim_type_is_never_searched_by_type() -> None:
    # A type search for the known types would miss its claims: dates only.
    page = [eob("newtype", 0, i) for i in range(50)]
    assert plan_split(2000, page, 50) is None
    spread = sample(["newtype"] * 50)
    searches = plan_split(2000, spread, 50)
    assert searches is not None
    assert all(name == "service-date" for s in searches for name, _ in s)


def test_a_split_search_is_the_first_page_url_with_its_criteria() -> None:
    first = "https://bb2/v2/fhir/ExplanationOfBenefit?patient=-1&_count=50"
    assert search_url(first, (("type", "pde"), ("service-date", "ge2020-01-01"))) == (
        f"{first}&type=pde&service-date=ge2020-01-01"
    )
    assert search_url(first, ()) == first


def test_a_claim_without_a_service_date_keeps_dates_out_of_the_plan() -> None:
    # It would match no service-date range: the types (all known here) split instead.
    page = sample(["pde"] * 45 + ["carrier"] * 5)
    page[7] = {"id": "pde--7"}
    searches = plan_split(5000, page, 50)
    assert searches is not None
    assert all(name == "type" for s in searches for name, _ in s)
    page[8] = {"id": "newtype--8"}
    assert plan_split(5000, page, 50) is None
