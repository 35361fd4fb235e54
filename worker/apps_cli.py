"""``bbingest apps add|list|update|remove``: the registry of Blue Button apps.

A client secret is read from a file or standard input (``--client-secret-file -``), never
from an argument, which other users of the machine could read in the process list.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from worker.apps import DEFAULT_APP, App, check_app_name, default_app
from worker.cliargs import fail, positive
from worker.crypto import TokenCipher, cipher_for
from worker.errors import AppUnavailable
from worker.pauses import read_paused
from worker.settings import BASE_URLS, Environment, Settings, base_url_for
from worker.store import apps
from worker.store.apps import AppInfo
from worker.store.db import connection


def _name(text: str) -> str:
    try:
        name = check_app_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if name == DEFAULT_APP:
        raise argparse.ArgumentTypeError(
            f"{DEFAULT_APP!r} is the app the BB_* settings configure; pick another name"
        )
    return name


def _rate(text: str) -> int:
    value = positive(text)
    if value > 1000:
        raise argparse.ArgumentTypeError(f"{value} must be at most 1000")
    return value


def _read_secret(source: str) -> str:
    """The secret in a file, or on standard input for ``-``; one line, whitespace trimmed."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"--client-secret-file: cannot read {source}: {exc.strerror}")
    secret = text.strip()
    if not secret or "\n" in secret:
        fail("--client-secret-file: expected the secret alone on one line")
    return secret


def _base_url(environment: Environment, override: str) -> str:
    try:
        return base_url_for(environment, override)
    except ValueError as exc:
        fail(f"--base-url: {exc}")


def _cipher(settings: Settings) -> TokenCipher:
    return cipher_for(settings)


async def _add(settings: Settings, args: argparse.Namespace) -> int:
    if not args.client_id or not args.client_secret_file:
        fail("apps add needs --client-id and --client-secret-file")
    app = App(
        name=args.name,
        environment=args.environment or "sandbox",
        base_url=_base_url(args.environment or "sandbox", args.base_url or ""),
        client_id=args.client_id,
        client_secret=_read_secret(args.client_secret_file),
        rate_limit=args.rate_limit or settings.bb_rate_limit,
    )
    async with connection(settings.database_url) as conn:
        await apps.add(conn, _cipher(settings), app)
    print(f"added app {app.name} ({app.environment}, {app.base_url}, {app.rate_limit} req/s)")
    return 0


def _changed(old: App, args: argparse.Namespace, secret: str | None) -> App:
    """``old`` with what the options change; a new client id needs its secret."""
    if args.client_id and args.client_id != old.client_id and secret is None:
        fail("a new --client-id needs its --client-secret-file")
    environment: Environment = args.environment or old.environment
    if args.base_url:
        override = args.base_url
    elif environment != old.environment:
        override = ""  # the new environment's own host
    else:
        override = old.base_url
    return replace(
        old,
        environment=environment,
        base_url=_base_url(environment, override),
        client_id=args.client_id or old.client_id,
        client_secret=secret or old.client_secret,
        rate_limit=args.rate_limit or old.rate_limit,
    )


async def _update(settings: Settings, args: argparse.Namespace) -> int:
    cipher = _cipher(settings)
    # Read before the row is locked: standard input may take its time.
    secret = _read_secret(args.client_secret_file) if args.client_secret_file else None
    async with connection(settings.database_url) as conn:
        old, new = await apps.update(
            conn, cipher, args.name, lambda current: _changed(current, args, secret)
        )
    print(f"updated app {new.name} ({new.environment}, {new.base_url}, {new.rate_limit} req/s)")
    if old.client_id != new.client_id:
        print(
            f"the {old.environment} client it had keeps serving the connections it authorized;"
            " new connections use the new client"
        )
    return 0


async def _remove(settings: Settings, args: argparse.Namespace) -> int:
    async with connection(settings.database_url) as conn:
        live = await apps.live_connections(conn, args.name)
        if live and not args.force:
            fail(
                f"app {args.name} still serves {live} connections, whose jobs would fail until"
                " it is added again: unlink them first, or pass --force"
            )
        if not await apps.remove(conn, args.name):
            fail(f"app {args.name!r} is not registered")
    print(f"removed app {args.name}" + (f"; {live} connections can no longer sync" if live else ""))
    return 0


def _default_row(settings: Settings) -> dict[str, Any]:
    try:
        app = default_app(settings)
    except AppUnavailable:
        return {"name": DEFAULT_APP, "configured": False}
    return {
        "name": app.name,
        "environment": app.environment,
        "base_url": app.base_url,
        "client_id": app.client_id,
        "rate_limit": app.rate_limit,
        "source": "BB_* settings",
    }


def _json_row(info: AppInfo) -> dict[str, Any]:
    row = vars(info).copy()
    row.update(created_at=info.created_at.isoformat(), updated_at=info.updated_at.isoformat())
    return row


def _at_cms(paused: dict[str, datetime], name: str) -> str:
    since = paused.get(name)
    return "active" if since is None else f"INACTIVE since {since:%Y-%m-%d %H:%M}"


async def _list(settings: Settings, args: argparse.Namespace) -> int:
    paused = await read_paused(settings.redis_url)
    async with connection(settings.database_url) as conn:
        found = await apps.list_all(conn)
    if args.json:
        rows = [_default_row(settings), *(_json_row(info) for info in found)]
        for row in rows:
            since = paused.get(row["name"])
            row["inactive_since"] = None if since is None else since.isoformat()
        print(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return 0
    table = Table(title="apps")
    for column in ("app", "environment", "base URL", "client id", "req/s", "connections", "at CMS"):
        table.add_column(column)
    default = _default_row(settings)
    table.add_row(
        DEFAULT_APP + " (BB_* settings)",
        default.get("environment", "-"),
        default.get("base_url", "-"),
        default.get("client_id", "not configured"),
        str(default.get("rate_limit", "-")),
        "-",
        _at_cms(paused, DEFAULT_APP),
    )
    for info in found:
        retired = f" (+{info.retired_clients} retired)" if info.retired_clients else ""
        table.add_row(
            info.name,
            info.environment,
            info.base_url,
            info.client_id + retired,
            str(info.rate_limit),
            str(info.connections),
            _at_cms(paused, info.name),
        )
    Console().print(table)
    return 0


def _registration_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--environment", choices=sorted(BASE_URLS))
    parser.add_argument(
        "--base-url", help="the BB2 host (default: the environment's; http only for loopback)"
    )
    parser.add_argument("--client-id")
    parser.add_argument(
        "--client-secret-file", metavar="FILE", help="file holding the secret ('-': stdin)"
    )
    parser.add_argument(
        "--rate-limit", type=_rate, help="requests/s for this client id (default: BB_RATE_LIMIT)"
    )


def add_commands(commands: Any) -> None:
    """Add ``apps`` and its subcommands to the ``bbingest`` command tree."""
    group = commands.add_parser("apps", help="the Blue Button apps this deployment serves")
    actions = group.add_subparsers(dest="action", required=True, parser_class=type(group))
    add = actions.add_parser("add", help="register an app (environment sandbox by default)")
    add.add_argument("name", type=_name, metavar="NAME")
    _registration_options(add)
    add.set_defaults(run=_add)
    update = actions.add_parser(
        "update", help="change an app; a new client id serves new connections only"
    )
    update.add_argument("name", type=_name, metavar="NAME")
    _registration_options(update)
    update.set_defaults(run=_update)
    remove = actions.add_parser("remove", help="forget an app and its secrets")
    remove.add_argument("name", type=_name, metavar="NAME")
    remove.add_argument("--force", action="store_true", help="even if connections still use it")
    remove.set_defaults(run=_remove)
    listing = actions.add_parser("list", help="every app, without secrets")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(run=_list)
