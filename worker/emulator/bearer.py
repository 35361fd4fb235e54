"""Bearer token checks of the FHIR and userinfo views, in the order BB2 applies them."""

from starlette.requests import Request
from starlette.responses import Response

from worker.emulator.config import EmulatorConfig
from worker.emulator.responses import (
    NO_PERMISSION,
    NOT_AUTHENTICATED,
    TEMPORARILY_INACTIVE,
    TIMED_OUT,
    detail,
)
from worker.emulator.state import EmulatorState
from worker.emulator.tokens import AccessToken

_CREDENTIALS_IN_QUERY = (
    "Using the access token in the query parameters is not supported. "
    "Use the Authorization header instead."
)


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer` header."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def authenticate(
    request: Request, state: EmulatorState, config: EmulatorConfig, scope: str
) -> AccessToken | Response:
    """The caller's live token with `scope`, or the error response BB2 would send.

    Revoked tokens (a deleted grant revokes them all) are unknown: 401. An app CMS made
    inactive gets 401 with its name (ApplicationActivePermission, right after the token
    check; FACTS "Authorization").
    """
    if "access_token" in request.query_params:
        return detail(400, _CREDENTIALS_IN_QUERY)
    token_value = bearer_token(request)
    token = None if token_value is None else state.tokens.use_access_token(token_value)
    if token is None:
        return detail(401, NOT_AUTHENTICATED)
    client = config.client(token.client_id)
    if client is not None and state.switches.inactive(client.client_id):
        return detail(401, TEMPORARILY_INACTIVE.format(client.name))
    grant = state.grant(token.client_id, token.patient_id)
    if grant is None:
        return detail(403, NO_PERMISSION)
    if grant.lapsed(state.now()):
        return detail(401, TIMED_OUT)
    if scope not in token.scopes:
        return detail(403, NO_PERMISSION)
    return token
