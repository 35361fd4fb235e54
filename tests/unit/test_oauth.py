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
async def test_revoke_sends_the_token_with_the_apps_credentials(client: BlueButtonClient) -> None:
    revoke = respx.post(f"{BASE}/v2/o/revoke_token/").mock(return_value=httpx.Response(200))
    await oauth.revoke(client, CREDS, "RT1")
    sent = revoke.calls.last.request
    assert parse_qs(sent.content.decode()) == {"token": ["RT1"]}
    pair = f"{CREDS.client_id}:{CREDS.client_secret}".encode()
    assert sent.headers["Authorization"] == f"Basic {base64.b64encode(pair).decode()}"
