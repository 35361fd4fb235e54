"""``bbingest enqueue <kind>``: one subcommand per event kind of the job specs
(:mod:`worker.jobs.spec`), the kinds the intake routes too, each queueing its spec's job.

The arguments are the contract's: a connection id; for ``connect`` the code and verifier
from arguments, files or standard input (kept off the command line), the redirect URI and
the app; for ``resync`` one connection or ``--all``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import Progress

from worker.apps import DEFAULT_APP
from worker.cliargs import Parser, connect_secrets, fail
from worker.errors import InvalidJob
from worker.jobs import backlog
from worker.jobs import queue as jobqueue
from worker.jobs.payloads import ExchangeJob, JobPayload, parse_payload
from worker.jobs.spec import SPECS, JobSpec
from worker.settings import Settings
from worker.store.db import connection
from worker.store.listing import active_ids


def _job(model: type[JobPayload], fields: dict[str, Any]) -> JobPayload:
    try:
        return parse_payload(model, (), fields)
    except InvalidJob as exc:
        fail(str(exc))


async def _queue(settings: Settings, job: JobPayload) -> int:
    queue = await jobqueue.open_queue(settings.redis_url)
    try:
        if isinstance(job, ExchangeJob) and job.received_at is not None:
            await backlog.enter(queue, job.app, job.job_id(), job.received_at)
        job_id = await jobqueue.enqueue(queue, job)
    finally:
        await queue.aclose()
    print("queued" if job_id else "already queued (duplicate event)")
    return 0


async def _enqueue(settings: Settings, args: argparse.Namespace) -> int:
    # The fields the subcommand takes; the others keep their defaults (an unlink is no purge).
    fields = {name: getattr(args, name) for name in args.payload.model_fields if name in args}
    return await _queue(settings, _job(args.payload, fields))


async def _enqueue_connect(settings: Settings, args: argparse.Namespace) -> int:
    code, verifier = connect_secrets(args)
    fields = {
        "connection_id": args.connection_id,
        "code": code,
        "code_verifier": verifier,
        "redirect_uri": args.redirect_uri,
        "app": args.app,
        "received_at": time.time(),
    }
    return await _queue(settings, _job(args.payload, fields))


async def _enqueue_all(settings: Settings, args: argparse.Namespace) -> int:
    async with connection(settings.database_url) as conn:
        ids = await active_ids(conn)
    queue = await jobqueue.open_queue(settings.redis_url)
    fresh = 0
    try:
        with Progress(console=Console(stderr=True), transient=True) as progress:
            for connection_id in progress.track(ids, description=f"queueing {args.job}s"):
                job = args.payload(connection_id=connection_id)
                fresh += await jobqueue.enqueue(queue, job) is not None
    finally:
        await queue.aclose()
    print(f"queued {fresh} {args.job}s ({len(ids) - fresh} already queued)")
    return 0


async def _enqueue_one_or_all(settings: Settings, args: argparse.Namespace) -> int:
    if args.all:
        return await _enqueue_all(settings, args)
    return await _enqueue(settings, args)


def _one_connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("connection_id", metavar="ID")
    parser.set_defaults(run=_enqueue)


def _one_or_all(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("connection_id", metavar="ID", nargs="?")
    which.add_argument("--all", action="store_true", help="every active connection")
    parser.set_defaults(run=_enqueue_one_or_all)


def _code_and_verifier(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Code and verifier come from arguments, files (- is stdin) or --stdin:"
        " files and stdin keep them off the command line (and a verifier may begin with"
        " '-', which as a separate argument would read as an option: --code-verifier=-abc)."
    )
    parser.add_argument("connection_id", metavar="ID")
    code = parser.add_mutually_exclusive_group()
    code.add_argument("--code")
    code.add_argument("--code-file", metavar="FILE", help="read the code from FILE (- : stdin)")
    verifier = parser.add_mutually_exclusive_group()
    verifier.add_argument("--code-verifier")
    verifier.add_argument(
        "--code-verifier-file", metavar="FILE", help="read the verifier from FILE (- : stdin)"
    )
    parser.add_argument(
        "--stdin",
        action="store_true",
        help='read {"code": ..., "code_verifier": ...} as JSON from stdin',
    )
    parser.add_argument("--redirect-uri", required=True)
    parser.add_argument(
        "--app", default=DEFAULT_APP, help="the app that issued the code (bbingest apps list)"
    )
    parser.set_defaults(run=_enqueue_connect)


# The contract's arguments per event kind; a kind not named takes a connection id.
_ARGUMENTS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "connect": _code_and_verifier,
    "resync": _one_or_all,
}


def _add(jobs: Any, event: str, spec: JobSpec) -> None:
    parser = jobs.add_parser(event, help=spec.summary)
    _ARGUMENTS.get(event, _one_connection)(parser)
    parser.set_defaults(payload=spec.payload)


def add_commands(commands: Any) -> None:
    """Add ``enqueue`` and one subcommand per event kind of the job specs."""
    enqueue = commands.add_parser("enqueue", help="queue a job")
    jobs = enqueue.add_subparsers(dest="job", required=True, parser_class=Parser)
    for spec in SPECS:
        if spec.event is not None:
            _add(jobs, spec.event, spec)
