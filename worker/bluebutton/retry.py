"""Pure decisions about failures: Retry-After, backoff, and what each status means.

Nothing here does I/O or reads a clock, so the whole decision table is unit-tested
without a network or sleeping.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Final, Literal

import orjson

from worker import errors

MAX_RETRY_AFTER: Final = 300.0
LAPSED_GRANT_TEXT: Final = "user access has timed out"
APP_INACTIVE_TEXT: Final = "is temporarily inactive"
# The backend's words for a startIndex past the end (FACTS.md, Errors).
START_INDEX_TEXT: Final = "must be less than"
MAX_DETAIL_CHARS: Final = 200

TokenGrant = Literal["authorization_code", "refresh_token"]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a request is repeated before the job gives up for now."""

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 20.0

    def backoff(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Full-jitter delay before retry number ``attempt`` (0-based)."""
        return rand() * min(self.max_delay, self.base_delay * 2.0**attempt)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP-date.

    Returns None when the header is absent or unreadable, so the caller backs off instead;
    the result is clamped to [0, MAX_RETRY_AFTER] so a hostile value cannot park us forever.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        seconds = float(text)
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = (when - now).total_seconds()
    return max(0.0, min(MAX_RETRY_AFTER, seconds))


def announced_limit(value: str | None) -> int | None:
    """The request limit BB2 announces in ``X-RateLimit-Limit``, when it is a number."""
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


def is_transient_status(status: int) -> bool:
    """Statuses worth repeating the same request for."""
    return status == 429 or status in {500, 502, 503, 504}


def _json_object(body: bytes) -> dict[str, object] | None:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _json_field(body: bytes, *names: str) -> str:
    data = _json_object(body) or {}
    for name in names:
        value = data.get(name)
        if isinstance(value, str) and value:
            return value[:MAX_DETAIL_CHARS]
    return ""


def is_app_inactive(text: str) -> bool:
    """CMS's words for an app it made inactive: "This application, NAME, is temporarily
    inactive." (apps/constants.py; FACTS.md, Authorization)."""
    return APP_INACTIVE_TEXT in text.lower()


def fhir_error(status: int, body: bytes) -> errors.BlueButtonError:
    """The error a failed FHIR or userinfo response stands for (v2 bodies: ``{"detail"}``).

    Only BB2's own JSON speaks for CMS (FACTS.md, Errors): a 403 or 5xx without it came
    from an edge or gateway and says nothing about the beneficiary.
    """
    detail = _json_field(body, "detail")
    message = f"BB2 answered {status}: {detail or f'HTTP {status}'}"
    if status == 401:
        if is_app_inactive(detail):
            return errors.AppPaused(message, status=status)
        if LAPSED_GRANT_TEXT in detail.lower():
            return errors.ReconsentRequired(message, status=status, grant_ended=True)
        return errors.TokenExpired(message, status=status)
    if status == 429:
        return errors.RateLimited(message, status=status)
    if status >= 500:
        return (errors.ServerError if detail else errors.EdgeError)(message, status=status)
    if status == 403 and not detail:
        return errors.EdgeRefused(message, status=status)
    if status == 400 and START_INDEX_TEXT in detail.lower():
        return errors.CursorPastEnd(message, status=status)
    permanent: dict[int, type[errors.PermanentError]] = {
        400: errors.BadRequest,
        403: errors.Forbidden,
        404: errors.NotFound,
    }
    return permanent.get(status, errors.ProtocolError)(message, status=status)


def _is_mid_refresh_failure(status: int, body: bytes) -> bool:
    # CMS mints the new tokens, then its backend lookup answers {"status_code", "message"}
    # with 502 or 404 (apps/dot_ext/views/authorization.py, TokenView.post).
    data = _json_object(body) or {}
    return status in {404, 502} and data.get("status_code") == status and "message" in data


# On refresh, the answers that mean CMS has no grant behind the token any more:
# deleted (403 invalid_grant), lapsed (401 invalid_grant), token deleted with a
# re-consent or unknown (400 invalid_request). FACTS.md, Authorization.
_GRANT_ENDED: Final = {(403, "invalid_grant"), (401, "invalid_grant"), (400, "invalid_request")}


def token_error(status: int, body: bytes, grant: TokenGrant) -> errors.BlueButtonError:
    """The error a failed token-endpoint response stands for.

    ``invalid_grant`` means a bad code during the exchange, but a dead grant (or a spent
    refresh token) on refresh.
    """
    code = _json_field(body, "error")
    description = _json_field(body, "error_description", "detail", "message")
    message = f"token endpoint answered {status} {code or f'HTTP {status}'}" + (
        f": {description}" if description else ""
    )
    if status == 429:
        return errors.RateLimited(message, status=status)
    if grant == "refresh_token" and _is_mid_refresh_failure(status, body):
        return errors.RefreshInterrupted(
            f"CMS failed mid-refresh ({message}); the refresh token may be spent", status=status
        )
    if status >= 500:
        return (errors.ServerError if _json_object(body) else errors.EdgeError)(
            message, status=status
        )
    if code == "invalid_client" and is_app_inactive(description):
        return errors.AppPaused(message, status=status)
    if code == "invalid_client" and status == 401:
        return errors.ClientRejected(message, status=status)
    if grant == "authorization_code":
        return errors.AuthorizationFailed(message, status=status)
    if status == 403 and not code:
        return errors.EdgeRefused(message, status=status)
    # On refresh: a dead grant, a spent refresh token (400 invalid_grant) or a one-time
    # app (403 invalid_client): only a new authorization helps.
    if status in {400, 401, 403}:
        ended = (status, code) in _GRANT_ENDED
        return errors.ReconsentRequired(message, status=status, grant_ended=ended)
    return errors.ProtocolError(message, status=status)


def revoke_error(status: int, body: bytes) -> errors.BlueButtonError:
    """The error a failed revocation stands for. An inactive app answers 403 ("Application
    is not active or does not exist.", RevokeTokenView; "temporarily inactive", RevokeView):
    the revocation waits for the app. ``/v2/o/revoke/`` answers 500 for a token it cannot
    find as an access token (FACTS.md, Revocation): a ServerError with status 500."""
    text = _json_field(body, "description", "error_description", "detail").lower()
    if status == 403 and ("not active" in text or is_app_inactive(text)):
        return errors.AppPaused(f"revocation answered 403: {text}", status=status)
    return token_error(status, body, "refresh_token")


def job_retry_delay(
    job_try: int, retry_after: float | None, cap: float = 600.0, base: float = 15.0
) -> float:
    """Seconds before arq runs a job again after its in-job retries ran out.

    Grows ``base`` (15 s), twice that, four times ... up to ``cap``, and never sooner than
    the server asked.
    """
    delay = min(cap, base * 2.0 ** max(0, job_try - 1))
    return max(delay, retry_after or 0.0)
