"""OAuth rules of BB2 that do not depend on HTTP: scopes, PKCE, grant lifetimes, client auth."""

import base64
import binascii
import calendar
import hashlib
import hmac
from datetime import UTC, datetime
from urllib.parse import unquote

from worker.emulator.config import EmulatorConfig, RegisteredClient

PATIENT_SCOPE = "patient/Patient.read"
COVERAGE_SCOPE = "patient/Coverage.read"
EOB_SCOPE = "patient/ExplanationOfBenefit.read"
PROFILE_SCOPE = "profile"
ALL_SCOPES = (PATIENT_SCOPE, COVERAGE_SCOPE, EOB_SCOPE, PROFILE_SCOPE)
# Unticking "personal information" on the consent page withholds these.
DEMOGRAPHIC_SCOPES = frozenset({PATIENT_SCOPE, PROFILE_SCOPE})
MIN_STATE_LENGTH = 16
_GRANT_MONTHS = 13


def requested_scopes(raw: str | None) -> tuple[str, ...]:
    """The known scopes asked for, in canonical order; none asked means all of them.

    Unknown scopes (such as `openid`) are dropped rather than refused: the token's `scope`
    then tells the app what it really got.
    """
    asked = set((raw or "").split())
    return tuple(s for s in ALL_SCOPES if s in asked) if asked else ALL_SCOPES


def granted_scopes(requested: tuple[str, ...], share_demographics: bool) -> tuple[str, ...]:
    """What the beneficiary grants from what was requested."""
    if share_demographics:
        return requested
    return tuple(s for s in requested if s not in DEMOGRAPHIC_SCOPES)


def stored_challenge(challenge: str) -> str:
    """The challenge as CMS stores it: `=` padding stripped (apps/pkce/oauth2_validators.py,
    save_authorization_code), so the padded challenge of CMS's own SDK works (FACTS
    "Authorization"). CMS checks nothing else about it; "" means it is missing."""
    return challenge.rstrip("=")


def verifier_matches(verifier: str, challenge: str) -> bool:
    """Whether BASE64URL(SHA256(verifier)) without padding equals the stored challenge.

    Like oauthlib's S256 check, only the hash is compared: a verifier outside RFC 7636's
    alphabet (the SDK's ends in `=`) works when it hashes right (FACTS "Authorization").
    """
    digest = hashlib.sha256(verifier.encode()).digest()
    computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return hmac.compare_digest(computed, challenge)


def grant_expiry(client: RegisteredClient, now: float, token_lifetime: int) -> float | None:
    """When a grant given now lapses: 13 months, one token's life, or never (research)."""
    if client.grant_type == "RESEARCH_STUDY":
        return None
    if client.grant_type == "ONE_TIME":
        return now + token_lifetime
    return add_months(datetime.fromtimestamp(now, tz=UTC), _GRANT_MONTHS).timestamp()


def expiration_text(expires_at: float | None) -> str:
    """access_grant_expiration as BB2 writes it, e.g. 2027-12-05T19:17:53Z; empty: never."""
    if expires_at is None:
        return ""
    return datetime.fromtimestamp(expires_at, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def add_months(moment: datetime, months: int) -> datetime:
    """Calendar month arithmetic (like dateutil's relativedelta), clamping the day."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def authenticate_client(
    config: EmulatorConfig, authorization: str | None, form_id: str | None, form_secret: str | None
) -> RegisteredClient | None:
    """The client proven by HTTP Basic credentials or, failing those, by form fields."""
    client_id, secret = basic_credentials(authorization) or (form_id, form_secret)
    client = config.client(client_id or "")
    if client is None or secret is None:
        return None
    return client if hmac.compare_digest(client.client_secret, secret) else None


def basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """(client id, secret) from an `Authorization: Basic` header, URL-decoded per RFC 6749."""
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, colon, secret = decoded.partition(":")
    return (unquote(client_id), unquote(secret)) if colon else None
