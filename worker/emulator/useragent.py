"""A browser stand-in: walks BB2's authorize, login and consent pages over plain HTTP.

It reads each page's form (action, hidden fields, buttons) instead of assuming them, so it
breaks loudly if the pages change shape.
"""

from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin

import httpx

_PERSONAL_INFO_FIELD = "share_demographic_scopes"


class AuthorizationFailed(Exception):
    """The authorization flow did not reach the app's redirect URI."""


class AuthorizeRejected(AuthorizationFailed):
    """BB2 refused the /authorize request itself (400): a bad client, redirect URI or PKCE."""


class LoginFailed(AuthorizationFailed):
    """The username or password was not accepted."""


@dataclass
class _Form:
    action: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    text_inputs: list[str] = field(default_factory=list)
    password_inputs: list[str] = field(default_factory=list)
    checkboxes: dict[str, str] = field(default_factory=dict)
    buttons: list[tuple[str, str]] = field(default_factory=list)


class _PageParser(HTMLParser):
    """Collects the first form of a page and any alert messages."""

    def __init__(self) -> None:
        super().__init__()
        self.form: _Form | None = None
        self.alerts: list[str] = []
        self._in_form = False
        self._in_alert = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if attributes.get("role") == "alert":
            self._in_alert = True
        if tag == "form" and self.form is None:
            self.form, self._in_form = _Form(action=attributes.get("action", "")), True
        elif self._in_form and self.form is not None and tag in ("input", "button"):
            _add_control(self.form, tag, attributes)

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False
        self._in_alert = False

    def handle_data(self, data: str) -> None:
        if self._in_alert and data.strip():
            self.alerts.append(data.strip())


def _add_control(form: _Form, tag: str, attributes: dict[str, str]) -> None:
    name, kind = (
        attributes.get("name", ""),
        attributes.get("type", "text" if tag == "input" else "submit"),
    )
    if not name:
        return
    if tag == "button" or kind == "submit":
        form.buttons.append((name, attributes.get("value", "")))
    elif kind == "hidden":
        form.fields[name] = attributes.get("value", "")
    elif kind == "password":
        form.password_inputs.append(name)
    elif kind == "checkbox":
        form.checkboxes[name] = attributes.get("value", "on")
    else:
        form.text_inputs.append(name)


async def authorize(
    http: httpx.AsyncClient,
    authorize_url: str,
    username: str,
    password: str,
    *,
    share_personal_info: bool = True,
    allow: bool = True,
) -> str:
    """Log in and answer the consent page; returns the app's redirect URL (code and state, or
    error=access_denied) without requesting it."""
    response = await http.get(authorize_url, follow_redirects=False)
    login_url = _redirect_target(response, "authorize")
    page = await http.get(login_url, follow_redirects=False)
    form, _ = _parse(page, "login page")
    fields = dict(form.fields)
    fields[_only(form.text_inputs, "username")] = username
    fields[_only(form.password_inputs, "password")] = password
    response = await http.post(urljoin(str(page.url), form.action), data=fields)
    if response.status_code == httpx.codes.OK:
        _, alerts = _parse(response, "login answer")
        raise LoginFailed(" ".join(alerts) or f"login as {username} was refused")
    consent_url = _redirect_target(response, "login")
    page = await http.get(consent_url, follow_redirects=False)
    form, _ = _parse(page, "consent page")
    if _PERSONAL_INFO_FIELD not in form.checkboxes:
        raise AuthorizationFailed("the consent page has no personal information checkbox")
    fields = dict(form.fields)
    # Like a browser: a ticked box is sent with its value, an unticked one not at all.
    fields.update(form.checkboxes if share_personal_info else {})
    button = _button(form, "Allow" if allow else "Deny")
    fields[button[0]] = button[1]
    response = await http.post(urljoin(str(page.url), form.action), data=fields)
    return _redirect_target(response, "consent")


def _redirect_target(response: httpx.Response, step: str) -> str:
    if response.is_redirect and "location" in response.headers:
        return urljoin(str(response.url), response.headers["location"])
    alerts = _PageParser()
    alerts.feed(response.text)
    message = (
        f"{step} answered {response.status_code}: {' '.join(alerts.alerts) or response.text[:200]}"
    )
    if step == "authorize" and response.status_code == httpx.codes.BAD_REQUEST:
        raise AuthorizeRejected(message)
    raise AuthorizationFailed(message)


def _parse(response: httpx.Response, what: str) -> tuple[_Form, list[str]]:
    if response.status_code != httpx.codes.OK:
        raise AuthorizationFailed(f"{what} answered {response.status_code}")
    parser = _PageParser()
    parser.feed(response.text)
    if parser.form is None:
        raise AuthorizationFailed(f"{what} has no form")
    return parser.form, parser.alerts


def _only(names: list[str], what: str) -> str:
    if len(names) != 1:
        raise AuthorizationFailed(f"expected one {what} field on the login form, found {names}")
    return names[0]


def _button(form: _Form, label: str) -> tuple[str, str]:
    for name, value in form.buttons:
        if value.lower() == label.lower():
            return name, value
    raise AuthorizationFailed(f"the consent page has no {label} button")
