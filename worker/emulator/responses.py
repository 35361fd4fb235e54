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
