"""``bbingest webhooks`` against real Postgres and a real receiver on loopback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import orjson
import pytest

from tests.integration.support import run_cli
from tests.integration.webhook_support import receiving, write_events
from worker.crypto import TokenCipher, generate_key
from worker.store import webhooks
from worker.webhooks.receiver import Receiver

SECRET = "whsec-0123456789abcdef"
NEW_SECRET = "whsec-fedcba9876543210"


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch, env: None) -> str:
    value = generate_key()
    monkeypatch.setenv("TOKEN_ENCRYPTION_KEY", value)
    return value


async def cli(*argv: str) -> int:
    """The exit status of ``bbingest argv``, a usage error's 2 included."""
    try:
        return await run_cli(*argv)
    except SystemExit as exited:
        return int(exited.code or 0)


def _file(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text + "\n")
    return str(path)


async def test_add_list_test_remove(
    pool: asyncpg.Pool, key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    receiver = Receiver([SECRET])
    async with receiving(receiver) as url:
        secret = _file(tmp_path, "s", SECRET)
        assert await cli("webhooks", "add", "default", url, "--secret-file", secret) == 0
        assert await cli("webhooks", "add", "default", url, "--secret-file", secret) == 2
        assert await cli("webhooks", "test", "default") == 0
        assert [r.type for r in receiver.received] == ["webhook.test"]
        assert await cli("webhooks", "list", "--json") == 0
        out = capsys.readouterr().out
        listed = orjson.loads(out[out.index("[") :])
        assert [(row["app"], row["url"]) for row in listed] == [("default", url)]
        assert SECRET not in out
        receiver.available = False
        assert await cli("webhooks", "test", "default") == 1
        assert "FAILED (HTTP 503)" in capsys.readouterr().out
        assert await cli("webhooks", "remove", "default", url) == 0
        assert await cli("webhooks", "remove", "default", url) == 2
        assert await cli("webhooks", "test", "default") == 2


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://hooks.example.com/x", "https only"),
        ("https://u:p@hooks.example.com/x", "user or password"),
    ],
)
async def test_add_refuses_a_url_it_must_not_send_to(
    pool: asyncpg.Pool,
    key: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    url: str,
    reason: str,
) -> None:
    secret = _file(tmp_path, "s", SECRET)
    assert await cli("webhooks", "add", "default", url, "--secret-file", secret) == 2
    assert reason in capsys.readouterr().err


async def test_add_refuses_a_short_secret_and_an_unknown_app(
    pool: asyncpg.Pool, key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "https://hooks.example.com/x"
    short = _file(tmp_path, "short", "tiny")
    assert await cli("webhooks", "add", "default", url, "--secret-file", short) == 2
    assert "at least 16 characters" in capsys.readouterr().err
    secret = _file(tmp_path, "s", SECRET)
    assert await cli("webhooks", "add", "nope", url, "--secret-file", secret) == 2
    assert "not registered" in capsys.readouterr().err


async def test_rotate_signs_with_both_secrets_during_the_grace(
    pool: asyncpg.Pool, key: str, tmp_path: Path
) -> None:
    old_only, new_only = Receiver([SECRET]), Receiver([NEW_SECRET])
    async with receiving(old_only) as url:
        async with pool.acquire() as conn:
            await webhooks.add(conn, TokenCipher.from_setting(key), "default", url, SECRET)
        new = _file(tmp_path, "n", NEW_SECRET)
        assert await cli("webhooks", "rotate", "default", url, "--secret-file", new) == 0
        assert await cli("webhooks", "test", "default") == 0  # the old secret still signs
    async with pool.acquire() as conn:
        [sealed] = await webhooks.sealed_secrets(conn, "default")
    cipher = TokenCipher.from_setting(key)
    now = datetime.now(UTC)
    assert sealed.valid(cipher, now) == [NEW_SECRET, SECRET]
    assert sealed.valid(cipher, now + timedelta(days=1, minutes=1)) == [NEW_SECRET]
    assert new_only.received == []


async def test_failures_and_replay(
    pool: asyncpg.Pool, key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with pool.acquire() as conn:
        endpoint = await webhooks.add(
            conn, TokenCipher.from_setting(key), "default", "https://hooks.example.com/x", SECRET
        )
    start = datetime.now(UTC)
    expected = await write_events(pool, ["a"], 3)
    await pool.execute(
        """UPDATE webhook_deliveries SET dead_at = now(), attempts = 40, last_status = 500,
           last_error = 'HTTP 500' WHERE event_id = $1""",
        expected["a"][0],
    )
    await pool.execute("UPDATE webhook_deliveries SET delivered_at = now() WHERE dead_at IS NULL")
    assert await cli("webhooks", "failures") == 0
    out = capsys.readouterr().out
    assert expected["a"][0] in out
    assert "HTTP 500" in out
    assert "40 attempts" in out
    assert await cli("webhooks", "failures", "--json") == 0
    [dead] = orjson.loads(capsys.readouterr().out)
    assert (dead["event_id"], dead["attempts"], dead["last_status"]) == (expected["a"][0], 40, 500)
    assert datetime.fromisoformat(dead["dead_at"]) >= start
    assert await cli("webhooks", "replay", "default", "--since", start.isoformat()) == 0
    assert "queued 3 deliveries" in capsys.readouterr().out
    rows = await pool.fetch(
        "SELECT attempts, delivered_at, dead_at FROM webhook_deliveries WHERE endpoint_id = $1",
        endpoint,
    )
    assert [tuple(r) for r in rows] == [(0, None, None)] * 3
    assert await cli("webhooks", "replay", "default", "--since", "yesterday") == 2
