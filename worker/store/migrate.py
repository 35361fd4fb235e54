"""Applies ``schemas/migrations/*.sql`` in order, once each, under an advisory lock."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

import asyncpg

MIGRATIONS_DIR: Final = Path(__file__).resolve().parents[2] / "schemas" / "migrations"
# Any constant works; it only has to be the same for every replica.
_LOCK_ID: Final = 0x62626967  # "bbig"

_CREATE_TABLE: Final = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     text PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    """One SQL file; its version is the file name without ``.sql``."""

    version: str
    sql: str


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every migration file, in name order (``001_...``, ``002_...``)."""
    files = sorted(directory.glob("*.sql"))
    if not files:
        raise FileNotFoundError(f"no migrations in {directory}")
    return [Migration(path.stem, path.read_text(encoding="utf-8")) for path in files]


async def migrate(conn: asyncpg.Connection, migrations: list[Migration] | None = None) -> list[str]:
    """Apply the pending migrations; returns the versions applied (empty when up to date).

    A session advisory lock serialises replicas that start at once; each migration runs
    in its own transaction together with its row in ``schema_migrations``.
    """
    pending = load_migrations() if migrations is None else migrations
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
    try:
        await conn.execute(_CREATE_TABLE)
        done = {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}
        applied = []
        for migration in pending:
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version) VALUES ($1)", migration.version
                )
            applied.append(migration.version)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)
