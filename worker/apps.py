"""Blue Button apps: which client id, secret, environment and budget serve a connection.

A deployment may serve several organisations, each with its own app registered at CMS
(so that the consent screen shows its name). The ``BB_*`` settings define the app named
``default``; the others live in the ``apps`` table (``bbingest apps``). A connection is
served only by the client that issued its tokens: a token used with another app's
credentials or base URL gets ``invalid_client`` or a 404 from BB2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from worker.bluebutton.oauth import ClientCredentials
from worker.errors import AppUnavailable
from worker.settings import Environment, Settings

DEFAULT_APP: Final = "default"
APP_NAME_PATTERN: Final = r"^[a-z0-9][a-z0-9_-]{0,62}$"
_APP_NAME = re.compile(APP_NAME_PATTERN)


def check_app_name(name: str) -> str:
    """``name`` if it can name an app (lower-case letters, digits, ``-`` and ``_``)."""
    if not _APP_NAME.fullmatch(name):
        raise ValueError(
            f"app name {name!r} must be 1-63 lower-case letters, digits, '-' or '_',"
            " starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class App:
    """One app's registration: what its connections are served with."""

    name: str
    environment: Environment
    base_url: str
    client_id: str
    client_secret: str = field(repr=False)
    rate_limit: int

    @property
    def credentials(self) -> ClientCredentials:
        """The client id and secret for BB2's token endpoints."""
        return ClientCredentials(self.client_id, self.client_secret)


def default_app(settings: Settings) -> App:
    """The app the ``BB_*`` settings define; AppUnavailable when they lack credentials."""
    secret = settings.bb_client_secret.get_secret_value()
    if not settings.bb_client_id or not secret:
        raise AppUnavailable(
            "the default app needs BB_CLIENT_ID and BB_CLIENT_SECRET (or BB_CLIENT_SECRET_FILE)"
        )
    return App(
        name=DEFAULT_APP,
        environment=settings.bb_env,
        base_url=settings.bb_base_url,
        client_id=settings.bb_client_id,
        client_secret=secret,
        rate_limit=settings.bb_rate_limit,
    )


def issued_by(app: App, client_id: str | None) -> App:
    """``app`` if its client issued a connection's tokens (None: rows from before apps
    recorded it); AppUnavailable when the tokens came from another client."""
    if client_id is None or client_id == app.client_id:
        return app
    raise AppUnavailable(
        f"the connection's tokens were issued to another client of app {app.name!r} than the"
        " one now configured: restore that client, or have the beneficiary connect again"
    )
