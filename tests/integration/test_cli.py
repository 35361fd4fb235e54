"""The bbingest command line against real Postgres, Redis and the emulator."""

from __future__ import annotations

import asyncpg
import orjson
import pytest
from redis.asyncio import Redis

from tests.integration.conftest import Start
from tests.integration.support import authorized_job, run_cli
from worker.crypto import TokenCipher, generate_key
from worker.emulator.config import EmulatorConfig
from worker.jobs.connect import connect
from worker.jobs.worker import run_replica
from worker.local import REDIRECT_URI
from worker.store import tokens as token_store

VERIFIER = "v" * 64


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (
            [
                "enqueue",
                "connect",
                "c1",
                "--code-verifier",
                VERIFIER,
                "--redirect-uri",
                REDIRECT_URI,
            ],
            "one of --code, --code-file or --stdin is required",
        ),
        (
            [
                "enqueue",
                "connect",
                "--code",
                "x",
                "--code-verifier",
                VERIFIER,
                "--redirect-uri",
                REDIRECT_URI,
            ],
            "the following arguments are required: ID",
        ),
        (
            [
                "enqueue",
                "connect",
                "c 1",
                "--code",
                "x",
                "--code-verifier",
                VERIFIER,
                "--redirect-uri",
                REDIRECT_URI,
            ],
            "connection_id",
        ),
        (
            [
                "enqueue",
                "connect",
                "c1",
                "--code",
                "x",
                "--code-verifier",
                "short",
                "--redirect-uri",
                REDIRECT_URI,
            ],
            "code_verifier",
        ),
        (["worker", "--concurrency", "0"], "must be at least 1"),
        (["frobnicate"], "invalid choice"),
    ],
)
async def test_invalid_input_exits_2_with_a_one_line_reason(
    env: None, capsys: pytest.CaptureFixture[str], argv: list[str], reason: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        await run_cli(*argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert reason in err


async def test_bad_setting_exits_2_naming_it(
    env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BB_RATE_LIMIT", "lots")
    with pytest.raises(SystemExit) as exit_:
        await run_cli("status")
    assert exit_.value.code == 2
    assert "BB_RATE_LIMIT" in capsys.readouterr().err


async def test_a_code_the_emulator_never_issued_ends_in_error_and_stores_nothing(
    env: None, pool: asyncpg.Pool, redis: Redis, start: Start, capsys: pytest.CaptureFixture[str]
) -> None:
    _, settings, _ = await start(EmulatorConfig(beneficiaries=1))
    code = await run_cli(
        "enqueue",
        "connect",
        "c-bogus",
        "--code",
        "never-issued",
        "--code-verifier",
        VERIFIER,
        "--redirect-uri",
        REDIRECT_URI,
    )
    assert code == 0
    assert "queued" in capsys.readouterr().out
    await run_replica(settings, burst=True)
    assert await run_cli("status", "c-bogus", "--json") == 0
    [status] = orjson.loads(capsys.readouterr().out)
    assert status["status"] == "error"
    assert "invalid_grant" in status["last_error"]
    assert status["counts"] == {}
    row = await pool.fetchrow("SELECT * FROM connections WHERE connection_id = 'c-bogus'")
    assert row["access_token_enc"] is None
    assert row["refresh_token_enc"] is None
    assert await pool.fetchval("SELECT count(*) FROM fhir_resources") == 0
    assert await pool.fetchval("SELECT count(*) FROM sync_runs") == 0


async def test_migrate_twice_and_keygen(env: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_cli("migrate") == 0
    assert "up to date" in capsys.readouterr().out
    assert await run_cli("keygen") == 0
    assert len(capsys.readouterr().out.strip()) == 44


async def test_failures_lists_jobs_that_failed_for_good(
    env: None, pool: asyncpg.Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    await pool.execute(
        "INSERT INTO job_failures (job, job_id, job_try, kind, reason)"
        " VALUES ('connect', 'connect:x:1', 1, 'invalid', 'invalid ConnectJob payload: code')"
    )
    assert await run_cli("failures", "--json") == 0
    [row] = orjson.loads(capsys.readouterr().out)
    assert (row["job_id"], row["kind"], row["reason"]) == (
        "connect:x:1",
        "invalid",
        "invalid ConnectJob payload: code",
    )


async def test_rotate_key_reencrypts_every_token(
    env: None,
    pool: asyncpg.Pool,
    redis: Redis,
    start: Start,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    emulator, settings, services = await start(EmulatorConfig(beneficiaries=1))
    job = await authorized_job(emulator.base_url, 0)
    await connect({"services": services, "job_try": 1}, **job.model_dump())
    old = settings.token_encryption_key.get_secret_value()
    async with pool.acquire() as conn:
        before = await token_store.load_tokens(conn, services.cipher, "conn-0")
    new = generate_key()
    monkeypatch.setenv("TOKEN_ENCRYPTION_KEY", f"k2:{new},{old}")  # the old one keeps its id
    assert await run_cli("rotate-key") == 0
    assert (
        "re-encrypted 1 rows and 0 app and webhook secrets under key k2" in capsys.readouterr().out
    )
    rotated = TokenCipher.from_setting(f"k2:{new}")  # the old key is no longer needed
    async with pool.acquire() as conn:
        assert await token_store.load_tokens(conn, rotated, "conn-0") == before
    assert await run_cli("rotate-key") == 0  # a second run has nothing left to do
    assert "re-encrypted 0 rows" in capsys.readouterr().out


async def test_enqueue_resync_all_queues_every_active_connection_once(
    env: None, pool: asyncpg.Pool, redis: Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    await pool.executemany(
        "INSERT INTO connections (connection_id, status) VALUES ($1, $2)",
        [("a", "active"), ("b", "active"), ("c", "needs_reauth")],
    )
    assert await run_cli("enqueue", "resync", "--all") == 0
    assert "queued 2 resyncs (0 already queued)" in capsys.readouterr().out
    assert await run_cli("enqueue", "resync", "--all") == 0
    assert "queued 0 resyncs (2 already queued)" in capsys.readouterr().out
    queued = sorted(j.decode() for j in await redis.zrange("bbingest:queue:bulk", 0, -1))
    assert queued == ["resync:a", "resync:b"]
