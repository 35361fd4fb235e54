"""Response shapes BB2 uses: v2 `detail` errors, token endpoint errors, FHIR JSON."""

from typing import Any

import orjson
from starlette.responses import Response

FHIR_JSON = "application/fhir+json"
# Compression runs on the event loop: level 1 takes half of level 6's time on 1 MB
# pages of EOBs (and still shrinks them 11x), so the throttle's clock stays honest.
GZIP_LEVEL = 1
NOT_AUTHENTICATED = "Authentication credentials were not provided."
NO_PERMISSION = "You do not have permission to perform this action."
NOT_FOUND = "Not found."
# apps/constants.py APPLICATION_TEMPORARILY_INACTIVE: FHIR views answer it as a 401 detail
# (ApplicationActivePermission), the token and revoke views as a 403 invalid_client.
TEMPORARILY_INACTIVE = (
    "This application, {}, is temporarily inactive."
    " If you are the app maintainer, please contact the Blue Button API team."
    " If you are a Medicare Beneficiary and need assistance, please contact"
    " the support team for the application you are trying to access."
)
# apps/constants.py APPLICATION_ONE_TIME_REFRESH_NOT_ALLOWED_MESG (403 invalid_client).
ONE_TIME_REFRESH = (
    "Your application is not allowed to refresh tokens. "
    "To refresh Medicare data, end user must re-authenticate "
    "and consent to share their data. "
    "If your application needs to refresh tokens, contact us at BlueButtonAPI@cms.hhs.gov."
)
# apps/dot_ext/constants.py APPLICATION_THIRTEEN_MONTH_DATA_ACCESS_NOT_FOUND_MESG (403).
GRANT_NOT_FOUND = (
    "User access cannot be found. To refresh Medicare data, end user must re-authenticate "
    "and consent to share their data."
)
TIMED_OUT = (
    "User access has timed out. To refresh Medicare data, end user must re-authenticate "
    "and consent to share their data."
)


def json_response(
    body: Any,
    status: int = 200,
    *,
    media_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> Response:
    """Serialize with orjson."""
    return Response(orjson.dumps(body), status_code=status, media_type=media_type, headers=headers)


def detail(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """A v2 error: {"detail": "..."}."""
    return json_response({"detail": message}, status, headers=headers)


def token_error(status: int, error: str, description: str) -> Response:
    """A token endpoint error: {"status_code", "error", "error_description"}."""
    body = {"status_code": status, "error": error, "error_description": description}
    return json_response(body, status, headers={"Cache-Control": "no-store"})


def throttled(retry_after: int) -> Response:
    """429 as DRF's throttling answers it."""
    message = f"Request was throttled. Expected available in {retry_after} seconds."
    return detail(429, message, headers={"Retry-After": str(retry_after)})
