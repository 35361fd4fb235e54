from collections.abc import Callable
from pathlib import Path

import pytest

from worker.errors import ConfigError
from worker.settings import (
    BASE_URLS,
    SECRET_SETTINGS,
    Settings,
    is_loopback_host,
    load_settings,
    mask_dsn,
)


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


# Every secret setting, a value for it, and how the settings give it back.
SECRET_CASES: list[tuple[str, str, Callable[[Settings], str]]] = [
    ("BB_CLIENT_SECRET", "s3cret", lambda s: s.bb_client_secret.get_secret_value()),
    ("TOKEN_ENCRYPTION_KEY", "k1:abc", lambda s: s.token_encryption_key.get_secret_value()),
    ("INTAKE_SECRET", "x" * 40, lambda s: s.intake_secret.get_secret_value()),
    ("INTAKE_KEYS", "a:b:" + "x" * 40, lambda s: s.intake_keys.get_secret_value()),
    (
        "TOKEN_DECRYPT_ONLY_KEYS",
        "k2:abc",
        lambda s: s.token_decrypt_only_keys.get_secret_value(),
    ),
    ("DATABASE_URL", "postgresql://u:pw@127.0.0.1/db", lambda s: s.database_url),
    ("REDIS_URL", "redis://:pw@127.0.0.1:6379/3", lambda s: s.redis_url),
]


@pytest.mark.parametrize(("name", "value", "read"), SECRET_CASES)
def test_every_secret_is_read_from_its_file(
    tmp_path: Path, name: str, value: str, read: Callable[[Settings], str]
) -> None:
    path = tmp_path / name.lower()
    path.write_text(value + "\n")
    assert read(load_settings({f"{name}_FILE": str(path)})) == value
    with pytest.raises(ConfigError, match=f"{name} or {name}_FILE"):
        load_settings({f"{name}_FILE": str(path), name: value})


def test_every_secret_setting_is_tested_and_a_settings_field() -> None:
    aliases = {field.alias for field in Settings.model_fields.values()}
    assert set(SECRET_SETTINGS) <= aliases
    assert {name for name, _, _ in SECRET_CASES} == set(SECRET_SETTINGS)


def test_repr_and_str_never_show_a_password() -> None:
    settings = load_settings(
        {
            "DATABASE_URL": "postgresql://bbingest:pg-pass-123@127.0.0.1:5432/db",
            "REDIS_URL": "redis://default:redis-pass-456@127.0.0.1:6379/0",
            "TOKEN_ENCRYPTION_KEY": "key-material-789",
        }
    )
    for shown in (repr(settings), str(settings)):
        for secret in ("pg-pass-123", "redis-pass-456", "key-material-789"):
            assert secret not in shown
        assert "bbingest:***@127.0.0.1" in shown
    assert mask_dsn("postgresql://u@h/db") == "postgresql://u@h/db"
