"""Admin-ordered upstream faults: 5xx answers and spoiled search answers, on demand."""

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from tests.emulator.support import ME, Harness, MakeHarness
from worker.emulator.bad_answers import OFFSITE_HOST, OVERSIZE_BYTES, spoil
from worker.emulator.config import EmulatorConfig
from worker.emulator.faults import Fault, FaultKind

EOB = "ExplanationOfBenefit"
FHIR_JSON = "application/fhir+json"
# BBUser00000 with 140 claims: EOB pages of 50, 50 and 40.
CONFIG = EmulatorConfig(beneficiaries=1, claims_per_beneficiary=140)
WORKER_LIMIT = 16 * 1024 * 1024  # worker.constants.MAX_RESPONSE_BYTES, not imported on purpose


async def order(harness: Harness, **body: Any) -> httpx.Response:
    return await harness.http.post("/_emulator/faults", json=body)


def next_link(bundle: dict[str, Any]) -> str | None:
    urls = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
    assert len(urls) <= 1
    return urls[0] if urls else None


def query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


async def eob_pages(harness: Harness, token: str) -> list[httpx.Response]:
    """Three EOB searches: the first page, then page 2 and 3 by their plain URLs."""
    return [
        await harness.fhir(EOB, token, patient=ME, _count=50, startIndex=start)
        for start in (0, 50, 100)
    ]


async def second_page_spoiled(make_harness: MakeHarness, kind: str) -> httpx.Response:
    """Order `kind` on the 2nd EOB search, check the 1st and 3rd are untouched, return the 2nd."""
    harness = await make_harness(CONFIG)
    token = (await harness.tokens())["access_token"]
    ordered = await order(harness, kind=kind, count=1, after=1)
    assert ordered.status_code == 200, ordered.text
    first, second, third = await eob_pages(harness, token)
    for good in (first, third):
        assert good.status_code == 200
        assert good.headers["content-type"] == "application/fhir+json"
        assert all("id" in entry["resource"] for entry in good.json()["entry"])
    assert harness.state.pending_faults() == 0
    return second


async def test_malformed_json_is_the_real_page_cut_short(make_harness: MakeHarness) -> None:
    answer = await second_page_spoiled(make_harness, "malformed_json")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/fhir+json"
    assert answer.content.startswith(b'{"resourceType":"Bundle"')
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(answer.content)


async def test_no_entry_keeps_the_total(make_harness: MakeHarness) -> None:
    answer = await second_page_spoiled(make_harness, "no_entry")
    bundle = answer.json()
    assert answer.status_code == 200
    assert (bundle["resourceType"], bundle["type"], bundle["total"]) == ("Bundle", "searchset", 140)
    assert "entry" not in bundle
    assert next_link(bundle) is not None


async def test_wrong_content_type_is_a_maintenance_page(make_harness: MakeHarness) -> None:
    answer = await second_page_spoiled(make_harness, "wrong_content_type")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert "maintenance" in answer.text
    assert not answer.text.lstrip().startswith("{")


async def test_next_loop_points_at_the_url_asked_for(make_harness: MakeHarness) -> None:
    answer = await second_page_spoiled(make_harness, "next_loop")
    assert answer.status_code == 200
    assert next_link(answer.json()) == str(answer.request.url)
    assert len(answer.json()["entry"]) == 50


async def test_next_loop_on_the_last_page_adds_a_next_link(make_harness: MakeHarness) -> None:
    harness = await make_harness(CONFIG)
    token = (await harness.tokens())["access_token"]
    await order(harness, kind="next_loop", after=2)
    last = (await eob_pages(harness, token))[2]
    assert next_link(last.json()) == str(last.request.url)


async def test_next_offsite_keeps_the_path_and_query_on_another_host(
    make_harness: MakeHarness,
) -> None:
    answer = await second_page_spoiled(make_harness, "next_offsite")
    url = next_link(answer.json())
    assert url is not None
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", OFFSITE_HOST, f"/v2/fhir/{EOB}")
    assert query(url)["startIndex"] == ["100"]
    assert query(url)["patient"] == [ME]


async def test_missing_id_drops_the_id_of_the_last_eob_only(make_harness: MakeHarness) -> None:
    answer = await second_page_spoiled(make_harness, "missing_id")
    resources = [entry["resource"] for entry in answer.json()["entry"]]
    assert len(resources) == 50
    assert "id" not in resources[-1]
    assert resources[-1]["resourceType"] == EOB
    assert all(resource["id"] for resource in resources[:-1])


async def test_oversize_is_a_valid_page_padded_past_the_limit(make_harness: MakeHarness) -> None:
    answer = await second_page_spoiled(make_harness, "oversize")
    assert answer.status_code == 200
    assert len(answer.content) > WORKER_LIMIT
    assert len(answer.content) == OVERSIZE_BYTES + 1
    # Whitespace padding: the only thing wrong with the answer is its size.
    assert len(orjson.loads(answer.content)["entry"]) == 50


async def test_oversize_is_streamed_in_small_chunks() -> None:
    page = orjson.dumps({"resourceType": "Bundle", "type": "searchset", "total": 0})
    request = Request({"type": "http", "method": "GET", "path": "/", "headers": []})
    answer = await spoil(Fault(FaultKind.OVERSIZE), request, Response(page))
    assert isinstance(answer, StreamingResponse)
    sizes = [len(chunk) async for chunk in answer.body_iterator]
    assert sum(sizes) == int(answer.headers["content-length"]) == OVERSIZE_BYTES + 1
    assert max(sizes) <= 1024 * 1024


async def test_status_on_a_search_counts_only_that_search(harness: Harness) -> None:
    token = (await harness.tokens())["access_token"]
    ordered = await order(harness, status=503, count=2, after=1, search=EOB)
    assert ordered.json() == {
        "kind": "status",
        "status": 503,
        "count": 2,
        "after": 1,
        "search": EOB,
        "pending": 2,
    }
    statuses = [
        (await harness.fhir(EOB, token, patient=ME)).status_code,
        (await harness.fhir(f"Patient/{ME}", token)).status_code,
        (await harness.fhir("Coverage", token)).status_code,
        (await harness.fhir(EOB, token, patient=ME)).status_code,
        (await harness.fhir(EOB, token, patient=ME)).status_code,
        (await harness.fhir(EOB, token, patient=ME)).status_code,
    ]
    assert statuses == [200, 200, 200, 503, 503, 200]


async def test_the_status_form_still_fails_any_fhir_request(harness: Harness) -> None:
    token = (await harness.tokens())["access_token"]
    ordered = await order(harness, status=502, count=2)
    assert ordered.json() == {
        "kind": "status",
        "status": 502,
        "count": 2,
        "after": 0,
        "search": None,
        "pending": 2,
    }
    patient = await harness.fhir(f"Patient/{ME}", token)
    coverage = await harness.fhir("Coverage", token)
    assert (patient.status_code, coverage.status_code) == (502, 502)
    assert patient.json() == {"detail": "An error occurred contacting the FHIR server"}


async def test_answer_faults_skip_reads_and_other_searches(harness: Harness) -> None:
    token = (await harness.tokens())["access_token"]
    await order(harness, kind="no_entry", after=1)
    await harness.fhir(f"Patient/{ME}", token)
    await harness.fhir("Coverage", token)
    first = (await harness.fhir(EOB, token, patient=ME)).json()
    assert "entry" in first
    assert harness.state.pending_faults() == 1
    second = (await harness.fhir(EOB, token, patient=ME)).json()
    assert "entry" not in second


async def test_coverage_searches_can_be_spoiled_too(harness: Harness) -> None:
    token = (await harness.tokens())["access_token"]
    await order(harness, kind="missing_id", search="Coverage")
    eob = (await harness.fhir(EOB, token, patient=ME)).json()
    coverage = (await harness.fhir("Coverage", token)).json()
    assert all("id" in entry["resource"] for entry in eob["entry"])
    assert [("id" in entry["resource"]) for entry in coverage["entry"]] == [True] * 3 + [False]


async def test_count_spoils_that_many_searches_in_a_row(harness: Harness) -> None:
    token = (await harness.tokens())["access_token"]
    await order(harness, kind="wrong_content_type", count=2)
    types = [(await harness.fhir(EOB, token, patient=ME)).headers["content-type"] for _ in range(3)]
    assert [kind.split(";")[0] for kind in types] == ["text/html", "text/html", FHIR_JSON]


async def test_an_error_answer_is_not_spoiled_but_spends_the_fault(harness: Harness) -> None:
    token = (await harness.tokens())["access_token"]
    await order(harness, kind="malformed_json")
    refused = await harness.fhir(EOB, token, patient="-19990000000002")
    assert refused.status_code == 403
    assert refused.json() == {"detail": "You do not have permission to perform this action."}
    assert harness.state.pending_faults() == 0
    assert "entry" in (await harness.fhir(EOB, token, patient=ME)).json()


async def test_ordered_faults_win_over_seeded_ones(make_harness: MakeHarness) -> None:
    harness = await make_harness(EmulatorConfig(fault_rate=1.0))
    token = (await harness.tokens())["access_token"]
    await order(harness, kind="next_loop")
    looped = await harness.fhir(EOB, token, patient=ME)
    assert looped.status_code == 200
    assert next_link(looped.json()) == str(looped.request.url)
    assert (await harness.fhir(EOB, token, patient=ME)).status_code >= 500


async def test_ordered_faults_keep_the_seeded_draws_in_step(make_harness: MakeHarness) -> None:
    config = EmulatorConfig(fault_rate=0.5, fault_seed=1)
    plain = await make_harness(config)
    plain_token = (await plain.tokens())["access_token"]
    expected = [(await plain.fhir("Coverage", plain_token)).status_code for _ in range(6)]
    harness = await make_harness(config)
    token = (await harness.tokens())["access_token"]
    await order(harness, kind="no_entry", search="Coverage", count=2)
    answers = [await harness.fhir("Coverage", token) for _ in range(6)]
    assert [answer.status_code for answer in answers] == [200, 200, *expected[2:]]
    assert [("entry" in answer.json()) for answer in answers[:2]] == [False, False]
    assert set(expected[:2]) != {200}  # the seed would have failed one of the two


async def test_a_status_fault_for_any_request_wins_and_spends_the_search_fault(
    harness: Harness,
) -> None:
    token = (await harness.tokens())["access_token"]
    await order(harness, kind="no_entry")
    await order(harness, status=504)
    assert (await harness.fhir(EOB, token, patient=ME)).status_code == 504
    assert "entry" in (await harness.fhir(EOB, token, patient=ME)).json()


async def test_spoiled_answers_are_counted_as_the_200s_they_are(harness: Harness) -> None:
    token = (await harness.tokens())["access_token"]
    await harness.http.post("/_emulator/stats/reset")
    await order(harness, kind="malformed_json")
    await harness.fhir(EOB, token, patient=ME)
    stats = harness.state.stats()
    assert stats["by_endpoint"] == {"eob_search": 1}
    assert stats["by_status"] == {"200": 1}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"kind": "teapot"}, "kind must be one of status, malformed_json, no_entry"),
        ({"kind": 3}, "kind must be one of"),
        ({"status": 418}, "status must be one of [500, 502, 503, 504]"),
        ({"status": "502"}, "status must be one of"),
        ({"status": 502.0}, "status must be one of"),
        ({"kind": "no_entry", "status": 502}, "status goes with kind 'status' only"),
        ({"count": 0}, "count must be between 1 and 100000"),
        ({"count": True}, "count must be an integer"),
        ({"count": "2"}, "count must be an integer"),
        ({"after": -1}, "after must be between 0 and 100000"),
        ({"after": 10**9}, "after must be between 0 and 100000"),
        ({"after": 1.5}, "after must be an integer"),
        ({"kind": "oversize", "search": "Patient"}, "search must be one of ExplanationOfBenefit"),
        ({"cuont": 2}, "unknown fields ['cuont']"),
    ],
)
async def test_bad_orders_are_refused_with_a_clear_400(
    harness: Harness, body: dict[str, Any], message: str
) -> None:
    answer = await order(harness, **body)
    assert answer.status_code == 400
    assert message in answer.json()["detail"]
    assert harness.state.pending_faults() == 0


@pytest.mark.parametrize("raw", [b"[1, 2]", b"{not json", b'"kind"'])
async def test_an_order_must_be_a_json_object(harness: Harness, raw: bytes) -> None:
    answer = await harness.http.post("/_emulator/faults", content=raw)
    assert answer.status_code == 400
    assert answer.json() == {"detail": "the body must be a JSON object"}
