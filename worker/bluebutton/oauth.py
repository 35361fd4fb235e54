"""OAuth 2.0 with BB2: PKCE, the authorize URL, code exchange, refresh, revoke."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlencode

import httpx
import orjson

from worker import errors
from worker.bluebutton import endpoints
from worker.bluebutton.answer_errors import TokenGrant, revoke_error, token_error
from worker.bluebutton.client import BlueButtonClient


@dataclass(frozen=True)
class ClientCredentials:
    """The app's BB2 client id and secret."""

    client_id: str
    client_secret: str

    def __repr__(self) -> str:
        return f"ClientCredentials(client_id={self.client_id!r}, client_secret='***')"

    def basic_auth(self) -> httpx.BasicAuth:
        """HTTP Basic client authentication, as the BB2 docs show it."""
        return httpx.BasicAuth(self.client_id, self.client_secret)


@dataclass(frozen=True)
class PkcePair:
    """A PKCE code verifier and its S256 challenge (the only method BB2 accepts)."""

    verifier: str
    challenge: str


@dataclass(frozen=True)
class TokenSet:
    """What a successful token response grants."""

    access_token: str
    refresh_token: str
    expires_at: datetime
    scopes: frozenset[str]
    patient_id: str
    grant_expires_at: datetime | None

    def __repr__(self) -> str:
        return (
            f"TokenSet(patient_id=..., scopes={sorted(self.scopes)}, expires_at={self.expires_at})"
        )


def make_pkce() -> PkcePair:
    """A fresh verifier (86 characters from ``secrets``) and its S256 challenge."""
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return PkcePair(verifier=verifier, challenge=challenge)


def make_state() -> str:
    """A 32-byte random ``state`` (BB2 requires at least 16 characters)."""
    return secrets.token_urlsafe(32)


def authorize_url(
    base_url: str, *, client_id: str, redirect_uri: str, state: str, challenge: str
) -> str:
    """The URL a beneficiary's browser opens to log in and consent."""
    query = urlencode(
        {
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "scope": " ".join(endpoints.REQUESTED_SCOPES),
        }
    )
    return f"{base_url.rstrip('/')}{endpoints.AUTHORIZE_PATH}?{query}"


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_token_response(body: bytes, now: datetime) -> TokenSet:
    """Read a token response; a ProtocolError names the first field that is missing."""
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise errors.ProtocolError("token response is not JSON") from exc
    if not isinstance(data, dict):
        raise errors.ProtocolError("token response is not a JSON object")
    for field in ("access_token", "refresh_token", "patient"):
        if not isinstance(data.get(field), str) or not data[field]:
            raise errors.ProtocolError(f"token response lacks {field}")
    expires_in = data.get("expires_in")
    if not isinstance(expires_in, int) or expires_in <= 0:
        raise errors.ProtocolError("token response lacks a positive expires_in")
    scope = data.get("scope")
    return TokenSet(
        access_token=data["access_token"],
        refresh_token=data["refresh_token"],
        expires_at=now + timedelta(seconds=expires_in),
        scopes=frozenset(scope.split()) if isinstance(scope, str) else frozenset(),
        patient_id=data["patient"],
        grant_expires_at=_parse_time(data.get("access_grant_expiration")),
    )


async def _token_request(
    client: BlueButtonClient,
    creds: ClientCredentials,
    form: dict[str, str],
    grant: TokenGrant,
    *,
    send_by: float | None = None,
    slot_taken: bool = False,
) -> TokenSet:
    # A code, and a rolling refresh token, can be spent once: no blind repeat.
    response = await client.request(
        "POST",
        endpoints.TOKEN_PATH,
        data=form,
        auth=creds.basic_auth(),
        once=True,
        send_by=send_by,
        slot_taken=slot_taken,
    )
    if response.status_code != 200:
        raise token_error(response.status_code, response.content, grant)
    return parse_token_response(response.content, datetime.now(UTC))


async def exchange_code(
    client: BlueButtonClient,
    creds: ClientCredentials,
    *,
    code: str,
    code_verifier: str,
    redirect_uri: str,
    send_by: float | None = None,
) -> TokenSet:
    """Trade an authorization code for tokens (single use: never call twice per code);
    not sent at all when its budget slot comes after ``send_by`` (Unix seconds), when
    the code is dead (:class:`~worker.errors.CodeExpired`)."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": code_verifier,
        "redirect_uri": redirect_uri,
    }
    return await _token_request(client, creds, form, "authorization_code", send_by=send_by)


async def _refresh_once(
    client: BlueButtonClient, creds: ClientCredentials, refresh_token: str, *, slot_taken: bool
) -> TokenSet:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return await _token_request(client, creds, form, "refresh_token", slot_taken=slot_taken)


async def refresh(
    client: BlueButtonClient,
    creds: ClientCredentials,
    refresh_token: str,
    *,
    slot_taken: bool = False,
) -> TokenSet:
    """Spend a refresh token; BB2 answers with a new one and the old one dies.
    ``slot_taken``: the caller took the first request's budget slot (``take_slot``).

    An edge's 5xx or a timeout may never have reached CMS: the same token is sent once
    more. If CMS then says it was spent (400 ``invalid_grant``), the first request did
    reach it and its new tokens were lost on the way back (FACTS.md, Authorization).
    """
    try:
        return await _refresh_once(client, creds, refresh_token, slot_taken=slot_taken)
    except (errors.EdgeError, errors.TransportError) as first:
        try:
            return await _refresh_once(client, creds, refresh_token, slot_taken=False)
        except errors.ReconsentRequired as exc:
            if exc.grant_ended or exc.status != 400:
                raise
            raise errors.RefreshInterrupted(
                f"a refresh whose answer was lost ({first}) spent the refresh token",
                status=exc.status,
            ) from exc


TokenHint = Literal["access_token", "refresh_token"]


async def end_grant(client: BlueButtonClient, creds: ClientCredentials, access_token: str) -> None:
    """Delete the beneficiary's data access grant at CMS, and every token of it, with a live
    access token: ``/v2/o/revoke/`` looks the token up as an access token (RevokeView).

    A token CMS cannot find as an access token (rotated away, already revoked, this very
    call's earlier try included) gets handler500's JSON 500: a ServerError whose status is
    500; a 500 without that JSON is an edge's, an EdgeError (``revoke_error``).
    """
    await _revoke(client, creds, endpoints.REVOKE_GRANT_PATH, {"token": access_token}, once=True)


async def revoke_token(
    client: BlueButtonClient, creds: ClientCredentials, token: str, hint: TokenHint
) -> None:
    """Revoke one token and leave the grant (RFC 7009's ``/v2/o/revoke_token/``, 200 in
    every case). A refresh token is revoked only with ``token_type_hint=refresh_token``."""
    form = {"token": token, "token_type_hint": hint}
    await _revoke(client, creds, endpoints.REVOKE_TOKEN_PATH, form, once=False)


async def _revoke(
    client: BlueButtonClient,
    creds: ClientCredentials,
    path: str,
    form: dict[str, str],
    *,
    once: bool,
) -> None:
    # once: a 500 from /v2/o/revoke/ is an answer (token not found), not worth repeating.
    response = await client.request("POST", path, data=form, auth=creds.basic_auth(), once=once)
    if response.status_code != 200:
        raise revoke_error(response.status_code, response.content)
