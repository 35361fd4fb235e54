"""Bearer token checks of the FHIR and userinfo views, in the order BB2 applies them."""

from starlette.requests import Request
from starlette.responses import Response

from worker.emulator.responses import NO_PERMISSION, NOT_AUTHENTICATED, TIMED_OUT, detail
from worker.emulator.state import AccessToken, EmulatorState

_CREDENTIALS_IN_QUERY = (
    "Using the access token in the query parameters is not supported. "
    "Use the Authorization header instead."
)


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer` header."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def authenticate(request: Request, state: EmulatorState, scope: str) -> AccessToken | Response:
    """The caller's live token with `scope`, or the error response BB2 would send."""
    if "access_token" in request.query_params:
        return detail(400, _CREDENTIALS_IN_QUERY)
    token_value = bearer_token(request)
    token = None if token_value is None else state.use_access_token(token_value)
    if token is None:
        return detail(401, NOT_AUTHENTICATED)
    grant = state.grant(token.client_id, token.patient_id)
    if grant is None:
        return detail(403, NO_PERMISSION)
    if grant.lapsed(state.now()):
        return detail(401, TIMED_OUT)
    if scope not in token.scopes:
        return detail(403, NO_PERMISSION)
    return token
