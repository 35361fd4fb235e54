"""What a BB2 answer means, pure: the error of the tree (``worker.errors``) a failed FHIR,
token or revocation response stands for, read from its status and body.

Every mapping traces to FACTS.md or the BB2 server code, cited where it is made. Nothing
here does I/O, so the whole table is unit-tested without a network.
"""

from __future__ import annotations

from typing import Final, Literal

import orjson

from worker import errors

LAPSED_GRANT_TEXT: Final = "user access has timed out"
APP_INACTIVE_TEXT: Final = "is temporarily inactive"
# The backend's words for a startIndex past the end (FACTS.md, Errors).
START_INDEX_TEXT: Final = "must be less than"
MAX_DETAIL_CHARS: Final = 200
# What BB2's handler500 (hhs_oauth_server/urls.py:147, rest_framework.exceptions.server_error;
# djangorestframework 3.16.1, rest_framework/exceptions.py:247-254) answers for an uncaught
# exception: a JsonResponse (application/json) of exactly {"error": "Server Error (500)"}.
HANDLER500_ERROR: Final = "Server Error (500)"

TokenGrant = Literal["authorization_code", "refresh_token"]


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


def _is_app_inactive(text: str) -> bool:
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
        if _is_app_inactive(detail):
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
    if code == "invalid_client" and _is_app_inactive(description):
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
    find as an access token (FACTS.md, Revocation): a ServerError with status 500, only
    when its body is handler500's own JSON; any other 500 is an edge's (EdgeError)."""
    text = _json_field(body, "description", "error_description", "detail").lower()
    if status == 403 and ("not active" in text or _is_app_inactive(text)):
        return errors.AppPaused(f"revocation answered 403: {text}", status=status)
    if status == 500 and _json_field(body, "error") != HANDLER500_ERROR:
        return errors.EdgeError("revocation answered 500 without BB2's JSON", status=status)
    return token_error(status, body, "refresh_token")
