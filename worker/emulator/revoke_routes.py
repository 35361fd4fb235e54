"""/v2/o/revoke/ (CMS's RevokeView) and /v2/o/revoke_token/ (RevokeTokenView, RFC 7009),
each in the order of BB2's code (apps/dot_ext/views/authorization.py, apps/dot_ext/utils.py;
FACTS "Revocation").
"""

from dataclasses import dataclass

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from worker.emulator import oauth
from worker.emulator.context import Emulator, form_field, metered
from worker.emulator.responses import json_response, token_error
from worker.emulator.token_routes import authenticated, claimed_client_id, inactive_error
from worker.emulator.tokens import TokenStore

_REFRESH_HINT = "refresh_token"
_BAD_CLIENT = "Application does not exist"
_NOT_ACTIVE = "Application is not active or does not exist."


@dataclass(frozen=True)
class _Found:
    """The token a revoke names, as get_application_from_data finds it."""

    client_id: str
    patient_id: str
    is_access: bool


def _find(tokens: TokenStore, value: str, hint: str) -> _Found | None:
    """Looked up as an access token (live or expired); as a refresh token only with
    token_type_hint=refresh_token, revoked or not (get_application_from_data)."""
    access = tokens.stored_access(value) if value else None
    if access is not None:
        return _Found(access.client_id, access.patient_id, is_access=True)
    refresh = tokens.stored_refresh(value) if value and hint == _REFRESH_HINT else None
    if refresh is not None:
        return _Found(refresh.client_id, refresh.patient_id, is_access=False)
    return None


def _revoke(tokens: TokenStore, value: str, hint: str) -> None:
    """DOT's revoke_token: the hinted type first, then the other one."""
    if hint == _REFRESH_HINT and tokens.stored_refresh(value) is not None:
        tokens.revoke_refresh(value)
    else:
        tokens.revoke_access(value)


def server_error() -> Response:
    """An unhandled exception: BB2's handler500 is rest_framework.exceptions.server_error."""
    return json_response({"error": "Server Error (500)"}, 500)


def revoke_routes(emulator: Emulator) -> list[Route]:
    """CMS's revoke, which can end the grant, and the RFC 7009 one, which never does."""

    async def form_client(request: Request) -> str | None:
        return claimed_client_id(request, await request.form())

    @metered(emulator, "revoke", form_client)
    async def revoke(request: Request) -> Response:
        form = await request.form()
        return _revoke_view(emulator, request, form)

    @metered(emulator, "revoke_token", form_client)
    async def revoke_token(request: Request) -> Response:
        form = await request.form()
        return _revoke_token_view(emulator, request, form)

    return [
        Route("/v2/o/revoke/", revoke, methods=["POST"]),
        Route("/v2/o/revoke_token/", revoke_token, methods=["POST"]),
    ]


def _revoke_view(emulator: Emulator, request: Request, form: FormData) -> Response:
    """RevokeView.post. validate_app_is_active raises InvalidRequestError for a token it
    cannot find (or one of another app), which RevokeView does not catch: 500, a retry of a
    revoke that worked included. A found access token deletes the (beneficiary, app) grant,
    and with it every token of the grant, *before* the client secret is checked."""
    tokens, config = emulator.state.tokens, emulator.config
    claimed_id = claimed_client_id(request, form)
    claimed = config.client(claimed_id) if claimed_id else None
    if claimed_id and claimed is None:
        return token_error(401, "invalid_client", _BAD_CLIENT)
    value, hint = form_field(form, "token"), form_field(form, "token_type_hint")
    found = _find(tokens, value, hint)
    if value and found is None:
        return server_error()
    if found is not None and claimed is not None and found.client_id != claimed.client_id:
        return server_error()
    app = claimed or (config.client(found.client_id) if found else None)
    if app is None:
        return token_error(401, "invalid_client", "App id failed")
    if emulator.state.switches.inactive(app.client_id):
        return inactive_error(app)
    if found is not None and found.is_access:
        tokens.delete_grant(app.client_id, found.patient_id)
    return _revoke_checked(emulator, request, form)


def _revoke_token_view(emulator: Emulator, request: Request, form: FormData) -> Response:
    """RevokeTokenView.post: 200 for any token it cannot attribute, 403 for an inactive app,
    and a refresh token is only found with token_type_hint=refresh_token (without it, the
    refresh token is silently left alone). The grant always stays."""
    tokens, config, switches = emulator.state.tokens, emulator.config, emulator.state.switches
    basic = oauth.basic_credentials(request.headers.get("authorization"))
    meta_app = config.client(basic[0]) if basic else None
    if basic and meta_app is None:
        return token_error(401, "invalid_client", _BAD_CLIENT)
    if meta_app is not None and switches.inactive(meta_app.client_id):
        return _forbidden(_NOT_ACTIVE)
    value, hint = form_field(form, "token"), form_field(form, "token_type_hint")
    found = _find(tokens, value, hint)
    body_id = form_field(form, "client_id")
    if value and (found is None or (body_id and body_id != found.client_id)):
        return Response(status_code=200)
    data_id = found.client_id if found else body_id
    if data_id and switches.inactive(data_id):
        return _forbidden(_NOT_ACTIVE)
    if meta_app is not None and data_id and data_id != meta_app.client_id:
        return _forbidden("Application did not have access to the provided token.")
    return _revoke_checked(emulator, request, form)


def _revoke_checked(emulator: Emulator, request: Request, form: FormData) -> Response:
    """django-oauth-toolkit's part of both views: the client secret, then the revocation."""
    if not authenticated(emulator, request, form):
        return token_error(401, "invalid_client", "Client authentication failed.")
    value = form_field(form, "token")
    if not value:
        return token_error(400, "invalid_request", "Missing token parameter.")
    _revoke(emulator.state.tokens, value, form_field(form, "token_type_hint"))
    return Response(status_code=200)


def _forbidden(description: str) -> Response:
    return json_response({"status_code": 403, "description": description}, 403)
