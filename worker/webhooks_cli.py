"""``bbingest webhooks add|list|remove|test|rotate|failures|replay``: where each app's events
are POSTed (signed), and what became of them (issue 15, CONTRACT.md).

A secret is read from a file or standard input (``--secret-file -``), never from an
argument, which other users of the machine could read in the process list."""

from __future__ import annotations

import argparse
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from worker.apps import DEFAULT_APP, check_app_name
from worker.cliargs import duration, fail, positive, print_json, read_secret
from worker.crypto import cipher_for
from worker.settings import Settings
from worker.store import apps, delivery_admin, webhooks
from worker.store.db import Conn, connection
from worker.store.outbox import Event
from worker.webhooks.sender import client, deliver
from worker.webhooks.urls import check_webhook_url

MIN_SECRET_LENGTH = 16
TEST_EVENT_TYPE = "webhook.test"


def _app(text: str) -> str:
    try:
        return check_app_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _url(text: str) -> str:
    try:
        return check_webhook_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _time(text: str) -> datetime:
    """An ISO 8601 time (UTC unless it says), or a duration back from now (24h, 7d)."""
    try:
        return datetime.now(UTC) - duration(text)
    except argparse.ArgumentTypeError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an ISO 8601 time nor a duration like 24h or 7d"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _secret(path: str) -> str:
    secret = read_secret(path)
    if len(secret) < MIN_SECRET_LENGTH or "\n" in secret:
        fail(f"--secret-file: expected one line of at least {MIN_SECRET_LENGTH} characters")
    return secret


async def _known_app(conn: Conn, app: str) -> None:
    if app != DEFAULT_APP and await apps.budget_of(conn, app) is None:
        fail(f"app {app!r} is not registered (bbingest apps list)")


async def _add(settings: Settings, args: argparse.Namespace) -> int:
    secret = _secret(args.secret_file)
    async with connection(settings.database_url) as conn:
        await _known_app(conn, args.app)
        try:
            await webhooks.add(conn, cipher_for(settings), args.app, args.url, secret)
        except asyncpg.UniqueViolationError:
            fail(f"{args.url} already receives {args.app}'s events (rotate changes its secret)")
    print(f"{args.app}'s events now go to {args.url} (signed; check them as README shows)")
    return 0


async def _remove(settings: Settings, args: argparse.Namespace) -> int:
    async with connection(settings.database_url) as conn:
        if not await webhooks.remove(conn, args.app, args.url):
            fail(f"{args.url} does not receive {args.app}'s events")
    print(f"{args.app}'s events no longer go to {args.url}; its undelivered events are dropped")
    return 0


async def _rotate(settings: Settings, args: argparse.Namespace) -> int:
    secret = _secret(args.secret_file)
    until = datetime.now(UTC) + args.grace
    async with connection(settings.database_url) as conn:
        if not await webhooks.rotate(conn, cipher_for(settings), args.app, args.url, secret, until):
            fail(f"{args.url} does not receive {args.app}'s events")
    print(f"new secret in use; the previous one also signs until {until:%Y-%m-%d %H:%M} UTC")
    return 0


async def _list(settings: Settings, args: argparse.Namespace) -> int:
    async with connection(settings.database_url) as conn:
        found = await webhooks.list_all(conn, args.app)
    if args.json:
        print_json(found)
        return 0
    for info in found:
        rotating = (
            f", rotating until {info.rotating_until:%Y-%m-%d %H:%M}" if info.rotating_until else ""
        )
        print(f"{info.app} {info.url}: {info.pending} waiting, {info.dead} dead-lettered{rotating}")
    if not found:
        print("no webhook endpoints")
    return 0


async def _failures(settings: Settings, args: argparse.Namespace) -> int:
    async with connection(settings.database_url) as conn:
        found = await delivery_admin.dead_letters(conn, args.app, args.limit)
    if args.json:
        print_json(found)
        return 0
    for dead in found:
        print(
            f"{dead.dead_at:%Y-%m-%d %H:%M:%S} {dead.app} {dead.url} {dead.type} {dead.event_id}"
            f" (connection {dead.connection_id}, {dead.attempts} attempts): {dead.last_error}"
        )
    if not found:
        print("no dead-lettered deliveries")
    return 0


async def _replay(settings: Settings, args: argparse.Namespace) -> int:
    async with connection(settings.database_url) as conn:
        await _known_app(conn, args.app)
        queued = await delivery_admin.replay(conn, args.app, args.since)
    print(
        f"queued {queued} deliveries of {args.app}'s events since {args.since:%Y-%m-%d %H:%M} UTC"
    )
    return 0


def _test_event(app: str) -> Event:
    return Event(
        event_id=uuid.uuid4(),
        position="0",
        app=app,
        connection_id=None,
        type=TEST_EVENT_TYPE,
        version=1,
        data={"message": "a test delivery from bbingest webhooks test"},
        created_at=datetime.now(UTC),
    )


async def _test(settings: Settings, args: argparse.Namespace) -> int:
    """POST a signed test event to each endpoint of the app: 1 when any failed."""
    cipher = cipher_for(settings)
    async with connection(settings.database_url) as conn:
        endpoints = await webhooks.sealed_secrets(conn, args.app)
    if not endpoints:
        fail(f"app {args.app!r} has no webhook endpoints (bbingest webhooks add)")
    event = _test_event(args.app)
    failed = 0
    async with client(len(endpoints)) as http:
        for endpoint in endpoints:
            outcome = await deliver(http, cipher, endpoint, event, datetime.now(UTC))
            print(f"{endpoint.url}: " + ("ok" if outcome.ok else f"FAILED ({outcome.error})"))
            failed += not outcome.ok
    return 1 if failed else 0


def add_commands(commands: Any) -> None:
    """Add ``webhooks`` and its subcommands to the ``bbingest`` command tree."""
    group = commands.add_parser("webhooks", help="where each app's events are POSTed (signed)")
    actions = group.add_subparsers(dest="action", required=True, parser_class=type(group))
    for name, run, text in (
        ("add", _add, "send an app's events to URL (https; http only for loopback)"),
        ("rotate", _rotate, "give an endpoint a new secret; the old one signs for --grace"),
        ("remove", _remove, "stop sending an app's events to URL"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("app", type=_app, metavar="APP")
        action.add_argument("url", type=_url, metavar="URL")
        if name != "remove":
            action.add_argument("--secret-file", metavar="FILE", required=True, help="'-': stdin")
        action.set_defaults(run=run)
    actions.choices["rotate"].add_argument(
        "--grace", type=duration, default=timedelta(days=1), help="e.g. 24h, 7d (default 1d)"
    )
    test = actions.add_parser("test", help="POST a signed test event to the app's endpoints")
    test.add_argument("app", type=_app, metavar="APP")
    test.set_defaults(run=_test)
    replay = actions.add_parser("replay", help="send an app's events since T again")
    replay.add_argument("app", type=_app, metavar="APP")
    replay.add_argument("--since", type=_time, required=True, metavar="T", help="ISO time or 24h")
    replay.set_defaults(run=_replay)
    for name, run, text in (
        ("list", _list, "the endpoints, with waiting and dead-lettered counts"),
        ("failures", _failures, "dead-lettered deliveries, newest first"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("--app", type=_app)
        action.add_argument("--json", action="store_true", help="machine-readable output")
        action.set_defaults(run=run)
    actions.choices["failures"].add_argument("--limit", type=positive, default=50)
