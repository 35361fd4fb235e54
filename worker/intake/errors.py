"""Refusals of the intake API, rendered as ``{"error": ...}`` JSON with the right status."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from worker.intake.models import ErrorBody, FieldError, InvalidPayload

# A field name comes from the client (an unknown key): it is echoed, but never at length.
_MAX_FIELD_CHARS = 128


class ApiError(Exception):
    """A request the API refuses; ``body`` is the JSON answer."""

    def __init__(
        self, status: int, body: BaseModel, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})

    @classmethod
    def plain(cls, status: int, message: str, headers: Mapping[str, str] | None = None) -> ApiError:
        """A refusal with just a message."""
        return cls(status, ErrorBody(error=message), headers)


def json_response(
    body: BaseModel, status: int = 200, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """A model as a JSON response."""
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


def invalid_payload(error: ValidationError) -> ApiError:
    """A 422 naming each bad field, without the values that were sent (they may be secret)."""
    fields = [
        FieldError(
            field=(".".join(str(part) for part in item["loc"]) or "body")[:_MAX_FIELD_CHARS],
            message=item["msg"].removeprefix("Value error, "),
        )
        for item in error.errors(include_input=False, include_url=False, include_context=False)
    ]
    return ApiError(422, InvalidPayload(fields=fields))


async def api_error(_request: Request, exc: Exception) -> Response:
    """Render an :class:`ApiError`."""
    assert isinstance(exc, ApiError)
    return json_response(exc.body, exc.status, exc.headers)


async def http_error(_request: Request, exc: Exception) -> Response:
    """Render Starlette's own refusals (404 unknown route, 405 wrong method) as JSON."""
    assert isinstance(exc, HTTPException)
    return JSONResponse(
        ErrorBody(error=exc.detail).model_dump(), status_code=exc.status_code, headers=exc.headers
    )
