"""/v2/o/token/: code exchange and refresh, checked in the order BB2's TokenView checks them.

TokenView.post first runs `validate_app_is_active` (apps/dot_ext/utils.py): it finds the app
(an unknown refresh token fails here already), refuses an inactive app, then for a refresh a
ONE_TIME app, a missing refresh token, a deleted or a lapsed grant. Only then does
django-oauth-toolkit check the client secret and the code or refresh token itself.
"""

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from worker.emulator import oauth
from worker.emulator.config import RegisteredClient
from worker.emulator.context import Emulator, form_field, metered
from worker.emulator.responses import (
    GRANT_NOT_FOUND,
    ONE_TIME_REFRESH,
    TEMPORARILY_INACTIVE,
    TIMED_OUT,
    json_response,
    token_error,
)
from worker.emulator.switches import REFRESH_FAULT_MESSAGES

_BAD_CLIENT = "Client authentication failed."


def claimed_client_id(request: Request, form: FormData) -> str | None:
    """The client id a request names: HTTP Basic first, else the form's client_id."""
    basic = oauth.basic_credentials(request.headers.get("authorization"))
    return basic[0] if basic else form_field(form, "client_id") or None


def authenticated(emulator: Emulator, request: Request, form: FormData) -> bool:
    """Whether the request proves its client with the right secret (Basic or form body)."""
    client = oauth.authenticate_client(
        emulator.config,
        request.headers.get("authorization"),
        form_field(form, "client_id") or None,
        form_field(form, "client_secret") or None,
    )
    return client is not None


def inactive_error(client: RegisteredClient) -> Response:
    """403 invalid_client of an app CMS made inactive (validate_app_is_active)."""
    return token_error(403, "invalid_client", TEMPORARILY_INACTIVE.format(client.name))


def token_routes(emulator: Emulator) -> list[Route]:
    """The token endpoint (the revocation endpoints are in revoke_routes)."""

    async def form_client(request: Request) -> str | None:
        return claimed_client_id(request, await request.form())

    @metered(emulator, "token", form_client)
    async def token(request: Request) -> Response:
        form = await request.form()
        client = emulator.config.client(claimed_client_id(request, form) or "")
        if client is None:
            return token_error(401, "invalid_client", _BAD_CLIENT)
        grant_type = form_field(form, "grant_type")
        if grant_type == "refresh_token":
            refused = _refresh_refused(emulator, client, form)
        elif emulator.state.switches.inactive(client.client_id):
            refused = inactive_error(client)
        else:
            refused = None
        if refused is not None:
            return refused
        if not authenticated(emulator, request, form):
            return token_error(401, "invalid_client", _BAD_CLIENT)
        if grant_type == "authorization_code":
            return _exchange_code(emulator, client, form)
        if grant_type == "refresh_token":
            return _refresh(emulator, client, form)
        return token_error(400, "unsupported_grant_type", f"Unsupported grant_type {grant_type!r}.")

    # BB2's pattern is ^token/?$: with and without the slash, no redirect.
    return [Route(path, token, methods=["POST"]) for path in ("/v2/o/token/", "/v2/o/token")]


def _refresh_refused(
    emulator: Emulator, client: RegisteredClient, form: FormData
) -> Response | None:
    """validate_app_is_active for a refresh: the answer refusing it, or None to go on."""
    tokens, value = emulator.state.tokens, form_field(form, "refresh_token")
    old = tokens.stored_refresh(value) if value else None
    if value and old is None:
        # get_application_from_data: a refresh token BB2 does not know (never issued, or
        # deleted by a re-consent) fails before anything else.
        return token_error(400, "invalid_request", "Refresh token not found.")
    if old is not None and old.client_id != client.client_id:
        return token_error(400, "invalid_request", "Token does not match client_id")
    if emulator.state.switches.inactive(client.client_id):
        return inactive_error(client)
    if client.grant_type == "ONE_TIME":
        return token_error(403, "invalid_client", ONE_TIME_REFRESH)
    if old is None:
        return token_error(400, "invalid_request", "Missing refresh token parameter")
    grant = tokens.grant(client.client_id, old.patient_id)
    if grant is None:
        return token_error(403, "invalid_grant", GRANT_NOT_FOUND)
    if grant.lapsed(emulator.state.now()):
        return token_error(401, "invalid_grant", TIMED_OUT)
    return None


def _exchange_code(emulator: Emulator, client: RegisteredClient, form: FormData) -> Response:
    """authorization_code grant, checked in oauthlib's order; failures leave the code usable."""
    tokens = emulator.state.tokens
    code_value = form_field(form, "code")
    if not code_value:
        return token_error(400, "invalid_request", "Missing code parameter.")
    code = tokens.code(code_value)
    if code is None or code.client_id != client.client_id:
        return token_error(400, "invalid_grant", "Invalid grant: the code is unknown or used.")
    verifier = form_field(form, "code_verifier")
    if not verifier:
        return token_error(400, "invalid_request", "Code verifier required.")
    if not oauth.verifier_matches(verifier, code.code_challenge):
        return token_error(400, "invalid_grant", "Invalid grant: the code verifier is wrong.")
    if form_field(form, "redirect_uri") != code.redirect_uri:
        return token_error(400, "invalid_request", "Mismatching redirect URI.")
    tokens.consume_code(code_value)
    return _issue(emulator, client, code.patient_id, code.scopes)


def _refresh(emulator: Emulator, client: RegisteredClient, form: FormData) -> Response:
    """refresh_token grant: the refresh token rotates and the old pair dies.

    A spent (rotated or revoked) refresh token is 400 invalid_grant. The new tokens are
    minted *before* BB2 looks the beneficiary up in its backend; an admin-ordered refresh
    fault answers that lookup's failure after the rotation (FACTS "Authorization").
    """
    tokens = emulator.state.tokens
    old_value = form_field(form, "refresh_token")
    old = tokens.stored_refresh(old_value)
    if old is None or old.revoked:
        return token_error(400, "invalid_grant", "Invalid grant: the refresh token was revoked.")
    tokens.revoke_refresh(old_value)
    issued = _issue(emulator, client, old.patient_id, old.scopes)
    fault = emulator.state.switches.take_refresh_fault()
    if fault is None:
        return issued
    return json_response({"status_code": fault, "message": REFRESH_FAULT_MESSAGES[fault]}, fault)


def _issue(
    emulator: Emulator, client: RegisteredClient, patient_id: str, scopes: tuple[str, ...]
) -> Response:
    state, lifetime = emulator.state, emulator.config.token_lifetime
    access, refresh = state.issue_tokens(client.client_id, patient_id, scopes, lifetime)
    grant = state.grant(client.client_id, patient_id)
    body = {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": lifetime,
        "scope": " ".join(scopes),
        "refresh_token": refresh,
        "patient": patient_id,
        "access_grant_expiration": oauth.expiration_text(grant.expires_at if grant else None),
    }
    return json_response(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})
