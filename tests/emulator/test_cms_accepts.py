"""What CMS accepts and how long it keeps it: padded challenges, `=`-ending verifiers,
multipart token requests, the Patient search, 60-second codes, 30-character tokens, and
BFD's refusal of a `startIndex` past the end. Each cites its line of FACTS.md."""

import base64
import hashlib
import re
import secrets
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from tests.emulator.support import (
    CLIENT,
    ME,
    Harness,
    MakeHarness,
    authorize_query,
    code_grant,
)
from worker.emulator.config import EmulatorConfig
from worker.emulator.useragent import authorize

TOKEN = re.compile(r"^[A-Za-z0-9]{30}$")


def padded_pair() -> tuple[str, str]:
    """(verifier, challenge) the way cms-bluebutton-sdk's generate_auth_data makes them: a
    44-character verifier ending in `=`, and a challenge with its `=` padding."""
    verifier = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode()


async def code_for(harness: Harness, challenge: str) -> str:
    url = f"http://testserver/v2/o/authorize/?{authorize_query(challenge)}"
    location = await authorize(harness.http, url, "BBUser00000", "PW00000!")
    return parse_qs(urlparse(location).query)["code"][0]


async def test_a_padded_challenge_and_an_equals_ending_verifier_work(harness: Harness) -> None:
    # FACTS "Authorization": "CMS strips `=` from the code challenge before storing it and
    # checks the verifier only by hashing it: ... a 44-character verifier ending in `=`".
    verifier, challenge = padded_pair()
    code = await code_for(harness, challenge)
    response = await harness.exchange(code, verifier)
    assert len(verifier) == 44
    assert verifier.endswith("=")
    assert challenge.endswith("=")
    assert response.status_code == 200


async def test_a_padded_challenge_still_needs_the_right_verifier(harness: Harness) -> None:
    verifier, challenge = padded_pair()
    code = await code_for(harness, challenge)
    wrong = await harness.exchange(code, verifier[:-1])
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"


async def test_a_multipart_token_request_with_the_secret_in_the_body_works(
    harness: Harness,
) -> None:
    # FACTS "Authorization": the SDK "sends the token request as multipart form data with
    # the client secret in the body".
    code, verifier = await harness.code()
    fields = code_grant(code, verifier, client_id=CLIENT[0], client_secret=CLIENT[1])
    files = {name: (None, value) for name, value in fields.items()}
    response = await harness.http.post("/v2/o/token/", files=files)
    assert response.headers.get("content-type") == "application/json"
    assert response.status_code == 200


async def test_codes_and_tokens_are_30_letters_and_digits(harness: Harness) -> None:
    # FACTS "Authorization": "Codes and tokens are 30 letters and digits."
    code, verifier = await harness.code()
    body = (await harness.exchange(code, verifier)).json()
    refreshed = (await harness.refresh(body["refresh_token"])).json()
    values = [code, body["access_token"], body["refresh_token"], refreshed["refresh_token"]]
    assert all(TOKEN.match(value) for value in values)


async def test_codes_live_60_seconds(harness: Harness) -> None:
    # FACTS "Authorization": "Codes are single use and live 60 seconds".
    in_time, in_time_verifier = await harness.code()
    late, late_verifier = await harness.code("BBUser00001")
    harness.clock.advance(59)
    accepted = await harness.exchange(in_time, in_time_verifier)
    harness.clock.advance(1)
    refused = await harness.exchange(late, late_verifier)
    assert accepted.status_code == 200
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"


async def test_the_code_lifetime_is_configurable(make_harness: MakeHarness) -> None:
    harness = await make_harness(EmulatorConfig(code_lifetime=5))
    code, verifier = await harness.code()
    harness.clock.advance(5)
    assert (await harness.exchange(code, verifier)).status_code == 400


async def fhir_json(harness: Harness, path: str, token: str, **params: Any) -> Any:
    response = await harness.fhir(path, token, **params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_the_patient_search_finds_the_tokens_patient(harness: Harness) -> None:
    # FACTS "Authorization": "The SDK reads the patient with a search, GET /v2/fhir/Patient/".
    token = (await harness.tokens())["access_token"]
    bundle = await fhir_json(harness, "Patient/", token)
    same = await fhir_json(harness, "Patient", token, _id=ME)
    other = await harness.fhir("Patient/", token, _id="-19990000000002")
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "searchset"
    assert bundle["total"] == same["total"] == 1
    assert [entry["resource"]["id"] for entry in bundle["entry"]] == [ME]
    assert {link["relation"] for link in bundle["link"]} == {"first", "last", "self"}
    assert other.status_code == 404  # FhirDataView: another patient's search is Not found


async def test_the_patient_search_needs_the_patient_scope(harness: Harness) -> None:
    token = (await harness.tokens(share=False))["access_token"]
    assert (await harness.fhir("Patient/", token)).status_code == 403


@pytest.mark.parametrize(("path", "total"), [("ExplanationOfBenefit", 52), ("Coverage", 4)])
async def test_a_start_index_at_or_past_the_end_is_400(
    harness: Harness, path: str, total: int
) -> None:
    # FACTS "Errors and limits": "A startIndex at or past the end of the results is a 400
    # from the backend ('Value for startIndex (N) must be less than than result size (M)')".
    token = (await harness.tokens())["access_token"]
    last = await harness.fhir(path, token, startIndex=total - 1)
    at_end = await harness.fhir(path, token, startIndex=total)
    assert last.status_code == 200
    assert at_end.status_code == 400
    assert at_end.json() == {
        "detail": "An error occurred contacting the upstream server:Value for startIndex "
        f"({total}) must be less than than result size ({total})"
    }


async def test_a_start_index_on_an_empty_result_is_an_empty_bundle(harness: Harness) -> None:
    # BFD (TransformerUtilsV2.createBundle) checks startIndex only when there are results.
    token = (await harness.tokens())["access_token"]
    bundle = await fhir_json(harness, "ExplanationOfBenefit", token, type="pde", startIndex=20)
    assert bundle["total"] == 0
    assert "entry" not in bundle
