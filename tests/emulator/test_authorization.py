"""Authorize, login, consent and code exchange, as BB2 does them."""

from datetime import UTC, datetime
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from tests.emulator.support import (
    CLIENT,
    ME,
    REDIRECT_URI,
    Harness,
    MakeHarness,
    authorize_query,
    code_grant,
    pkce_pair,
)
from worker.emulator.config import EmulatorConfig, RegisteredClient
from worker.emulator.server import running_emulator
from worker.emulator.useragent import AuthorizeRejected, LoginFailed, authorize


async def test_full_flow_over_a_real_server_gives_tokens_that_read_data() -> None:
    verifier, challenge = pkce_pair()
    async with (
        running_emulator(EmulatorConfig()) as emulator,
        httpx.AsyncClient(base_url=emulator.base_url) as http,
    ):
        url = f"{emulator.base_url}/v2/o/authorize/?{authorize_query(challenge)}"
        location = await authorize(http, url, "BBUser00000", "PW00000!")
        query = parse_qs(urlparse(location).query)
        assert location.startswith(f"{REDIRECT_URI}?")
        assert query["state"] == ["state-of-at-least-16"]
        data = {
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        }
        token = await http.post("/v2/o/token/", data=data, auth=CLIENT)
        body = token.json()
        patient = await http.get(
            f"/v2/fhir/Patient/{ME}", headers={"Authorization": f"Bearer {body['access_token']}"}
        )
    assert token.status_code == 200
    assert set(body) == {
        "access_token",
        "token_type",
        "expires_in",
        "scope",
        "refresh_token",
        "patient",
        "access_grant_expiration",
    }
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["patient"] == ME
    assert body["scope"].split() == [
        "patient/Patient.read",
        "patient/Coverage.read",
        "patient/ExplanationOfBenefit.read",
        "profile",
    ]
    assert patient.status_code == 200
    assert patient.json()["id"] == ME


async def test_grant_expiration_is_thirteen_months_after_consent(harness: Harness) -> None:
    harness.clock.now = datetime(2026, 11, 5, 19, 17, 53, tzinfo=UTC).timestamp()
    body = await harness.tokens()
    assert body["access_grant_expiration"] == "2027-12-05T19:17:53Z"


async def test_research_study_grant_has_no_expiration(make_harness: MakeHarness) -> None:
    harness = await make_harness(
        EmulatorConfig(clients=(RegisteredClient(grant_type="RESEARCH_STUDY"),))
    )
    assert (await harness.tokens())["access_grant_expiration"] == ""


async def test_wrong_verifier_is_invalid_grant_and_leaves_the_code_usable(
    harness: Harness,
) -> None:
    code, verifier = await harness.code()
    wrong = await harness.exchange(code, pkce_pair()[0])
    right = await harness.exchange(code, verifier)
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"
    assert wrong.json()["status_code"] == 400
    assert right.status_code == 200


async def test_missing_verifier_is_invalid_request(harness: Harness) -> None:
    code, _ = await harness.code()
    response = await harness.exchange(code, "")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


async def test_code_is_single_use(harness: Harness) -> None:
    code, verifier = await harness.code()
    first = await harness.exchange(code, verifier)
    second = await harness.exchange(code, verifier)
    assert first.status_code == 200
    assert second.status_code == 400
    assert second.json()["error"] == "invalid_grant"


async def test_expired_code_is_invalid_grant(harness: Harness) -> None:
    code, verifier = await harness.code()
    harness.clock.advance(601)
    response = await harness.exchange(code, verifier)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


async def test_redirect_uri_must_be_byte_identical(harness: Harness) -> None:
    code, verifier = await harness.code()
    response = await harness.exchange(code, verifier, redirect_uri=REDIRECT_URI + "/")
    assert response.status_code == 400
    assert response.json() == {
        "status_code": 400,
        "error": "invalid_request",
        "error_description": "Mismatching redirect URI.",
    }


@pytest.mark.parametrize(
    "auth",
    [("emulator-client", "wrong-secret"), ("someone-else", "emulator-secret"), None],
)
async def test_bad_client_credentials_are_invalid_client(
    harness: Harness, auth: tuple[str, str] | None
) -> None:
    code, verifier = await harness.code()
    data = code_grant(code, verifier)
    response = await harness.http.post("/v2/o/token/", data=data, auth=auth)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


async def test_client_credentials_in_the_form_are_accepted(harness: Harness) -> None:
    code, verifier = await harness.code()
    data = code_grant(code, verifier, client_id=CLIENT[0], client_secret=CLIENT[1])
    response = await harness.http.post("/v2/o/token/", data=data)
    assert response.status_code == 200


@pytest.mark.parametrize(
    "overrides",
    [
        {"redirect_uri": "http://evil.example/callback"},
        {"client_id": "unknown"},
        {"state": "too-short"},
        {"state": ""},
        {"code_challenge_method": "plain"},
        {"code_challenge": ""},
        {"response_type": "token"},
    ],
)
async def test_bad_authorize_requests_get_400_without_redirect(
    harness: Harness, overrides: dict[str, str]
) -> None:
    _, challenge = pkce_pair()
    response = await harness.http.get(f"/v2/o/authorize/?{authorize_query(challenge, **overrides)}")
    assert response.status_code == 400
    assert "location" not in response.headers


async def test_useragent_raises_on_a_rejected_authorize(harness: Harness) -> None:
    _, challenge = pkce_pair()
    url = f"http://testserver/v2/o/authorize/?{authorize_query(challenge, state='short')}"
    with pytest.raises(AuthorizeRejected, match="state"):
        await authorize(harness.http, url, "BBUser00000", "PW00000!")


async def test_wrong_password_shows_the_form_again_and_useragent_raises(
    harness: Harness,
) -> None:
    _, challenge = pkce_pair()
    url = f"http://testserver/v2/o/authorize/?{authorize_query(challenge)}"
    with pytest.raises(LoginFailed, match="Invalid username or password"):
        await authorize(harness.http, url, "BBUser00000", "PW00001!")


async def test_deny_redirects_with_access_denied(harness: Harness) -> None:
    _, challenge = pkce_pair()
    url = f"http://testserver/v2/o/authorize/?{authorize_query(challenge)}"
    location = await authorize(harness.http, url, "BBUser00003", "PW00003!", allow=False)
    query = parse_qs(urlparse(location).query)
    assert query == {"error": ["access_denied"], "state": ["state-of-at-least-16"]}


async def test_requested_scopes_narrow_the_grant(harness: Harness) -> None:
    code, verifier = await harness.code(scope="patient/ExplanationOfBenefit.read openid")
    body = (await harness.exchange(code, verifier)).json()
    assert body["scope"] == "patient/ExplanationOfBenefit.read"


async def test_consent_post_needs_the_pages_csrf_token(harness: Harness) -> None:
    _, challenge = pkce_pair()
    start = await harness.http.get(f"/v2/o/authorize/?{authorize_query(challenge)}")
    request_id = parse_qs(urlparse(start.headers["location"]).query)["auth_request"][0]
    login = await harness.http.post(
        "/mymedicare/login",
        data={"auth_request": request_id, "username": "BBUser00000", "password": "PW00000!"},
    )
    assert login.status_code == 403
