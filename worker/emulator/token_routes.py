"""/v2/o/token/, /v2/o/revoke_token/ (RFC 7009) and CMS's /v2/o/revoke/."""

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from worker.emulator import oauth
from worker.emulator.config import RegisteredClient
from worker.emulator.context import Emulator, form_field, metered
from worker.emulator.responses import TIMED_OUT, json_response, token_error


def token_routes(emulator: Emulator) -> list[Route]:
    """Token exchange, refresh and revocation."""
    state, config = emulator.state, emulator.config

    async def form_client(request: Request) -> str | None:
        basic = oauth.basic_credentials(request.headers.get("authorization"))
        return basic[0] if basic else form_field(await request.form(), "client_id") or None

    async def client_of(request: Request) -> RegisteredClient | None:
        form = await request.form()
        return oauth.authenticate_client(
            config,
            request.headers.get("authorization"),
            form_field(form, "client_id") or None,
            form_field(form, "client_secret") or None,
        )

    @metered(emulator, "token", form_client)
    async def token(request: Request) -> Response:
        client = await client_of(request)
        if client is None:
            return token_error(401, "invalid_client", "Client authentication failed.")
        form = await request.form()
        grant_type = form_field(form, "grant_type")
        if grant_type == "authorization_code":
            return _exchange_code(emulator, client, form)
        if grant_type == "refresh_token":
            return _refresh(emulator, client, form)
        return token_error(400, "unsupported_grant_type", f"Unsupported grant_type {grant_type!r}.")

    async def revoke_with(request: Request, *, delete_grant: bool) -> Response:
        client = await client_of(request)
        if client is None:
            return token_error(401, "invalid_client", "Client authentication failed.")
        token_value = form_field(await request.form(), "token")
        if not token_value:
            return token_error(400, "invalid_request", "Missing token parameter.")
        patient_id = state.revoke(token_value, client.client_id)
        if delete_grant and patient_id is not None:
            state.delete_grant(client.client_id, patient_id)
        return Response(status_code=200)

    @metered(emulator, "revoke_token", form_client)
    async def revoke_token(request: Request) -> Response:
        return await revoke_with(request, delete_grant=False)

    @metered(emulator, "revoke", form_client)
    async def revoke(request: Request) -> Response:
        return await revoke_with(request, delete_grant=True)

    return [
        Route("/v2/o/token/", token, methods=["POST"]),
        Route("/v2/o/revoke_token/", revoke_token, methods=["POST"]),
        Route("/v2/o/revoke/", revoke, methods=["POST"]),
    ]


def _exchange_code(emulator: Emulator, client: RegisteredClient, form: FormData) -> Response:
    """authorization_code grant, checked in oauthlib's order; failures leave the code usable."""
    state = emulator.state
    code_value = form_field(form, "code")
    if not code_value:
        return token_error(400, "invalid_request", "Missing code parameter.")
    code = state.code(code_value)
    if code is None or code.client_id != client.client_id:
        return token_error(400, "invalid_grant", "Invalid grant: the code is unknown or used.")
    verifier = form_field(form, "code_verifier")
    if not verifier:
        return token_error(400, "invalid_request", "Code verifier required.")
    if not oauth.verifier_matches(verifier, code.code_challenge):
        return token_error(400, "invalid_grant", "Invalid grant: the code verifier is wrong.")
    if form_field(form, "redirect_uri") != code.redirect_uri:
        return token_error(400, "invalid_request", "Mismatching redirect URI.")
    state.consume_code(code_value)
    return _issue(emulator, client, code.patient_id, code.scopes)


def _refresh(emulator: Emulator, client: RegisteredClient, form: FormData) -> Response:
    """refresh_token grant: the refresh token rotates and the old pair dies."""
    state = emulator.state
    old_value = form_field(form, "refresh_token")
    if not old_value:
        return token_error(400, "invalid_request", "Missing refresh_token parameter.")
    old = state.refresh_token(old_value)
    if old is None or old.client_id != client.client_id:
        return token_error(400, "invalid_grant", "Invalid grant: the refresh token is unknown.")
    if client.grant_type == "ONE_TIME":
        return token_error(403, "invalid_client", "This application cannot refresh tokens.")
    grant = state.grant(client.client_id, old.patient_id)
    if grant is None:
        return token_error(403, "invalid_grant", "The data access grant was revoked.")
    if grant.lapsed(state.now()):
        return token_error(401, "invalid_grant", TIMED_OUT)
    state.revoke_refresh(old_value)
    return _issue(emulator, client, old.patient_id, old.scopes)


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
