"""/v2/o/authorize/ and the beneficiary's login and consent pages."""

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from worker.emulator import oauth, pages
from worker.emulator.config import RegisteredClient
from worker.emulator.context import Emulator, form_field, metered
from worker.emulator.responses import TEMPORARILY_INACTIVE
from worker.emulator.state import AuthRequest

_BAD_LOGIN = "Invalid username or password."


def authorize_routes(emulator: Emulator) -> list[Route]:
    """The authorization endpoint and the pages behind it."""
    state, config = emulator.state, emulator.config

    async def query_client(request: Request) -> str | None:
        return request.query_params.get("client_id")

    async def request_client(request: Request) -> str | None:
        request_id = request.path_params.get("request_id") or await _request_id(request)
        found = state.auth_request(request_id)
        return None if found is None else found.client_id

    @metered(emulator, "authorize", query_client, browser=True)
    async def authorize(request: Request) -> Response:
        query = request.query_params
        problem = _authorize_problem(emulator, {key: query.get(key) or "" for key in query})
        if problem:
            status, message = problem
            return HTMLResponse(pages.error_page(message), status_code=status)
        opened = state.open_request(
            client_id=query["client_id"],
            redirect_uri=query["redirect_uri"],
            state=query["state"],
            challenge=oauth.stored_challenge(query["code_challenge"]),
            scopes=oauth.requested_scopes(query.get("scope")),
        )
        location = f"/mymedicare/login?{urlencode({'auth_request': opened.request_id})}"
        return RedirectResponse(location, status_code=302)

    @metered(emulator, "login", request_client, browser=True)
    async def login(request: Request) -> Response:
        pending = state.auth_request(await _request_id(request))
        if pending is None:
            return HTMLResponse(pages.error_page("Unknown authorization request."), 400)
        if request.method == "GET":
            return HTMLResponse(pages.login_page(pending.request_id, pending.csrf))
        form = await request.form()
        if form_field(form, "csrfmiddlewaretoken") != pending.csrf:
            return HTMLResponse(pages.error_page("CSRF verification failed."), 403)
        user = emulator.dataset.population.by_username(form_field(form, "username"))
        if user is None or form_field(form, "password") != user.password:
            return HTMLResponse(pages.login_page(pending.request_id, pending.csrf, _BAD_LOGIN))
        pending.patient_id = user.patient_id
        return RedirectResponse(f"/v2/o/authorize/{pending.request_id}/", status_code=302)

    @metered(emulator, "consent", request_client, browser=True)
    async def consent(request: Request) -> Response:
        pending = state.auth_request(request.path_params["request_id"])
        if pending is None:
            return HTMLResponse(pages.error_page("Unknown authorization request."), 400)
        if pending.patient_id is None:
            login_url = f"/mymedicare/login?{urlencode({'auth_request': pending.request_id})}"
            return RedirectResponse(login_url, status_code=302)
        client = config.client(pending.client_id)
        if client is None:
            return HTMLResponse(pages.error_page("Invalid client_id parameter value."), 400)
        if request.method == "GET":
            return HTMLResponse(pages.consent_page(pending.request_id, pending.csrf, client.name))
        form = await request.form()
        if form_field(form, "csrfmiddlewaretoken") != pending.csrf:
            return HTMLResponse(pages.error_page("CSRF verification failed."), 403)
        state.close_request(pending.request_id)
        if form_field(form, "allow") != "Allow":
            return _redirect(pending, [("error", "access_denied")])
        share = form_field(form, "share_demographic_scopes") == "True"
        code = _consent(emulator, pending, client, pending.patient_id, share=share)
        return _redirect(pending, [("code", code)])

    return [
        Route("/v2/o/authorize/", authorize, methods=["GET"]),
        Route("/mymedicare/login", login, methods=["GET", "POST"]),
        Route("/v2/o/authorize/{request_id}/", consent, methods=["GET", "POST"]),
    ]


def _authorize_problem(emulator: Emulator, query: dict[str, str]) -> tuple[int, str] | None:
    """The status and reason of an /authorize call refused instead of shown the login page."""
    client = emulator.config.client(query.get("client_id", ""))
    if client is None:
        return 400, "Invalid client_id parameter value."
    if emulator.state.switches.inactive(client.client_id):
        # AuthorizationView.dispatch renders app_inactive_401.html with the error's 403.
        return 403, f"invalid_client : {TEMPORARILY_INACTIVE.format(client.name)}"
    if query.get("redirect_uri") not in client.redirect_uris:
        return 400, "Mismatching redirect URI."
    if query.get("response_type") != "code":
        return 400, "Unsupported response_type: only code is allowed."
    if len(query.get("state", "")) < oauth.MIN_STATE_LENGTH:
        return 400, f"state is required and must be at least {oauth.MIN_STATE_LENGTH} characters."
    if query.get("code_challenge_method") != "S256":
        return 400, "code_challenge_method must be S256."
    if not oauth.stored_challenge(query.get("code_challenge", "")):
        return 400, "code_challenge is required (PKCE S256)."
    return None


def _consent(
    emulator: Emulator,
    pending: AuthRequest,
    client: RegisteredClient,
    patient_id: str,
    *,
    share: bool,
) -> str:
    """Record an Allow as AuthorizationView.form_valid does: unticking personal information
    deletes the earlier grant (and so revokes its tokens); the grant is then created or
    renewed (its clock restarts), the code issued, and every earlier access and refresh
    token of this app and beneficiary deleted (FACTS "Authorization", re-consent).
    """
    state, config = emulator.state, emulator.config
    if not share:
        state.tokens.delete_grant(client.client_id, patient_id)
    expires_at = oauth.grant_expiry(client, state.now(), config.token_lifetime)
    state.tokens.save_grant(client.client_id, patient_id, expires_at)
    scopes = oauth.granted_scopes(pending.scopes, share)
    code = state.issue_code(pending, patient_id, scopes, config.code_lifetime)
    state.tokens.delete_tokens(client.client_id, patient_id)
    return code


def _redirect(pending: AuthRequest, params: list[tuple[str, str]]) -> Response:
    separator = "&" if "?" in pending.redirect_uri else "?"
    query = urlencode([*params, ("state", pending.state)])
    return RedirectResponse(f"{pending.redirect_uri}{separator}{query}", status_code=302)


async def _request_id(request: Request) -> str:
    """The auth_request id of a login page: in the query (GET) or the form (POST)."""
    if request.method == "POST":
        return form_field(await request.form(), "auth_request")
    return request.query_params.get("auth_request", "")
