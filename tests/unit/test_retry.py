from datetime import UTC, datetime

import pytest

from worker import errors
from worker.bluebutton.answer_errors import fhir_error, revoke_error, token_error
from worker.bluebutton.retry import (
    MAX_RETRY_AFTER,
    RetryPolicy,
    is_transient_status,
    parse_retry_after,
)
from worker.runtime.job_retry import job_retry_delay

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("7", 7.0),
        (" 0 ", 0.0),
        ("Mon, 23 Nov 2026 12:00:30 GMT", 30.0),
        ("Mon, 23 Nov 2026 11:59:00 GMT", 0.0),  # a date in the past: go now
        ("999999", MAX_RETRY_AFTER),  # clamped
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("1.5", None),  # RFC 9110 delay-seconds is a whole number
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, NOW) == expected


def test_backoff_is_full_jitter_and_capped() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0)
    assert policy.backoff(0, lambda: 1.0) == 0.5
    assert policy.backoff(2, lambda: 1.0) == 2.0
    assert policy.backoff(10, lambda: 1.0) == 4.0
    assert policy.backoff(10, lambda: 0.0) == 0.0
    assert policy.backoff(3, lambda: 0.25) == 1.0


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_statuses(status: int) -> None:
    assert is_transient_status(status)


@pytest.mark.parametrize("status", [200, 400, 401, 403, 404, 501])
def test_not_transient_statuses(status: int) -> None:
    assert not is_transient_status(status)


@pytest.mark.parametrize(
    ("status", "body", "kind", "decision"),
    [
        (
            401,
            b'{"detail": "Authentication credentials were not provided."}',
            errors.TokenExpired,
            errors.Decision.REFRESH,
        ),
        (
            401,
            b'{"detail": "User access has timed out. To refresh Medicare data, end user must'
            b' re-authenticate and consent to share their data."}',
            errors.ReconsentRequired,
            errors.Decision.RECONSENT,
        ),
        (
            403,
            b'{"detail": "You do not have permission to perform this action."}',
            errors.Forbidden,
            errors.Decision.GIVE_UP,
        ),
        (404, b'{"detail": "Not found."}', errors.NotFound, errors.Decision.GIVE_UP),
        (400, b'{"detail": "bad _count"}', errors.BadRequest, errors.Decision.GIVE_UP),
        (429, b"{}", errors.RateLimited, errors.Decision.RETRY_LATER),
        (502, b"<html>bad gateway</html>", errors.EdgeError, errors.Decision.RETRY_LATER),
        (502, b'{"detail": "backend failed"}', errors.ServerError, errors.Decision.RETRY_LATER),
        (418, b"", errors.ProtocolError, errors.Decision.GIVE_UP),
        # FACTS.md, Authorization: an inactive app's FHIR calls answer 401 with this text.
        (
            401,
            b'{"detail": "This application, Acme, is temporarily inactive."}',
            errors.AppPaused,
            errors.Decision.APP_PAUSED,
        ),
        # FACTS.md, Errors: a 403 that is not BB2's JSON says nothing about consent.
        (403, b"<html>Access Denied</html>", errors.EdgeRefused, errors.Decision.RETRY_LATER),
        (
            400,
            b'{"detail": "Value for startIndex (30) must be less than than result size (20)"}',
            errors.CursorPastEnd,
            errors.Decision.RESTART_TYPE,
        ),
    ],
)
def test_fhir_error_table(
    status: int, body: bytes, kind: type[errors.BlueButtonError], decision: errors.Decision
) -> None:
    error = fhir_error(status, body)
    assert type(error) is kind
    assert error.decision is decision
    assert error.status == status


def test_fhir_error_message_carries_detail() -> None:
    assert "Not found." in str(fhir_error(404, b'{"detail": "Not found."}'))


@pytest.mark.parametrize(
    ("status", "error", "grant", "kind"),
    [
        (400, "invalid_grant", "authorization_code", errors.AuthorizationFailed),
        (400, "invalid_request", "authorization_code", errors.AuthorizationFailed),
        (401, "invalid_client", "authorization_code", errors.ClientRejected),
        (401, "invalid_client", "refresh_token", errors.ClientRejected),
        (400, "invalid_grant", "refresh_token", errors.ReconsentRequired),
        (401, "invalid_grant", "refresh_token", errors.ReconsentRequired),
        (403, "invalid_client", "refresh_token", errors.ReconsentRequired),
        (403, "access_denied", "refresh_token", errors.ReconsentRequired),
        (503, "", "refresh_token", errors.ServerError),
        (429, "", "authorization_code", errors.RateLimited),
        (502, "", "authorization_code", errors.ServerError),
    ],
)
def test_token_error_table(
    status: int, error: str, grant: str, kind: type[errors.BlueButtonError]
) -> None:
    body = f'{{"status_code": {status}, "error": "{error}", "error_description": "x"}}'.encode()
    assert type(token_error(status, body, grant)) is kind  # type: ignore[arg-type]


def test_job_retry_delay_grows_and_respects_server() -> None:
    assert job_retry_delay(1, None) == 15.0
    assert job_retry_delay(3, None) == 60.0
    assert job_retry_delay(20, None) == 600.0
    assert job_retry_delay(1, 120.0) == 120.0


def test_an_inactive_apps_token_refusal_pauses_it_for_any_grant() -> None:
    body = (
        b'{"error": "invalid_client",'
        b' "error_description": "This application, A, is temporarily inactive."}'
    )
    for grant in ("authorization_code", "refresh_token"):
        assert type(token_error(403, body, grant)) is errors.AppPaused  # type: ignore[arg-type]


def test_an_html_403_on_refresh_is_an_edge_refusal() -> None:
    assert type(token_error(403, b"<html>no</html>", "refresh_token")) is errors.EdgeRefused


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        # BB2's handler500: rest_framework.exceptions.server_error's JsonResponse.
        (b'{"error": "Server Error (500)"}', errors.ServerError),
        (b"<h1>Server Error (500)</h1>", errors.EdgeError),
        # A gateway's own JSON is not CMS saying it found no such access token.
        (b'{"message": "Internal server error"}', errors.EdgeError),
    ],
)
def test_revoke_500_is_bb2s_only_with_handler500s_json(
    body: bytes, kind: type[errors.BlueButtonError]
) -> None:
    error = revoke_error(500, body)
    assert type(error) is kind
    assert error.status == 500
