"""The HTML pages a beneficiary sees: Medicare login, consent, and authorization errors."""

from html import escape


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title></head>\n<body>\n<h1>{escape(title)}</h1>\n"
        f"{body}\n</body></html>\n"
    )


def login_page(request_id: str, csrf: str, error: str | None = None) -> str:
    """The Medicare.gov-style login form."""
    message = f'<p class="error" role="alert">{escape(error)}</p>\n' if error else ""
    form = (
        '<form method="post" action="/mymedicare/login">\n'
        f'<input type="hidden" name="csrfmiddlewaretoken" value="{escape(csrf)}">\n'
        f'<input type="hidden" name="auth_request" value="{escape(request_id)}">\n'
        '<label>Username <input type="text" name="username" autocomplete="username"></label>\n'
        '<label>Password <input type="password" name="password"></label>\n'
        '<button type="submit">Log in</button>\n</form>'
    )
    return _page("Log in to Medicare.gov", message + form)


def consent_page(request_id: str, csrf: str, app_name: str) -> str:
    """The consent form: share personal information or not, then Allow or Deny."""
    form = (
        f'<form method="post" action="/v2/o/authorize/{escape(request_id)}/">\n'
        f'<input type="hidden" name="csrfmiddlewaretoken" value="{escape(csrf)}">\n'
        f"<p><strong>{escape(app_name)}</strong> wants to access your Medicare claims "
        "and coverage data.</p>\n"
        '<label><input type="checkbox" name="share_demographic_scopes" value="True" checked> '
        "Share my personal information (name, date of birth, address)</label>\n"
        '<button type="submit" name="allow" value="Allow">Allow</button>\n'
        '<button type="submit" name="allow" value="Deny">Deny</button>\n</form>'
    )
    return _page(f"Connect {app_name} to your Medicare data", form)


def error_page(message: str) -> str:
    """Shown instead of redirecting when the app's request cannot be trusted."""
    return _page("Authorization error", f'<p class="error" role="alert">{escape(message)}</p>')


def edge_forbidden_page() -> str:
    """What an edge, firewall or gateway in front of BB2 answers when it refuses a request
    (FACTS "Errors and limits": a 403 that is not BB2's JSON)."""
    return _page("403 Forbidden", "<p>Request blocked. Please try again later.</p>")
