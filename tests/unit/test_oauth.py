import base64
import hashlib
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest
import respx

from tests.unit.fakes import RecordingBudget
from worker import errors
from worker.bluebutton import oauth
from worker.bluebutton.client import BlueButtonClient, build_http_client

BASE = "https://sandbox.bluebutton.cms.gov"
CREDS = oauth.ClientCredentials("client-1", "secret-1")
TOKEN_BODY = {
    "access_token": "AT1",
    "token_type": "Bearer",
    "expires_in": 3600,
    "scope": "patient/Coverage.read patient/ExplanationOfBenefit.read",
    "refresh_token": "RT1",
    "patient": "-19990000000001",
    "access_grant_expiration": "2027-12-05T19:17:53Z",
}


@pytest.fixture
async def client() -> BlueButtonClient:
    http = build_http_client(BASE, timeout=5, max_connections=2)
    yield BlueButtonClient(http, RecordingBudget())
    await http.aclose()


def test_pkce_pair_is_s256() -> None:
    pair = oauth.make_pkce()
    assert 43 <= len(pair.verifier) <= 128
    digest = hashlib.sha256(pair.verifier.encode()).digest()
    assert pair.challenge == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert oauth.make_pkce().verifier != pair.verifier


def test_authorize_url_has_what_bb2_requires() -> None:
    state = oauth.make_state()
    url = oauth.authorize_url(
        BASE, client_id="c", redirect_uri="http://localhost:3000/cb", state=state, challenge="ch"
    )
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert parts.path == "/v2/o/authorize/"
    assert query["code_challenge_method"] == ["S256"]
    assert query["response_type"] == ["code"]
    assert len(query["state"][0]) >= 16
    assert "openid" not in query["scope"][0].split()
    assert set(query["scope"][0].split()) == {
        "patient/Patient.read",
        "patient/Coverage.read",
        "patient/ExplanationOfBenefit.read",
        "profile",
    }


def test_parse_token_response_reads_every_field() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    tokens = oauth.parse_token_response(orjson.dumps(TOKEN_BODY), now)
    assert tokens.patient_id == "-19990000000001"
    assert tokens.expires_at == datetime(2026, 1, 1, 1, tzinfo=UTC)
    assert tokens.grant_expires_at == datetime(2027, 12, 5, 19, 17, 53, tzinfo=UTC)
    assert "patient/Patient.read" not in tokens.scopes
    assert "AT1" not in repr(tokens)


def test_empty_grant_expiration_means_none() -> None:
    body = orjson.dumps({**TOKEN_BODY, "access_grant_expiration": ""})
    assert oauth.parse_token_response(body, datetime.now(UTC)).grant_expires_at is None


@pytest.mark.parametrize("missing", ["access_token", "refresh_token", "patient", "expires_in"])
def test_token_response_missing_field(missing: str) -> None:
    body = orjson.dumps({k: v for k, v in TOKEN_BODY.items() if k != missing})
    with pytest.raises(errors.ProtocolError, match=missing):
        oauth.parse_token_response(body, datetime.now(UTC))


@respx.mock
async def test_exchange_sends_basic_auth_and_pkce(client: BlueButtonClient) -> None:
    route = respx.post(f"{BASE}/v2/o/token/").mock(
        return_value=httpx.Response(200, json=TOKEN_BODY)
    )
    tokens = await oauth.exchange_code(
        client, CREDS, code="C", code_verifier="V" * 43, redirect_uri="http://localhost:3000/cb"
    )
    assert tokens.access_token == "AT1"
    request = route.calls.last.request
    assert (
        request.headers["Authorization"]
        == "Basic " + base64.b64encode(b"client-1:secret-1").decode()
    )
    form = parse_qs(request.content.decode())
    assert form == {
        "grant_type": ["authorization_code"],
        "code": ["C"],
        "code_verifier": ["V" * 43],
        "redirect_uri": ["http://localhost:3000/cb"],
    }


@respx.mock
async def test_exchange_invalid_grant_is_authorization_failed(client: BlueButtonClient) -> None:
    respx.post(f"{BASE}/v2/o/token/").mock(
        return_value=httpx.Response(
            400,
            json={
                "status_code": 400,
                "error": "invalid_grant",
                "error_description": "Invalid grant.",
            },
        )
    )
    with pytest.raises(errors.AuthorizationFailed, match="invalid_grant"):
        await oauth.exchange_code(client, CREDS, code="C", code_verifier="V" * 43, redirect_uri="u")


@respx.mock
async def test_refresh_on_lapsed_grant_needs_reconsent(client: BlueButtonClient) -> None:
    respx.post(f"{BASE}/v2/o/token/").mock(
        return_value=httpx.Response(
            401,
            json={
                "status_code": 401,
                "error": "invalid_grant",
                "error_description": "User access has timed out.",
            },
        )
    )
    with pytest.raises(errors.ReconsentRequired):
        await oauth.refresh(client, CREDS, "RT1")


@respx.mock
async def test_revoke_token_sends_the_hint_with_the_apps_credentials(
    client: BlueButtonClient,
) -> None:
    revoke = respx.post(f"{BASE}/v2/o/revoke_token/").mock(return_value=httpx.Response(200))
    await oauth.revoke_token(client, CREDS, "RT1", "refresh_token")
    sent = revoke.calls.last.request
    # Without the hint CMS silently leaves a refresh token alive (FACTS.md, Revocation).
    assert parse_qs(sent.content.decode()) == {
        "token": ["RT1"],
        "token_type_hint": ["refresh_token"],
    }
    pair = f"{CREDS.client_id}:{CREDS.client_secret}".encode()
    assert sent.headers["Authorization"] == f"Basic {base64.b64encode(pair).decode()}"


@respx.mock
async def test_end_grant_sends_the_access_token_to_revoke_once(client: BlueButtonClient) -> None:
    revoke = respx.post(f"{BASE}/v2/o/revoke/").mock(
        return_value=httpx.Response(500, text="<h1>Server Error (500)</h1>")
    )
    with pytest.raises(errors.ServerError) as caught:
        await oauth.end_grant(client, CREDS, "AT1")
    assert caught.value.status == 500
    assert revoke.call_count == 1  # a 500 here is CMS's "not an access token": no repeat
    assert parse_qs(revoke.calls.last.request.content.decode()) == {"token": ["AT1"]}


@respx.mock
async def test_an_inactive_app_revoking_is_paused(client: BlueButtonClient) -> None:
    body = {"status_code": 403, "description": "Application is not active or does not exist."}
    respx.post(f"{BASE}/v2/o/revoke_token/").mock(return_value=httpx.Response(403, json=body))
    with pytest.raises(errors.AppPaused):
        await oauth.revoke_token(client, CREDS, "RT1", "refresh_token")


def _token_error(status: int, error: str, description: str) -> httpx.Response:
    body = {"status_code": status, "error": error, "error_description": description}
    return httpx.Response(status, json=body)


@respx.mock
async def test_refresh_of_an_inactive_app_is_paused_not_reconsent(
    client: BlueButtonClient,
) -> None:
    respx.post(f"{BASE}/v2/o/token/").mock(
        return_value=_token_error(
            403, "invalid_client", "This application, Acme, is temporarily inactive."
        )
    )
    with pytest.raises(errors.AppPaused):
        await oauth.refresh(client, CREDS, "RT1")


@respx.mock
async def test_a_one_time_apps_refusal_stays_reconsent(client: BlueButtonClient) -> None:
    respx.post(f"{BASE}/v2/o/token/").mock(
        return_value=_token_error(403, "invalid_client", "Refresh not allowed.")
    )
    with pytest.raises(errors.ReconsentRequired) as caught:
        await oauth.refresh(client, CREDS, "RT1")
    assert not caught.value.grant_ended


@pytest.mark.parametrize(
    ("status", "error", "ended"),
    [(403, "invalid_grant", True), (401, "invalid_grant", True), (400, "invalid_request", True)],
)
@respx.mock
async def test_refresh_answers_that_say_the_grant_ended(
    client: BlueButtonClient, status: int, error: str, ended: bool
) -> None:
    respx.post(f"{BASE}/v2/o/token/").mock(return_value=_token_error(status, error, "gone"))
    with pytest.raises(errors.ReconsentRequired) as caught:
        await oauth.refresh(client, CREDS, "RT1")
    assert caught.value.grant_ended is ended


@pytest.mark.parametrize("status", [502, 404])
@respx.mock
async def test_cms_failing_mid_refresh_is_not_a_consent_event(
    client: BlueButtonClient, status: int
) -> None:
    route = respx.post(f"{BASE}/v2/o/token/").mock(
        return_value=httpx.Response(status, json={"status_code": status, "message": "Not found."})
    )
    with pytest.raises(errors.RefreshInterrupted, match="mid-refresh") as caught:
        await oauth.refresh(client, CREDS, "RT1")
    assert not caught.value.grant_ended
    assert route.call_count == 1  # the token may be spent: never sent again


@respx.mock
async def test_an_edge_5xx_on_refresh_sends_the_same_token_once_more(
    client: BlueButtonClient,
) -> None:
    route = respx.post(f"{BASE}/v2/o/token/").mock(
        side_effect=[
            httpx.Response(503, text="<html>bad gateway</html>"),
            httpx.Response(200, json=TOKEN_BODY),
        ]
    )
    tokens = await oauth.refresh(client, CREDS, "RT0")
    assert tokens.refresh_token == "RT1"
    sent = [parse_qs(call.request.content.decode())["refresh_token"] for call in route.calls]
    assert sent == [["RT0"], ["RT0"]]


@respx.mock
async def test_a_lost_refresh_answer_then_spent_token_is_interrupted(
    client: BlueButtonClient,
) -> None:
    respx.post(f"{BASE}/v2/o/token/").mock(
        side_effect=[
            httpx.ReadTimeout("lost"),
            _token_error(400, "invalid_grant", "Invalid grant."),
        ]
    )
    with pytest.raises(errors.RefreshInterrupted):
        await oauth.refresh(client, CREDS, "RT0")
