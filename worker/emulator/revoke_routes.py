"""/v2/o/revoke/ (CMS's RevokeView) and /v2/o/revoke_token/ (RevokeTokenView, RFC 7009),
each in the order of BB2's code (apps/dot_ext/views/authorization.py, apps/dot_ext/utils.py;
FACTS "Revocation").

Line numbers at bluebutton-web-server ba0c685: RevokeTokenView authorization.py:1420-1455,
RevokeView :1459-1485; in utils.py get_application_from_meta :136-168,
get_application_from_data :171-291, get_application_from_request :294-305,
validate_app_is_active :308-379, json_response_from_oauth2_error :382-393. Not modelled:
validate_client_id's 400 "Invalid client_id format" (utils.py:50-64, off in local envs),
as CMS-issued client ids always pass it.
"""

from dataclasses import dataclass

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from worker.emulator import oauth
from worker.emulator.config import RegisteredClient
from worker.emulator.context import Emulator, form_field, metered
from worker.emulator.responses import TEMPORARILY_INACTIVE, json_response, token_error
from worker.emulator.token_routes import authenticated, claimed_client_id
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
    """An unhandled exception: BB2's handler500 (hhs_oauth_server/urls.py:147) is
    rest_framework.exceptions.server_error, a JsonResponse (application/json) of exactly
    this body (djangorestframework 3.16.1, rest_framework/exceptions.py:247-254)."""
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


class _OAuth2Error(Exception):
    """What apps/dot_ext/utils.py raises while finding the app: oauthlib's
    InvalidClientError (``invalid_client``) or InvalidRequestError (``invalid_request``)."""

    def __init__(self, error: str, status: int, description: str) -> None:
        super().__init__(description)
        self.error, self.status, self.description = error, status, description

    def response(self) -> Response:
        """json_response_from_oauth2_error (apps/dot_ext/utils.py)."""
        body = {"status_code": self.status, "error": self.error}
        return json_response({**body, "error_description": self.description}, self.status)


class _Uncaught(Exception):
    """An exception no BB2 view catches (AccessToken.DoesNotExist, a bad base64): 500."""


def _meta_app(emulator: Emulator, request: Request) -> RegisteredClient | None:
    """get_application_from_meta (apps/dot_ext/utils.py): a header holding ``Bearer`` names
    its access token's app (AccessToken.objects.get, DoesNotExist uncaught); any other is
    decoded as Basic (a malformed one raises, uncaught), whose client id must name an app
    (InvalidClientError "Application does not exist", oauthlib's default 401)."""
    header = request.headers.get("authorization")
    if not header:
        return None
    if "Bearer" in header:
        parts = header.split(" ")
        access = emulator.state.tokens.stored_access(parts[1]) if len(parts) > 1 else None
        if access is None:
            raise _Uncaught
        return emulator.config.client(access.client_id)
    basic = oauth.basic_credentials(header)
    if basic is None:
        raise _Uncaught
    client = emulator.config.client(basic[0])
    if client is None:
        raise _OAuth2Error("invalid_client", 401, _BAD_CLIENT)
    return client


def _data_app(emulator: Emulator, form: FormData) -> tuple[RegisteredClient | None, _Found | None]:
    """get_application_from_data (apps/dot_ext/utils.py): a ``token`` names its app (not
    found: InvalidRequestError "Token not found."; of another app than the form's
    ``client_id``: InvalidRequestError "Token does not match client_id"); without one, the
    form's ``client_id`` does (unknown: InvalidClientError, 400)."""
    config, client_id = emulator.config, form_field(form, "client_id")
    value, hint = form_field(form, "token"), form_field(form, "token_type_hint")
    if value:
        found = _find(emulator.state.tokens, value, hint)
        if found is None:
            raise _OAuth2Error("invalid_request", 400, "Token not found.")
        if client_id and found.client_id != client_id:
            raise _OAuth2Error("invalid_request", 400, "Token does not match client_id")
        return config.client(found.client_id), found
    if not client_id:
        return None, None
    client = config.client(client_id)
    if client is None:
        raise _OAuth2Error("invalid_client", 400, "Application does not exist (client_id)")
    return client, None


def _active_app(
    emulator: Emulator, request: Request, form: FormData
) -> tuple[RegisteredClient, _Found | None]:
    """validate_app_is_active (apps/dot_ext/utils.py) for a request that is no refresh:
    get_application_from_request (the header's app and the data's must agree:
    InvalidRequestError), "App id failed" (401) without any, 403 for an inactive app."""
    meta = _meta_app(emulator, request)
    data, found = _data_app(emulator, form)
    if meta is not None and data is not None and meta.client_id != data.client_id:
        raise _OAuth2Error("invalid_request", 400, "different app in headers than in request data")
    app = meta or data
    if app is None:
        raise _OAuth2Error("invalid_client", 401, "App id failed")
    if emulator.state.switches.inactive(app.client_id):
        raise _OAuth2Error("invalid_client", 403, TEMPORARILY_INACTIVE.format(app.name))
    return app, found


def _revoke_view(emulator: Emulator, request: Request, form: FormData) -> Response:
    """RevokeView.post (apps/dot_ext/views/authorization.py) catches only InvalidClientError
    and InvalidGrantError from validate_app_is_active: its InvalidRequestError (a token it
    cannot find, a retry of a revoke that worked included, or one of another app) and any
    other exception reach handler500. A found access token deletes the (beneficiary, app)
    grant, and with it every token of the grant, *before* the client secret is checked."""
    try:
        app, found = _active_app(emulator, request, form)
    except _OAuth2Error as error:
        return server_error() if error.error == "invalid_request" else error.response()
    except _Uncaught:
        return server_error()
    if found is not None and found.is_access:
        emulator.state.tokens.delete_grant(app.client_id, found.patient_id)
    return _revoke_checked(emulator, request, form)


def _revoke_token_view(emulator: Emulator, request: Request, form: FormData) -> Response:
    """RevokeTokenView.post (apps/dot_ext/views/authorization.py): the header's app (its
    InvalidClientError answered, 403 when inactive), then the data's, any failure to find
    which answers 200 (an unknown token, one of another client_id, an unknown client_id);
    403 for an inactive app or another app than the header's. A refresh token is only
    found with token_type_hint=refresh_token (without it, it is silently left alone). The
    grant always stays."""
    switches = emulator.state.switches
    try:
        meta = _meta_app(emulator, request)
    except _OAuth2Error as error:
        return error.response()
    except _Uncaught:
        return server_error()
    if meta is not None and switches.inactive(meta.client_id):
        return _forbidden(_NOT_ACTIVE)
    try:
        data, _ = _data_app(emulator, form)
    except _OAuth2Error:
        return Response(status_code=200)
    if data is not None and switches.inactive(data.client_id):
        return _forbidden(_NOT_ACTIVE)
    if meta is not None and data is not None and meta.client_id != data.client_id:
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
