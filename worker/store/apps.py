"""The apps registry: each app's client, environment and budget, its secret encrypted.

An app's current client serves new connections. When an update changes the client (say,
from sandbox to production credentials), the old one moves to ``app_clients_retired`` and
keeps serving the connections it authorized.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import asyncpg

from worker.apps import App
from worker.crypto import TokenCipher
from worker.errors import AppUnavailable, ConfigError
from worker.store.db import Conn

_COLUMNS: Final = "environment, base_url, client_id, client_secret_enc, rate_limit"


@dataclass(frozen=True)
class AppInfo:
    """An app as operators see it: no secret, with its connections counted."""

    name: str
    environment: str
    base_url: str
    client_id: str
    rate_limit: int
    retired_clients: int
    connections: int
    created_at: datetime
    updated_at: datetime


def _context(name: str, client_id: str) -> str:
    # Bound to the app and client id: a secret copied onto another app does not decrypt.
    return f"app:{name}/{client_id}/secret"


def _seal(cipher: TokenCipher, app: App) -> str:
    return cipher.encrypt(app.client_secret, context=_context(app.name, app.client_id))


def _values(cipher: TokenCipher, app: App) -> tuple[str | int, ...]:
    """The app as ``name, environment, base_url, client_id, client_secret_enc, rate_limit``."""
    return (
        app.name,
        app.environment,
        app.base_url,
        app.client_id,
        _seal(cipher, app),
        app.rate_limit,
    )


def _app(name: str, record: asyncpg.Record, cipher: TokenCipher) -> App:
    return App(
        name=name,
        environment=record["environment"],
        base_url=record["base_url"],
        client_id=record["client_id"],
        client_secret=cipher.decrypt(
            record["client_secret_enc"], context=_context(name, record["client_id"])
        ),
        rate_limit=record["rate_limit"],
    )


async def add(conn: Conn, cipher: TokenCipher, app: App) -> None:
    """Register ``app``; ConfigError when the name is taken."""
    try:
        await conn.execute(
            f"INSERT INTO apps (name, {_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)",
            *_values(cipher, app),
        )
    except asyncpg.UniqueViolationError:
        raise ConfigError(f"app {app.name!r} exists already (bbingest apps update)") from None


async def get(conn: Conn, cipher: TokenCipher, name: str, client_id: str | None = None) -> App:
    """The app's current client, or (``client_id``) the one that issued a connection's tokens,
    current or retired; AppUnavailable when there is no such app or client."""
    record = await conn.fetchrow(f"SELECT {_COLUMNS} FROM apps WHERE name = $1", name)
    if record is None:
        raise AppUnavailable(f"app {name!r} is not registered (bbingest apps list)")
    if client_id is None or client_id == record["client_id"]:
        return _app(name, record, cipher)
    retired = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM app_clients_retired WHERE app = $1 AND client_id = $2",
        name,
        client_id,
    )
    if retired is None:
        raise AppUnavailable(
            f"app {name!r} no longer holds the client that issued the connection's tokens"
        )
    return _app(name, retired, cipher)


async def update(
    conn: Conn, cipher: TokenCipher, name: str, change: Callable[[App], App]
) -> tuple[App, App]:
    """Replace app ``name``'s registration with ``change(current)``, the row locked so that
    concurrent updates apply one after the other; returns (old, new).

    A new client id retires the old client, which keeps serving the connections it
    authorized; the same client id (a new secret, base URL or rate) changes it in place,
    for every connection of that client.
    """
    async with conn.transaction():
        await conn.execute("SELECT 1 FROM apps WHERE name = $1 FOR UPDATE", name)
        old = await get(conn, cipher, name)
        changed = change(old)
        if old.client_id != changed.client_id:
            await _retire(conn, cipher, old)
        await conn.execute(
            "DELETE FROM app_clients_retired WHERE app = $1 AND client_id = $2",
            changed.name,
            changed.client_id,
        )
        await conn.execute(
            """UPDATE apps SET environment = $2, base_url = $3, client_id = $4,
                   client_secret_enc = $5, rate_limit = $6, updated_at = now()
               WHERE name = $1""",
            changed.name,
            changed.environment,
            changed.base_url,
            changed.client_id,
            _seal(cipher, changed),
            changed.rate_limit,
        )
    return old, changed


async def _retire(conn: Conn, cipher: TokenCipher, app: App) -> None:
    await conn.execute(
        f"""INSERT INTO app_clients_retired (app, {_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (app, client_id) DO UPDATE SET environment = EXCLUDED.environment,
                base_url = EXCLUDED.base_url, client_secret_enc = EXCLUDED.client_secret_enc,
                rate_limit = EXCLUDED.rate_limit, retired_at = now()""",
        *_values(cipher, app),
    )


async def remove(conn: Conn, name: str) -> bool:
    """Forget the app and its retired clients; False when it was not registered."""
    return bool(await conn.fetchval("DELETE FROM apps WHERE name = $1 RETURNING true", name))


async def live_connections(conn: Conn, name: str) -> int:
    """Connections of the app that still hold tokens (and would be stranded by a removal)."""
    count = await conn.fetchval(
        "SELECT count(*) FROM connections WHERE app = $1 AND refresh_token_enc IS NOT NULL",
        name,
    )
    return int(count)


async def list_all(conn: Conn) -> list[AppInfo]:
    """Every registered app by name, without secrets."""
    records = await conn.fetch(
        """SELECT a.name, a.environment, a.base_url, a.client_id, a.rate_limit,
                  a.created_at, a.updated_at,
                  (SELECT count(*) FROM app_clients_retired r WHERE r.app = a.name)
                      AS retired_clients,
                  (SELECT count(*) FROM connections c WHERE c.app = a.name) AS connections
           FROM apps a ORDER BY a.name"""
    )
    return [AppInfo(**dict(record)) for record in records]


async def rate_limits(conn: Conn) -> dict[str, int]:
    """Each registered app's request budget (requests per second)."""
    records = await conn.fetch("SELECT name, rate_limit FROM apps")
    return {record["name"]: record["rate_limit"] for record in records}


async def rekey_all(conn: Conn, cipher: TokenCipher) -> int:
    """Re-encrypt every app secret (current and retired) under the active key; returns how
    many changed. Secrets already under it are left alone."""
    changed = 0
    async with conn.transaction():
        for table, name_column in (("apps", "name"), ("app_clients_retired", "app")):
            records = await conn.fetch(
                f"SELECT {name_column} AS name, client_id, client_secret_enc FROM {table}"
                " FOR UPDATE"
            )
            for record in records:
                context = _context(record["name"], record["client_id"])
                sealed = cipher.reseal(record["client_secret_enc"], context=context)
                if sealed is None:
                    continue
                await conn.execute(
                    f"UPDATE {table} SET client_secret_enc = $3"
                    f" WHERE {name_column} = $1 AND client_id = $2",
                    record["name"],
                    record["client_id"],
                    sealed,
                )
                changed += 1
    return changed


async def budget_of(conn: Conn, name: str) -> tuple[str, int] | None:
    """The client id and rate limit of registered app ``name`` (its budget), or None."""
    record = await conn.fetchrow("SELECT client_id, rate_limit FROM apps WHERE name = $1", name)
    return None if record is None else (record["client_id"], int(record["rate_limit"]))
