from pathlib import Path

import pytest

from worker.errors import ConfigError
from worker.settings import BASE_URLS, is_loopback_host, load_settings


def test_defaults() -> None:
    settings = load_settings({})
    assert settings.bb_base_url == BASE_URLS["sandbox"]
    assert settings.bb_rate_limit == 10
    assert settings.redis_url == "redis://127.0.0.1:6379/0"


def test_production_picks_the_production_host() -> None:
    assert load_settings({"BB_ENV": "production"}).bb_base_url == BASE_URLS["production"]


def test_every_bad_variable_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"BB_RATE_LIMIT": "0", "DATABASE_URL": "mysql://x", "BB_ENV": "prod"})
    message = str(caught.value)
    for name in ("BB_RATE_LIMIT", "DATABASE_URL", "BB_ENV"):
        assert name in message


@pytest.mark.parametrize(
    "url", ["http://example.com", "http://10.0.0.1:8000", "ftp://localhost", "https://x/v2/fhir"]
)
def test_unsafe_base_urls_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="BB_BASE_URL"):
        load_settings({"BB_BASE_URL": url})


@pytest.mark.parametrize("url", ["http://127.0.0.1:8765", "http://localhost:1/", "http://[::1]:9"])
def test_loopback_http_accepted(url: str) -> None:
    assert load_settings({"BB_BASE_URL": url}).bb_base_url == url.rstrip("/")


def test_secret_file(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("s3cret\n")
    settings = load_settings({"BB_CLIENT_ID": "id", "BB_CLIENT_SECRET_FILE": str(path)})
    assert settings.bb_client_secret.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)


def test_unreadable_secret_file() -> None:
    with pytest.raises(ConfigError, match="BB_CLIENT_SECRET_FILE"):
        load_settings({"BB_CLIENT_SECRET_FILE": "/nonexistent/secret"})


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("127.0.0.5", True),
        ("[::1]", True),
        ("10.0.0.1", False),
        ("example.com", False),
    ],
)
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback
