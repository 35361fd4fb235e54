"""Codes, tokens and data access grants, kept as BB2's database keeps them.

What the store remembers decides the answers, as in BB2 (django-oauth-toolkit models plus
apps/authorization): an access token is *deleted* when revoked or rotated away, but stays
after it expires until cleaned up; a refresh token is *marked revoked* when rotated or when
its grant is deleted, and *deleted* when the beneficiary authorizes the app again
(`remove_application_user_pair_tokens_data_access`). A refresh answers differently for each
of these states (see token_routes).
"""

import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]
# oauthlib's generate_token: 30 characters from letters and digits (FACTS "Authorization").
TOKEN_LENGTH = 30
_TOKEN_CHARACTERS = string.ascii_letters + string.digits


def new_token() -> str:
    """A code or token as BB2 mints them: 30 letters and digits."""
    return "".join(secrets.choice(_TOKEN_CHARACTERS) for _ in range(TOKEN_LENGTH))


@dataclass(frozen=True)
class AuthCode:
    """An authorization code waiting to be exchanged once."""

    client_id: str
    redirect_uri: str
    code_challenge: str
    patient_id: str
    scopes: tuple[str, ...]
    expires_at: float


@dataclass
class AccessToken:
    """A bearer token; `uses_left` counts down FHIR requests when an expiry was scheduled."""

    client_id: str
    patient_id: str
    scopes: tuple[str, ...]
    expires_at: float
    uses_left: int | None = None

    def live(self, now: float) -> bool:
        """Not expired and not used up."""
        return now < self.expires_at and self.uses_left != 0


@dataclass
class RefreshToken:
    """A refresh token, the access token issued with it, and whether it was revoked."""

    client_id: str
    patient_id: str
    scopes: tuple[str, ...]
    access_token: str
    revoked: bool = False


@dataclass
class Grant:
    """A beneficiary's data access grant to one app; `expires_at` None never lapses."""

    expires_at: float | None

    def lapsed(self, now: float) -> bool:
        """Whether the grant has timed out."""
        return self.expires_at is not None and now >= self.expires_at


class TokenStore:
    """Codes, access and refresh tokens, and grants keyed by (client id, patient id)."""

    def __init__(self, now: Clock) -> None:
        self.now = now
        self._codes: dict[str, AuthCode] = {}
        self._access: dict[str, AccessToken] = {}
        self._refresh: dict[str, RefreshToken] = {}
        self._grants: dict[tuple[str, str], Grant] = {}
        self._expiry_armed: dict[str, int] = {}

    # Codes

    def save_code(self, code: AuthCode) -> str:
        """Store a code and return its value."""
        value = new_token()
        self._codes[value] = code
        return value

    def code(self, value: str) -> AuthCode | None:
        """An unused, unexpired code."""
        found = self._codes.get(value)
        return None if found is None or self.now() >= found.expires_at else found

    def consume_code(self, value: str) -> None:
        """Make a code unusable (after a successful exchange)."""
        self._codes.pop(value, None)

    # Grants

    def grant(self, client_id: str, patient_id: str) -> Grant | None:
        """The data access grant of this beneficiary to this app, lapsed or not."""
        return self._grants.get((client_id, patient_id))

    def save_grant(self, client_id: str, patient_id: str, expires_at: float | None) -> Grant:
        """Create or renew a grant on consent."""
        grant = Grant(expires_at=expires_at)
        self._grants[(client_id, patient_id)] = grant
        return grant

    def delete_grant(self, client_id: str, patient_id: str) -> bool:
        """Delete a grant and revoke its tokens, as BB2's post_delete signal
        `revoke_associated_tokens` does (apps/authorization/signals.py): access tokens are
        deleted, refresh tokens marked revoked. Returns whether a grant existed."""
        existed = self._grants.pop((client_id, patient_id), None) is not None
        for key in self._access_of(client_id, patient_id):
            del self._access[key]
        for token in self._refresh.values():
            if (token.client_id, token.patient_id) == (client_id, patient_id):
                token.revoked = True
        return existed

    def delete_grants(self, patient_id: str) -> int:
        """Delete every grant of this beneficiary (Medicare.gov's "disconnect")."""
        keys = [key for key in self._grants if key[1] == patient_id]
        for client_id, _ in keys:
            self.delete_grant(client_id, patient_id)
        return len(keys)

    def lapse_grants(self, patient_id: str) -> int:
        """Make every grant of this beneficiary time out now; returns how many."""
        grants = [g for (_, patient), g in self._grants.items() if patient == patient_id]
        for grant in grants:
            grant.expires_at = self.now()
        return len(grants)

    def describe(self, patient_id: str) -> list[dict[str, object]]:
        """Every app this beneficiary has a grant or a live token with, for the admin API."""
        pairs = set(self._grants) | {(t.client_id, t.patient_id) for t in self._access.values()}
        pairs |= {(t.client_id, t.patient_id) for t in self._refresh.values()}
        found = [self._describe_pair(*pair) for pair in sorted(pairs) if pair[1] == patient_id]
        return [
            f for f in found if f["grant"] or f["live_access_tokens"] or f["live_refresh_tokens"]
        ]

    def _describe_pair(self, client_id: str, patient_id: str) -> dict[str, object]:
        now = self.now()
        access = [self._access[key] for key in self._access_of(client_id, patient_id)]
        refresh = [
            t
            for t in self._refresh.values()
            if (t.client_id, t.patient_id) == (client_id, patient_id) and not t.revoked
        ]
        return {
            "client_id": client_id,
            "patient_id": patient_id,
            "grant": (client_id, patient_id) in self._grants,
            "live_access_tokens": sum(1 for token in access if token.live(now)),
            "live_refresh_tokens": len(refresh),
        }

    # Tokens

    def issue_tokens(
        self, client_id: str, patient_id: str, scopes: tuple[str, ...], lifetime: int
    ) -> tuple[str, str]:
        """A new access token and its refresh token."""
        access, refresh = new_token(), new_token()
        self._access[access] = AccessToken(
            client_id,
            patient_id,
            scopes,
            self.now() + lifetime,
            uses_left=self._expiry_armed.pop(patient_id, None),
        )
        self._refresh[refresh] = RefreshToken(client_id, patient_id, scopes, access)
        return access, refresh

    def stored_access(self, token: str) -> AccessToken | None:
        """An access token still stored: live or expired, not revoked or rotated away."""
        return self._access.get(token)

    def access_token(self, token: str) -> AccessToken | None:
        """A live access token (not expired, revoked or used up)."""
        found = self._access.get(token)
        return found if found is not None and found.live(self.now()) else None

    def use_access_token(self, token: str) -> AccessToken | None:
        """Like access_token, and spend one of its remaining uses if they are counted."""
        found = self.access_token(token)
        if found is not None and found.uses_left is not None:
            found.uses_left -= 1
        return found

    def stored_refresh(self, token: str) -> RefreshToken | None:
        """A refresh token still stored, revoked or not (deleted ones are gone)."""
        return self._refresh.get(token)

    def client_of(self, token: str) -> str | None:
        """The client an access or refresh token was issued to, even if it is expired."""
        owner = self._access.get(token) or self._refresh.get(token)
        return None if owner is None else owner.client_id

    def revoke_access(self, token: str) -> None:
        """Delete an access token (DOT's AccessToken.revoke). Its refresh token can no longer
        refresh (400 invalid_grant: BB2's get_original_scopes finds no access token), so it
        is marked revoked here."""
        if self._access.pop(token, None) is None:
            return
        for refresh in self._refresh.values():
            if refresh.access_token == token:
                refresh.revoked = True

    def revoke_refresh(self, token: str) -> None:
        """Revoke a refresh token and delete its access token (DOT's RefreshToken.revoke)."""
        refresh = self._refresh.get(token)
        if refresh is not None:
            refresh.revoked = True
            self._access.pop(refresh.access_token, None)

    def delete_tokens(self, client_id: str, patient_id: str) -> None:
        """Delete every access and refresh token of this app and beneficiary, as a new
        authorization does (AuthorizationView.form_valid); the grant stays."""
        for key in self._access_of(client_id, patient_id):
            del self._access[key]
        pair = (client_id, patient_id)
        spent = [k for k, t in self._refresh.items() if (t.client_id, t.patient_id) == pair]
        for key in spent:
            del self._refresh[key]

    def expire_tokens_after(self, patient_id: str, requests: int) -> int:
        """Make this patient's live access tokens die after `requests` more FHIR requests.

        With no live token yet, the next one issued gets the countdown, so a test can make
        a token die in the middle of a sync that has not exchanged its code yet.
        """
        now = self.now()
        live = [t for t in self._access.values() if t.patient_id == patient_id and t.live(now)]
        for token in live:
            token.uses_left = requests
        if not live:
            self._expiry_armed[patient_id] = requests
        return len(live)

    def _access_of(self, client_id: str, patient_id: str) -> list[str]:
        pair = (client_id, patient_id)
        return [k for k, t in self._access.items() if (t.client_id, t.patient_id) == pair]
