"""Verified TLS to Postgres and Redis: the DSN rules, the opt-out, the client options."""

from __future__ import annotations

import pytest
import structlog

from worker.cli import _warn_insecure_transport, main
from worker.errors import ConfigError
from worker.jobs.queue import redis_settings
from worker.settings import load_settings
from worker.transport import postgres_problem, redis_problem, redis_tls_options

REMOTE_PG = "postgresql://bbingest:pg-secret-pw@db.internal:5432/bbingest"


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://postgres@127.0.0.1:5432/x",
        "postgresql://postgres@localhost/x",
        "postgresql://postgres@[::1]:5432/x",
        "postgresql:///x?host=/var/run/postgresql",
        "postgresql://u@db.internal/x?sslmode=verify-full",
        "postgresql://u@db.internal/x?sslmode=verify-ca&sslrootcert=/ca.pem",
        "postgresql://u@127.0.0.1:5432,[::1]:5433/x",
    ],
)
def test_safe_postgres_dsns(dsn: str) -> None:
    assert postgres_problem(dsn) is None


@pytest.mark.parametrize(
    "dsn",
    [
        REMOTE_PG,
        REMOTE_PG + "?sslmode=require",
        REMOTE_PG + "?sslmode=prefer",
        "postgresql://u@127.0.0.1:5432,db.internal:5432/x",
        "postgresql://u@127.0.0.1/x?host=db.internal",
        "postgresql://u@10.0.0.5/x?sslmode=verify-full&sslmode=disable",
    ],
)
def test_unverified_remote_postgres_is_a_problem(dsn: str) -> None:
    assert "sslmode=verify-full" in (postgres_problem(dsn) or "")


def test_hosts_asyncpg_would_find_elsewhere_count() -> None:
    assert postgres_problem("postgresql:///bbingest", pghost="db.internal") is not None
    assert postgres_problem("postgresql:///bbingest?service=prod") is not None
    assert postgres_problem("postgresql:///bbingest", pghost="/var/run/postgresql") is None
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        load_settings({"DATABASE_URL": "postgresql:///bbingest", "PGHOST": "db.internal"})


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("redis://127.0.0.1:6379/0", True),
        ("unix:///run/redis.sock", True),
        ("rediss://:pw@redis.internal:6380/0", True),
        ("redis://redis.internal:6379/0", False),
        ("rediss://redis.internal/0?ssl_cert_reqs=none", False),
        ("rediss://redis.internal/0?ssl_check_hostname=false", False),
    ],
)
def test_redis_urls(url: str, safe: bool) -> None:
    assert (redis_problem(url) is None) is safe


def test_rediss_clients_check_certificate_and_hostname() -> None:
    url = "rediss://redis.internal:6380/0?ssl_ca_certs=/etc/ca.pem"
    assert redis_tls_options(url) == {
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": True,
        "ssl_ca_certs": "/etc/ca.pem",
    }
    arq = redis_settings(url)
    assert (arq.ssl, arq.ssl_check_hostname, arq.ssl_ca_certs) == (True, True, "/etc/ca.pem")
    assert redis_tls_options("redis://127.0.0.1/0") == {}


def test_settings_refuse_an_unverified_remote_database() -> None:
    with pytest.raises(ConfigError, match=r"DATABASE_URL.*sslmode"):
        load_settings({"DATABASE_URL": REMOTE_PG})
    with pytest.raises(ConfigError, match=r"REDIS_URL.*rediss://"):
        load_settings({"REDIS_URL": "redis://redis.internal:6379/0"})


def test_the_opt_out_accepts_and_reports_each_link() -> None:
    settings = load_settings(
        {
            "DATABASE_URL": REMOTE_PG,
            "REDIS_URL": "redis://redis.internal:6379/0",
            "ALLOW_INSECURE_TRANSPORT": "1",
        }
    )
    problems = settings.insecure_transport()
    assert [p.split(":")[0] for p in problems] == ["DATABASE_URL", "REDIS_URL"]


def test_remote_dsn_without_verification_exits_2_naming_sslmode(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", REMOTE_PG)
    monkeypatch.delenv("ALLOW_INSECURE_TRANSPORT", raising=False)
    with pytest.raises(SystemExit) as stopped:
        main(["migrate"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "sslmode" in err
    assert "pg-secret-pw" not in err


def test_opted_out_start_logs_a_warning() -> None:
    settings = load_settings({"DATABASE_URL": REMOTE_PG, "ALLOW_INSECURE_TRANSPORT": "1"})
    with structlog.testing.capture_logs() as logs:
        _warn_insecure_transport(settings)
    assert [entry["event"] for entry in logs] == ["insecure_transport"]
    assert logs[0]["log_level"] == "warning"
