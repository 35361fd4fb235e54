"""A rolling change of TOKEN_ENCRYPTION_KEY moves no connection to error (issue 13)."""

from __future__ import annotations

from dataclasses import replace

import asyncpg
import pytest
from arq import Retry
from prometheus_client import REGISTRY

from tests.integration.conftest import Start, connected, ctx, settings_for
from worker.crypto import TokenCipher, generate_key
from worker.emulator.config import EmulatorConfig
from worker.errors import ConfigError
from worker.jobs.resync import resync
from worker.runtime.services import close_services, open_services
from worker.store import connections, rekey


def key_missing_count(key_id: str) -> float:
    value = REGISTRY.get_sample_value("bbingest_decrypt_key_missing_total", {"key_id": key_id})
    return value or 0.0


async def test_a_rolling_key_change_moves_no_connection_to_error(
    start: Start, pool: asyncpg.Pool
) -> None:
    _, settings, old_replica = await connected(start, EmulatorConfig())
    old_key = settings.token_encryption_key.get_secret_value()
    new_key = "k2:" + generate_key()
    # A replica of the new release seals under k2 (here: all of them, as rotate-key would).
    new_cipher = TokenCipher.from_setting(f"{new_key},{old_key}")
    async with pool.acquire() as conn:
        assert await rekey.rekey_all(conn, new_cipher) == 1
    before = key_missing_count("k2")

    # A replica still on the old key alone cannot read them: it retries and alerts.
    with pytest.raises(Retry):
        await resync(ctx(old_replica), "conn-1")
    async with pool.acquire() as conn:
        kept = await connections.get(conn, "conn-1")
    assert kept is not None
    assert kept.status == "active"
    assert kept.last_error is None
    assert key_missing_count("k2") == before + 1

    # Rolled out as decrypt-only first, k2 is readable everywhere before anyone writes with it.
    rolled = replace(old_replica, cipher=TokenCipher.from_setting(old_key, decrypt_only=new_key))
    assert rolled.cipher.active_key_id != "k2"
    assert (await resync(ctx(rolled), "conn-1"))["status"] == "active"


async def test_a_replica_lacking_a_stored_key_refuses_to_start(
    start: Start, pool: asyncpg.Pool
) -> None:
    emulator, settings, _ = await connected(start, EmulatorConfig())
    old_key = settings.token_encryption_key.get_secret_value()

    with pytest.raises(ConfigError, match="key ids"):
        await open_services(settings_for(emulator.base_url, generate_key()), concurrency=1)
    covered = settings_for(emulator.base_url, generate_key(), TOKEN_DECRYPT_ONLY_KEYS=old_key)
    await close_services(await open_services(covered, concurrency=1))
