"""``bbingest apps``, ``enqueue connect --app`` and ``status --app`` against real Postgres
and Redis."""

from __future__ import annotations

import io
from pathlib import Path

import asyncpg
import orjson
import pytest
from redis.asyncio import Redis

from tests.integration.support import run_cli
from tests.integration.test_cli import VERIFIER
from worker import pauses
from worker.constants import QUEUE_EXCHANGE
from worker.crypto import TokenCipher, generate_key
from worker.jobs.queue import deserialize
from worker.local import REDIRECT_URI
from worker.store import apps

SECRET = "acme-client-secret-value"


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    value = generate_key()
    monkeypatch.setenv("TOKEN_ENCRYPTION_KEY", value)
    return value


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "acme.secret"
    path.write_text(SECRET + "\n")
    return path


async def add_acme(secret_file: Path, *extra: str) -> int:
    return await run_cli(
        "apps", "add", "acme", "--client-id", "acme-id", "--client-secret-file", str(secret_file),
        *extra,
    )  # fmt: skip


async def test_an_app_added_from_a_file_is_stored_with_its_secret_encrypted(
    env: None, key: str, pool: asyncpg.Pool, secret_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await add_acme(secret_file, "--rate-limit", "7") == 0
    assert "added app acme (sandbox, https://sandbox.bluebutton.cms.gov, 7 req/s)" in (
        capsys.readouterr().out
    )
    dump = await pool.fetchval("SELECT row_to_json(a)::text FROM apps a")
    assert SECRET not in dump
    async with pool.acquire() as conn:
        app = await apps.get(conn, TokenCipher.from_setting(key), "acme")
    assert (app.client_id, app.client_secret, app.rate_limit) == ("acme-id", SECRET, 7)
    with pytest.raises(SystemExit) as exited:  # the name is taken
        await add_acme(secret_file)
    assert exited.value.code == 2
    assert "app 'acme' exists already" in capsys.readouterr().err


async def test_the_secret_can_come_from_standard_input(
    env: None, key: str, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(SECRET + "\n"))
    argv = ["apps", "add", "acme", "--client-id", "acme-id", "--client-secret-file", "-"]
    assert await run_cli(*argv, "--environment", "production") == 0
    async with pool.acquire() as conn:
        app = await apps.get(conn, TokenCipher.from_setting(key), "acme")
    assert (app.environment, app.base_url) == ("production", "https://api.bluebutton.cms.gov")
    assert app.client_secret == SECRET


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["apps", "add", "default", "--client-id", "x"], "'default' is the app the BB_* settings"),
        (["apps", "add", "Acme!", "--client-id", "x"], "must be 1-63 lower-case letters"),
        (["apps", "add", "acme", "--client-id", "x"], "needs --client-id and --client-secret-file"),
        (["apps", "add", "acme", "--client-secret", "s3cret"], "unrecognized arguments"),
        (
            ["apps", "add", "acme", "--client-id", "x", "--client-secret-file", "/nonexistent"],
            "cannot read /nonexistent",
        ),
        (["apps", "update", "ghost", "--rate-limit", "3"], "app 'ghost' is not registered"),
        (["apps", "add", "acme", "--rate-limit", "5000"], "5000 must be at most 1000"),
        (
            ["apps", "add", "acme", "--client-id", "x", "--client-secret-file", "-",
             "--base-url", "http://bb2.example.com"],
            "plain http:// is accepted only for loopback hosts",
        ),
    ],
)  # fmt: skip
async def test_bad_app_commands_exit_2_with_a_reason(
    env: None,
    key: str,
    pool: asyncpg.Pool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    reason: str,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(SECRET))
    with pytest.raises(SystemExit) as exited:
        await run_cli(*argv)
    assert exited.value.code == 2
    assert reason in capsys.readouterr().err
    assert await pool.fetchval("SELECT count(*) FROM apps") == 0


async def test_a_new_client_id_needs_its_secret_and_retires_the_old_client(
    env: None, key: str, pool: asyncpg.Pool, secret_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await add_acme(secret_file) == 0
    with pytest.raises(SystemExit) as exited:
        await run_cli("apps", "update", "acme", "--client-id", "acme-prod")
    assert exited.value.code == 2
    assert "a new --client-id needs its --client-secret-file" in capsys.readouterr().err
    assert await pool.fetchval("SELECT client_id FROM apps") == "acme-id"  # nothing changed
    assert await pool.fetchval("SELECT count(*) FROM app_clients_retired") == 0
    argv = ["apps", "update", "acme", "--client-id", "acme-prod", "--environment", "production"]
    assert await run_cli(*argv, "--client-secret-file", str(secret_file)) == 0
    assert "keeps serving the connections it authorized" in capsys.readouterr().out
    retired = await pool.fetchrow("SELECT client_id, environment FROM app_clients_retired")
    assert tuple(retired) == ("acme-id", "sandbox")
    current = await pool.fetchrow("SELECT client_id, environment, base_url FROM apps")
    assert tuple(current) == ("acme-prod", "production", "https://api.bluebutton.cms.gov")


async def test_list_shows_every_app_without_secrets(
    env: None, key: str, pool: asyncpg.Pool, secret_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await add_acme(secret_file) == 0
    capsys.readouterr()
    assert await run_cli("apps", "list", "--json") == 0
    out = capsys.readouterr().out
    assert SECRET not in out
    listed = orjson.loads(out)
    assert [row["name"] for row in listed] == ["default", "acme"]
    # no BB_CLIENT_ID here
    assert listed[0] == {"name": "default", "configured": False, "inactive_since": None}
    assert listed[1]["client_id"] == "acme-id"
    assert await run_cli("apps", "list") == 0
    assert "acme-id" in capsys.readouterr().out


async def test_list_and_status_say_which_app_cms_made_inactive(
    env: None,
    key: str,
    pool: asyncpg.Pool,
    redis: Redis,
    secret_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await add_acme(secret_file) == 0
    await pool.execute("INSERT INTO connections (connection_id, app) VALUES ('c-1', 'acme')")
    await pauses.mark_paused(redis, pool, "acme")  # a job met "temporarily inactive"
    capsys.readouterr()
    assert await run_cli("apps", "list", "--json") == 0
    listed = {row["name"]: row["inactive_since"] for row in orjson.loads(capsys.readouterr().out)}
    assert listed["default"] is None
    assert listed["acme"] is not None
    assert await run_cli("apps", "list") == 0
    assert "INACTIVE since" in capsys.readouterr().out
    assert await run_cli("status", "--json") == 0
    [row] = orjson.loads(capsys.readouterr().out)
    assert row["app_inactive_since"] == listed["acme"]
    assert row["status"] == "pending"  # the connection's own status is untouched


async def test_remove_refuses_while_connections_use_the_app_unless_forced(
    env: None, key: str, pool: asyncpg.Pool, secret_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await add_acme(secret_file) == 0
    await pool.execute(
        "INSERT INTO connections (connection_id, app, status, refresh_token_enc)"
        " VALUES ('c1', 'acme', 'active', 'sealed')"
    )
    with pytest.raises(SystemExit):
        await run_cli("apps", "remove", "acme")
    assert "still serves 1 connections" in capsys.readouterr().err
    assert await pool.fetchval("SELECT count(*) FROM apps") == 1
    assert await run_cli("apps", "remove", "acme", "--force") == 0
    assert "1 connections can no longer sync" in capsys.readouterr().out
    assert await pool.fetchval("SELECT count(*) FROM apps") == 0


async def test_enqueue_connect_carries_the_app_and_status_filters_by_it(
    env: None, pool: asyncpg.Pool, redis: Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["enqueue", "connect", "c1", "--code", "the-code", "--code-verifier", VERIFIER]
    assert await run_cli(*argv, "--redirect-uri", REDIRECT_URI, "--app", "acme") == 0
    [job_id] = await redis.zrange(QUEUE_EXCHANGE, 0, -1)  # the code exchange comes first
    queued = deserialize(await redis.get(b"arq:job:" + job_id))
    assert queued["k"]["app"] == "acme"
    await pool.executemany(
        "INSERT INTO connections (connection_id, app, environment) VALUES ($1, $2, $3)",
        [("a1", "acme", "production"), ("d1", "default", "sandbox")],
    )
    capsys.readouterr()
    assert await run_cli("status", "--app", "acme", "--json") == 0
    shown = orjson.loads(capsys.readouterr().out)
    assert [(s["connection_id"], s["environment"]) for s in shown] == [("a1", "production")]
    assert await run_cli("status", "--app", "acme") == 0
    assert "acme (production)" in capsys.readouterr().out


async def test_rotate_key_reencrypts_app_secrets_too(
    env: None,
    key: str,
    pool: asyncpg.Pool,
    secret_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await add_acme(secret_file) == 0
    new = generate_key()
    monkeypatch.setenv("TOKEN_ENCRYPTION_KEY", f"k2:{new},{key}")
    assert await run_cli("rotate-key") == 0
    assert "0 rows and 1 app and webhook secrets under key k2" in capsys.readouterr().out
    async with pool.acquire() as conn:
        app = await apps.get(conn, TokenCipher.from_setting(f"k2:{new}"), "acme")
    assert app.client_secret == SECRET
