"""Helpers of the emulator tests: a fake clock, PKCE, and a harness for the OAuth dance."""

import base64
import hashlib
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import httpx

from worker.emulator.config import RegisteredClient
from worker.emulator.state import EmulatorState
from worker.emulator.useragent import authorize

REDIRECT_URI = "http://localhost:3000/api/auth/smart/callback"
CLIENT = ("emulator-client", "emulator-secret")
# A second app registered at the emulator (one grant per beneficiary and app).
ACME = RegisteredClient(client_id="acme-client", client_secret="acme-secret", name="Acme Health")


def code_grant(code: str, verifier: str, **fields: str) -> dict[str, str]:
    """The form of an authorization_code token request (FACTS "Authorization")."""
    grant = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier}
    return {**grant, "redirect_uri": REDIRECT_URI, **fields}


ME = "-19990000000001"


class FakeClock:
    """A clock tests move by hand; its `sleep` moves it at once and remembers each delay."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_query(challenge: str, **overrides: str) -> str:
    """The query string of a valid /v2/o/authorize/ call, with overrides."""
    params = {
        "client_id": CLIENT[0],
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "state": "state-of-at-least-16",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    return urlencode({key: value for key, value in params.items() if value})


@dataclass
class Harness:
    """An emulator app reached through httpx, with helpers for the OAuth dance."""

    http: httpx.AsyncClient
    clock: FakeClock
    state: EmulatorState

    async def code(
        self, username: str = "BBUser00000", *, share: bool = True, **overrides: str
    ) -> tuple[str, str]:
        """Authorize through the pages; returns (code, verifier)."""
        verifier, challenge = pkce_pair()
        url = f"http://testserver/v2/o/authorize/?{authorize_query(challenge, **overrides)}"
        password = f"PW{username.removeprefix('BBUser')}!"
        location = await authorize(self.http, url, username, password, share_personal_info=share)
        return parse_qs(urlparse(location).query)["code"][0], verifier

    async def exchange(
        self, code: str, verifier: str, *, client: RegisteredClient | None = None, **fields: str
    ) -> httpx.Response:
        """POST the code to the token endpoint with Basic auth (of ``client``, else CLIENT)."""
        auth = CLIENT if client is None else (client.client_id, client.client_secret)
        return await self.http.post(
            "/v2/o/token/", data=code_grant(code, verifier, **fields), auth=auth
        )

    async def tokens(
        self,
        username: str = "BBUser00000",
        *,
        share: bool = True,
        client: RegisteredClient | None = None,
    ) -> dict[str, Any]:
        """A fresh token response for this user (through ``client``, else CLIENT)."""
        overrides = {} if client is None else {"client_id": client.client_id}
        code, verifier = await self.code(username, share=share, **overrides)
        response = await self.exchange(code, verifier, client=client)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def refresh(self, refresh_token: str) -> httpx.Response:
        """POST a refresh_token grant."""
        data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        return await self.http.post("/v2/o/token/", data=data, auth=CLIENT)

    async def fhir(self, path: str, token: str, **params: Any) -> httpx.Response:
        """GET a FHIR path with the bearer token."""
        headers = {"Authorization": f"Bearer {token}"}
        return await self.http.get(f"/v2/fhir/{path}", params=params, headers=headers)


MakeHarness = Callable[..., Awaitable[Harness]]
