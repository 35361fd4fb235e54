"""The ``bbingest`` command line: each command parses, validates, and calls one function."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import structlog
from rich.console import Console

from worker.apps_cli import add_commands as add_app_commands
from worker.cliargs import Parser, duration, fail, positive
from worker.crypto import generate_key
from worker.enqueue_cli import add_commands as add_enqueue_commands
from worker.errors import ConfigError, ServiceUnavailable
from worker.log import configure_logging
from worker.ops_cli import add_commands as add_ops_commands
from worker.settings import Settings, load_settings
from worker.store.db import connection
from worker.webhooks_cli import add_commands as add_webhook_commands


async def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from worker.gctune import tune_gc
    from worker.jobs.worker import run_replica

    tune_gc()
    await run_replica(settings, burst=args.burst, concurrency=args.concurrency)
    return 0


async def _status(settings: Settings, args: argparse.Namespace) -> int:
    from worker.pauses import read_paused
    from worker.status import load_status, render_table

    before = None if args.expiring_within is None else datetime.now(UTC) + args.expiring_within
    paused = await read_paused(settings.redis_url)
    async with connection(settings.database_url) as conn:
        statuses = await load_status(
            conn, args.connection_id, consent_before=before, app=args.app, paused=paused
        )
    if args.json:
        print(
            orjson.dumps([s.as_cli_json() for s in statuses], option=orjson.OPT_INDENT_2).decode()
        )
    else:
        render_table(statuses, Console())
    return 0


async def _emulator(_settings: Settings, args: argparse.Namespace) -> int:
    from worker.emulator.config import config_from_args
    from worker.emulator.server import serve

    try:
        config = config_from_args(args)
    except ValueError as exc:
        fail(str(exc))
    await serve(config, args.host, args.port)
    return 0


async def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from worker.demo import run_demo

    return await run_demo(settings, beneficiaries=args.beneficiaries, replicas=args.replicas)


async def _sandbox_connect(settings: Settings, args: argparse.Namespace) -> int:
    from worker.sandbox_connect import run_sandbox_connect

    return await run_sandbox_connect(settings, connection_id=args.connection_id, port=args.port)


async def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from worker.intake.server import serve

    await serve(settings, args.host, args.port)
    return 0


def _keygen(_args: argparse.Namespace) -> int:
    print(generate_key())
    return 0


Command = Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]]


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree (see CONTRACT.md)."""
    parser = Parser(prog="bbingest", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    add_ops_commands(commands)
    _add_service_commands(commands)
    add_enqueue_commands(commands)
    add_app_commands(commands)
    add_webhook_commands(commands)
    _add_local_commands(commands)
    return parser


def _add_service_commands(commands: Any) -> None:
    """The long-running services (a worker replica, the intake, the emulator) and ``status``."""
    worker = commands.add_parser("worker", help="run one worker replica")
    worker.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    worker.add_argument("--concurrency", type=positive, help="jobs at once (WORKER_CONCURRENCY)")
    worker.set_defaults(run=_worker)

    status = commands.add_parser("status", help="show connections")
    status.add_argument("connection_id", metavar="ID", nargs="?")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--app", help="only the connections of this app")
    status.add_argument(
        "--expiring-within",
        type=duration,
        metavar="DURATION",
        help="only live connections whose consent lapses within e.g. 30d, 12h, 2w",
    )
    status.set_defaults(run=_status)

    serve = commands.add_parser(
        "serve", help="the HTTP intake for connect / unlink / resync events (INTAKE_SECRET)"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.set_defaults(run=_serve)

    emulator = commands.add_parser("emulator", help="serve the local BB2 emulator")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=8765)
    _emulator_arguments(emulator)
    emulator.set_defaults(run=_emulator)


def _add_local_commands(commands: Any) -> None:
    """Commands for trying the service out: the demo, a sandbox connect, a new key."""
    demo = commands.add_parser("demo", help="the whole flow on the local emulator")
    demo.add_argument("--beneficiaries", type=positive, default=30)
    demo.add_argument("--replicas", type=positive, default=2)
    demo.set_defaults(run=_demo)

    sandbox = commands.add_parser(
        "sandbox-connect", help="authorize one sandbox user in your browser and queue the connect"
    )
    sandbox.add_argument("--connection-id", default="sandbox-1")
    sandbox.add_argument("--port", type=int, default=3000)
    sandbox.set_defaults(run=_sandbox_connect)

    commands.add_parser("keygen", help="print a new TOKEN_ENCRYPTION_KEY").set_defaults(
        local=_keygen
    )


def _emulator_arguments(parser: argparse.ArgumentParser) -> None:
    from worker.emulator.config import add_arguments

    add_arguments(parser)


def _warn_insecure_transport(settings: Settings) -> None:
    """The opt-out of verified TLS is loud: one warning per unverified link, on every start."""
    for problem in settings.insecure_transport():
        structlog.get_logger(__name__).warning(
            "insecure_transport", setting="ALLOW_INSECURE_TRANSPORT", problem=problem
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bbingest`` console script."""
    args = build_parser().parse_args(argv)
    if hasattr(args, "local"):
        return int(args.local(args))
    try:
        settings = load_settings()
    except ConfigError as exc:
        fail(str(exc))
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    _warn_insecure_transport(settings)
    command: Command = args.run
    try:
        return asyncio.run(command(settings, args))
    except ConfigError as exc:
        fail(str(exc))
    except asyncpg.UndefinedTableError:
        fail("the database has no tables yet: run `bbingest migrate` first")
    except ServiceUnavailable as exc:  # a replica outwaited by a Redis outage
        print(f"bbingest: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
