import copy
from pathlib import Path
from typing import Any

import orjson
import pytest

from worker.bluebutton.bundle import (
    check_content_type,
    check_resource,
    parse_read,
    parse_search_page,
)
from worker.errors import ProtocolError

PATIENT = "-19990000000001"


def load(fixtures: Path, name: str) -> dict[str, Any]:
    return orjson.loads((fixtures / name).read_bytes())  # type: ignore[no-any-return]


def test_real_eob_page_parses(fixtures: Path) -> None:
    body = (fixtures / "eob_page_last.json").read_bytes()
    page = parse_search_page(body, "u", "ExplanationOfBenefit", PATIENT)
    assert [r["id"] for r in page.resources] == ["carrier--9329244002", "carrier--9344958748"]
    assert page.next_url is None


def test_next_link_is_read(fixtures: Path) -> None:
    bundle = load(fixtures, "eob_page_last.json")
    bundle["link"].append({"relation": "next", "url": "https://x/v2/fhir/ExplanationOfBenefit?s=1"})
    page = parse_search_page(orjson.dumps(bundle), "u", "ExplanationOfBenefit", PATIENT)
    assert page.next_url == "https://x/v2/fhir/ExplanationOfBenefit?s=1"


def test_real_patient_read_parses(fixtures: Path) -> None:
    body = (fixtures / "patient_read.json").read_bytes()
    page = parse_read(body, "u", "Patient", "-20140000008325")
    assert page.resources[0]["id"] == "-20140000008325"


def test_another_patients_claim_is_refused(fixtures: Path) -> None:
    body = (fixtures / "eob_page_last.json").read_bytes()
    with pytest.raises(ProtocolError, match="does not belong"):
        parse_search_page(body, "u", "ExplanationOfBenefit", "-19990000000002")


def test_coverage_owner_checked(fixtures: Path) -> None:
    body = (fixtures / "coverage_search.json").read_bytes()
    page = parse_search_page(body, "u", "Coverage", "-20140000008325")
    assert len(page.resources) == 4
    with pytest.raises(ProtocolError, match="does not belong to the connected patient"):
        parse_search_page(body, "u", "Coverage", PATIENT)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda r: r.pop("id"), "has no usable id"),
        (lambda r: r.__setitem__("id", ""), "has no usable id"),
        (lambda r: r.pop("meta"), "lacks meta.lastUpdated"),
        (lambda r: r["meta"].__setitem__("lastUpdated", "yesterday"), "not an ISO date-time"),
        (
            lambda r: r["meta"].__setitem__("lastUpdated", "2022-02-14T17:27:56"),
            "has no time zone",
        ),
        (lambda r: r.__setitem__("resourceType", "Claim"), "expected a ExplanationOfBenefit"),
    ],
)
def test_one_bad_resource_fails_the_page(fixtures: Path, damage: Any, reason: str) -> None:
    bundle = load(fixtures, "eob_page_last.json")
    damage(bundle["entry"][1]["resource"])
    with pytest.raises(ProtocolError, match=reason):
        parse_search_page(orjson.dumps(bundle), "u", "ExplanationOfBenefit", PATIENT)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "not a JSON object"),
        (b'{"resourceType": "OperationOutcome"}', "not a searchset Bundle"),
        (
            b'{"resourceType": "Bundle", "type": "searchset", "total": 3}',
            "total 3 but has no entries",
        ),
        (b'{"resourceType": "Bundle", "type": "searchset", "entry": {}}', "entry is not a list"),
        (
            b'{"resourceType": "Bundle", "type": "searchset", "entry": [], "link": "x"}',
            "link is not a list",
        ),
        (
            b'{"resourceType": "Bundle", "type": "searchset", "link": [{"relation": "next"}]}',
            "next link has no url",
        ),
    ],
)
def test_broken_bundles_are_protocol_errors(body: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        parse_search_page(body, "u", "ExplanationOfBenefit", PATIENT)


def test_empty_bundle_is_an_empty_page() -> None:
    body = b'{"resourceType": "Bundle", "type": "searchset", "total": 0}'
    page = parse_search_page(body, "u", "ExplanationOfBenefit", PATIENT)
    assert page.resources == ()
    assert page.next_url is None


def test_check_resource_returns_the_same_object(fixtures: Path) -> None:
    resource = load(fixtures, "patient_read.json")
    kept = copy.deepcopy(resource)
    assert check_resource(resource, "Patient", "-20140000008325") == kept


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/fhir+json;charset=UTF-8", "Application/JSON"]
)
def test_json_content_types_pass(content_type: str) -> None:
    check_content_type(content_type)


@pytest.mark.parametrize("content_type", [None, "text/html", "text/plain; charset=utf-8"])
def test_other_content_types_fail(content_type: str | None) -> None:
    with pytest.raises(ProtocolError, match="content type"):
        check_content_type(content_type)
