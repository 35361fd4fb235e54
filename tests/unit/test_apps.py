"""Which app serves a connection: the default one from the settings, and the client check."""

import pytest

from worker.apps import DEFAULT_APP, App, check_app_name, default_app, issued_by
from worker.bluebutton.oauth import ClientCredentials
from worker.errors import AppUnavailable
from worker.settings import load_settings


def test_the_bb_settings_define_the_default_app() -> None:
    settings = load_settings(
        {"BB_CLIENT_ID": "id", "BB_CLIENT_SECRET": "s3cret", "BB_ENV": "production",
         "BB_RATE_LIMIT": "7"}
    )  # fmt: skip
    app = default_app(settings)
    assert app == App(
        DEFAULT_APP, "production", "https://api.bluebutton.cms.gov", "id", "s3cret", 7
    )
    assert "s3cret" not in repr(app)
    assert app.credentials == ClientCredentials("id", "s3cret")


def test_a_default_app_without_credentials_is_unavailable_not_a_crash() -> None:
    with pytest.raises(AppUnavailable, match="BB_CLIENT_ID and BB_CLIENT_SECRET"):
        default_app(load_settings({}))


def test_a_connection_is_served_only_by_the_client_that_issued_its_tokens() -> None:
    app = App("acme", "sandbox", "https://sandbox.bluebutton.cms.gov", "acme-id", "s", 10)
    assert issued_by(app, "acme-id") is app
    assert issued_by(app, None) is app  # rows from before apps recorded the client
    with pytest.raises(AppUnavailable, match="another client of app 'acme'"):
        issued_by(app, "acme-old-id")


@pytest.mark.parametrize("name", ["acme", "a", "acme-health_2", "0x"])
def test_app_names(name: str) -> None:
    assert check_app_name(name) == name


@pytest.mark.parametrize("name", ["", "Acme", "-acme", "acme!", "a" * 64, "acme health"])
def test_bad_app_names(name: str) -> None:
    with pytest.raises(ValueError, match="lower-case letters"):
        check_app_name(name)
