"""FHIR reads and searches: paging, filters, access rules, headers."""

import gzip
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from tests.emulator.support import ME, Harness
from worker.emulator.config import EmulatorConfig
from worker.emulator.data import Dataset

EOB_TYPE_SYSTEM = "https://bluebutton.cms.gov/resources/codesystem/eob-type"
# BBUser00007 has 62 claims in the published counts, one of them inpatient.
USER7 = "-19990000000008"


def links(bundle: dict[str, Any]) -> dict[str, str]:
    return {link["relation"]: link["url"] for link in bundle["link"]}


def start_index(url: str) -> int:
    return int(parse_qs(urlparse(url).query)["startIndex"][0])


def eob_types(bundle: dict[str, Any]) -> set[str]:
    return {
        coding["code"].lower()
        for entry in bundle.get("entry", [])
        for coding in entry["resource"]["type"]["coding"]
        if coding["system"] == EOB_TYPE_SYSTEM
    }


async def token_for(harness: Harness, username: str = "BBUser00000") -> str:
    token: str = (await harness.tokens(username))["access_token"]
    return token


async def test_paging_with_count_50_returns_every_claim_once(harness: Harness) -> None:
    token = await token_for(harness, "BBUser00007")
    first = (await harness.fhir("ExplanationOfBenefit", token, patient=USER7, _count=50)).json()
    next_url = links(first)["next"]
    second_response = await harness.http.get(next_url, headers={"Authorization": f"Bearer {token}"})
    second = second_response.json()
    ids = [entry["resource"]["id"] for entry in first["entry"] + second["entry"]]
    assert first["total"] == second["total"] == 62
    assert len(first["entry"]) == 50
    assert len(ids) == len(set(ids)) == 62
    assert "previous" not in links(first)
    assert start_index(next_url) == 50
    assert start_index(links(first)["last"]) == 50
    assert "next" not in links(second)
    assert start_index(links(second)["previous"]) == 0
    assert next_url == (
        "http://testserver/v2/fhir/ExplanationOfBenefit?_format=application%2Fjson%2Bfhir"
        f"&startIndex=50&_count=50&patient={USER7}"
    )


async def test_default_page_is_ten_in_a_stable_order(harness: Harness) -> None:
    token = await token_for(harness)
    page = (await harness.fhir("ExplanationOfBenefit/", token, patient=ME)).json()
    again = (await harness.fhir("ExplanationOfBenefit", token, patient=ME)).json()
    ids = [entry["resource"]["id"] for entry in page["entry"]]
    claim_ids = [resource_id.split("-", 1)[1] for resource_id in ids]
    assert page["resourceType"] == "Bundle"
    assert page["type"] == "searchset"
    assert page["total"] == 52
    assert len(ids) == 10
    assert claim_ids == sorted(claim_ids)
    assert ids == [entry["resource"]["id"] for entry in again["entry"]]
    assert page["id"] != again["id"]
    assert set(links(page)) == {"first", "next", "last", "self"}
    assert start_index(links(page)["last"]) == 50


@pytest.mark.parametrize(
    "params",
    [
        {"_count": 51},
        {"_count": -1},
        {"_count": "ten"},
        {"startIndex": -1},
        {"startIndex": "x"},
        {"_lastUpdated": "eq2021-01-01"},
        {"_lastUpdated": "gt2021-13-01"},
        {"type": "carrier,dental"},
    ],
)
async def test_bad_search_parameters_are_400(harness: Harness, params: dict[str, Any]) -> None:
    token = await token_for(harness)
    response = await harness.fhir("ExplanationOfBenefit", token, patient=ME, **params)
    assert response.status_code == 400
    assert "detail" in response.json()


async def test_unknown_parameters_are_dropped(harness: Harness) -> None:
    token = await token_for(harness)
    response = await harness.fhir("ExplanationOfBenefit", token, patient=ME, excludeSAMHSA="x")
    assert response.status_code == 200
    assert "excludeSAMHSA" not in str(response.json()["link"])


async def test_last_updated_range_filters_and_stays_in_the_links(harness: Harness) -> None:
    token = await token_for(harness)
    low, high = datetime(2022, 1, 1, tzinfo=UTC), datetime(2023, 1, 1, tzinfo=UTC)
    dataset = Dataset(EmulatorConfig())
    claims = dataset.claims(dataset.population.get(0))
    expected = [c.eob_id for c in claims if low <= c.last_updated < high]
    params = {"_lastUpdated": ["ge2022-01-01", "lt2023-01-01"], "_count": 50}
    headers = {"Authorization": f"Bearer {token}"}
    response = await harness.http.get(
        "/v2/fhir/ExplanationOfBenefit", params=params, headers=headers
    )
    bundle = response.json()
    stamps = [
        datetime.fromisoformat(entry["resource"]["meta"]["lastUpdated"])
        for entry in bundle["entry"]
    ]
    assert 0 < len(expected) < len(claims)
    assert [entry["resource"]["id"] for entry in bundle["entry"]] == expected
    assert bundle["total"] == len(expected)
    assert all(low <= stamp < high for stamp in stamps)
    assert parse_qs(urlparse(links(bundle)["first"]).query)["_lastUpdated"] == [
        "ge2022-01-01",
        "lt2023-01-01",
    ]


async def test_last_updated_gt_an_instant_excludes_that_instant(harness: Harness) -> None:
    token = await token_for(harness)
    first = (await harness.fhir("ExplanationOfBenefit", token, _count=1)).json()
    stamp = first["entry"][0]["resource"]["meta"]["lastUpdated"]
    later = await harness.fhir("ExplanationOfBenefit", token, _lastUpdated=f"gt{stamp}", _count=50)
    same = await harness.fhir("ExplanationOfBenefit", token, _lastUpdated=f"ge{stamp}", _count=50)
    later_ids = {entry["resource"]["id"] for entry in later.json().get("entry", [])}
    same_ids = {entry["resource"]["id"] for entry in same.json()["entry"]}
    assert first["entry"][0]["resource"]["id"] in same_ids - later_ids


async def test_last_updated_after_everything_gives_an_empty_bundle(harness: Harness) -> None:
    token = await token_for(harness)
    response = await harness.fhir(
        "ExplanationOfBenefit", token, patient=ME, _lastUpdated="gt2026-01-01T00:00:00+00:00"
    )
    bundle = response.json()
    assert bundle["total"] == 0
    assert "entry" not in bundle
    assert set(links(bundle)) == {"first", "last", "self"}


@pytest.mark.parametrize(
    ("type_param", "expected"),
    [
        ("outpatient", {"outpatient"}),
        (f"{EOB_TYPE_SYSTEM}|carrier", {"carrier"}),
        ("carrier,outpatient", {"carrier", "outpatient"}),
        ("pde", set()),
    ],
)
async def test_type_filter(harness: Harness, type_param: str, expected: set[str]) -> None:
    token = await token_for(harness)
    response = await harness.fhir(
        "ExplanationOfBenefit", token, patient=ME, type=type_param, _count=50
    )
    bundle = response.json()
    assert eob_types(bundle) == expected
    assert parse_qs(urlparse(links(bundle)["first"]).query)["type"] == [type_param]


async def test_type_counts_add_up(harness: Harness) -> None:
    token = await token_for(harness)
    totals = [
        (await harness.fhir("ExplanationOfBenefit", token, type=kind, _count=0)).json()["total"]
        for kind in ("carrier", "outpatient")
    ]
    assert totals == [14, 38]


async def test_service_date_filters_on_the_billable_period_end(harness: Harness) -> None:
    token = await token_for(harness)
    response = await harness.fhir(
        "ExplanationOfBenefit", token, patient=ME, _count=50, **{"service-date": "lt2016-01-01"}
    )
    ends = [entry["resource"]["billablePeriod"]["end"] for entry in response.json()["entry"]]
    assert ends
    assert all(end < "2016-01-01" for end in ends)


async def test_another_patients_search_is_403(harness: Harness) -> None:
    token = await token_for(harness)
    eob = await harness.fhir("ExplanationOfBenefit", token, patient=USER7)
    coverage = await harness.fhir("Coverage", token, beneficiary=f"Patient/{USER7}")
    assert eob.status_code == coverage.status_code == 403
    assert eob.json() == {"detail": "You do not have permission to perform this action."}


async def test_another_patients_resources_are_404_on_read(harness: Harness) -> None:
    token = await token_for(harness)
    dataset = Dataset(EmulatorConfig())
    their_eob = dataset.claims(dataset.population.get(7))[0].eob_id
    reads = [
        await harness.fhir(f"ExplanationOfBenefit/{their_eob}", token),
        await harness.fhir(f"Patient/{USER7}", token),
        await harness.fhir(f"Coverage/part-a-{USER7}", token),
        await harness.fhir("ExplanationOfBenefit/carrier--1", token),
    ]
    assert [read.status_code for read in reads] == [404] * 4
    assert reads[0].json() == {"detail": "Not found."}


async def test_reads_of_own_resources(harness: Harness) -> None:
    token = await token_for(harness)
    page = (await harness.fhir("ExplanationOfBenefit", token, patient=ME)).json()
    eob_id = page["entry"][3]["resource"]["id"]
    eob = await harness.fhir(f"ExplanationOfBenefit/{eob_id}", token)
    coverage = await harness.fhir(f"Coverage/part-d-{ME}/", token)
    assert eob.json() == page["entry"][3]["resource"]
    assert coverage.json()["id"] == f"part-d-{ME}"
    assert coverage.json()["beneficiary"] == {"reference": f"Patient/{ME}"}


async def test_coverage_search_accepts_both_beneficiary_forms(harness: Harness) -> None:
    token = await token_for(harness)
    plain = (await harness.fhir("Coverage", token, beneficiary=ME)).json()
    prefixed = (await harness.fhir("Coverage/", token, beneficiary=f"Patient/{ME}")).json()
    ids = [entry["resource"]["id"] for entry in plain["entry"]]
    assert ids == [f"part-{part}-{ME}" for part in "abcd"]
    assert prefixed["total"] == plain["total"] == 4
    assert "beneficiary=Patient%2F-19990000000001" in links(plain)["first"]


async def test_withheld_personal_info_blocks_patient_but_not_claims(harness: Harness) -> None:
    tokens = await harness.tokens(share=False)
    token = tokens["access_token"]
    patient = await harness.fhir(f"Patient/{ME}", token)
    eob = await harness.fhir("ExplanationOfBenefit", token, patient=ME)
    coverage = await harness.fhir("Coverage", token, beneficiary=ME)
    assert tokens["scope"].split() == [
        "patient/Coverage.read",
        "patient/ExplanationOfBenefit.read",
    ]
    assert patient.status_code == 403
    assert eob.status_code == coverage.status_code == 200


async def test_responses_are_fhir_json_with_rate_headers_and_gzip(harness: Harness) -> None:
    token = await token_for(harness)
    response = await harness.http.get(
        "/v2/fhir/ExplanationOfBenefit",
        params={"_count": 20},
        headers={"Authorization": f"Bearer {token}", "Accept-Encoding": "gzip"},
    )
    raw = await harness.http.get(
        "/v2/fhir/ExplanationOfBenefit",
        params={"_count": 20},
        headers={"Authorization": f"Bearer {token}", "Accept-Encoding": "identity"},
    )
    assert response.headers["content-type"] == "application/fhir+json"
    assert response.headers["content-encoding"] == "gzip"
    assert "content-encoding" not in raw.headers
    assert len(gzip.compress(raw.content)) < len(raw.content)
    # FACTS "Errors and limits": per access token, 100000/s, Reset a float; `None` on
    # answers the throttle never saw (a refused token).
    assert raw.headers["X-RateLimit-Limit"] == "100000"
    assert raw.headers["X-RateLimit-Remaining"] == "99998"
    assert float(raw.headers["X-RateLimit-Reset"]) == 1.0
    error = await harness.fhir("Coverage", "bad-token")
    assert error.headers["X-RateLimit-Remaining"] == "None"


async def test_eob_resources_look_like_the_sandbox(harness: Harness) -> None:
    token = await token_for(harness)
    bundle = (await harness.fhir("ExplanationOfBenefit", token, _count=50)).json()
    for entry in bundle["entry"]:
        resource = entry["resource"]
        claim_type, claim_id = resource["id"].split("-", 1)
        assert resource["resourceType"] == "ExplanationOfBenefit"
        assert claim_id.startswith("-")
        assert resource["patient"] == {"reference": f"Patient/{ME}"}
        assert resource["identifier"][0]["value"] == claim_id
        assert resource["meta"]["lastUpdated"][-6:] == "-04:00"
        assert claim_type in eob_types({"entry": [entry]})


async def test_discovery_documents_point_at_this_host(harness: Harness) -> None:
    openid = (await harness.http.get("/v2/connect/.well-known/openid-configuration")).json()
    smart = (await harness.http.get("/v2/fhir/.well-known/smart-configuration")).json()
    metadata = await harness.http.get("/v2/fhir/metadata")
    assert openid["token_endpoint"] == "http://testserver/v2/o/token/"
    assert smart["code_challenge_methods_supported"] == ["S256"]
    assert smart["authorization_endpoint"] == "http://testserver/v2/o/authorize/"
    assert metadata.json()["resourceType"] == "CapabilityStatement"
    assert "testserver/v2/o/token/" in metadata.text
    assert "localhost:8000" not in metadata.text
