"""``bbingest migrate|partition-resources|health|failures|rotate-key|purge``: the operator's
commands on the database and the queues (CONTRACT.md)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

import asyncpg

from worker.cliargs import positive, print_json
from worker.jobs.payloads import UnlinkJob
from worker.settings import Settings
from worker.store.db import connection


async def _migrate(settings: Settings, _args: argparse.Namespace) -> int:
    from worker.store.migrate import migrate
    from worker.store.partitioning import is_partitioned

    async with connection(settings.database_url) as conn:
        applied = await migrate(conn)
        partitioned = await is_partitioned(conn)
    print(f"applied {', '.join(applied)}" if applied else "database is up to date")
    if not partitioned:
        print(
            "fhir_resources held rows, so it is not partitioned yet:"
            " move it online with `bbingest partition-resources`"
        )
    return 0


async def _partition_resources(settings: Settings, args: argparse.Namespace) -> int:
    from worker.store.partitioning import move_online

    async with connection(settings.database_url) as conn:
        copied = await move_online(
            conn, batch=args.batch, progress=lambda n: print(f"copied {n} rows", flush=True)
        )
    if copied is None:
        print("fhir_resources is partitioned already")
    else:
        print(
            f"fhir_resources is partitioned ({copied} rows copied); the old table is kept as"
            " fhir_resources_unpartitioned: drop it once checked"
        )
    return 0


async def _health(settings: Settings, _args: argparse.Namespace) -> int:
    from worker.ops import live_replicas, readiness
    from worker.outages import open_redis
    from worker.store.db import create_pool

    redis = open_redis(settings.redis_url)
    try:
        pool = await create_pool(settings.database_url, max_size=1)
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"postgres: {type(exc).__name__}")
        await redis.aclose()
        return 1
    try:
        checks = await readiness(redis, pool)
        replicas = await live_replicas(redis) if checks["redis"] == "ok" else []
    finally:
        await pool.close()
        await redis.aclose()
    checks["workers"] = f"ok ({len(replicas)} live)" if replicas else "none reported recently"
    for name, state in checks.items():
        print(f"{name}: {state}")
    return 0 if all(state.startswith("ok") for state in checks.values()) else 1


async def _failures(settings: Settings, args: argparse.Namespace) -> int:
    from worker.store.failures import latest

    async with connection(settings.database_url) as conn:
        found = await latest(conn, args.limit)
    if args.json:
        print_json(found)
        return 0
    for failure in found:
        print(
            f"{failure.at:%Y-%m-%d %H:%M:%S} {failure.kind:8} {failure.job_id} "
            f"(try {failure.job_try}): {failure.reason}"
        )
    if not found:
        print("no failed jobs")
    return 0


async def _rotate_key(settings: Settings, _args: argparse.Namespace) -> int:
    from worker.crypto import cipher_for
    from worker.store import apps, rekey, webhooks

    cipher = cipher_for(settings)
    async with connection(settings.database_url) as conn:
        changed = await rekey.rekey_all(conn, cipher)
        secrets = await apps.rekey_all(conn, cipher)
        secrets += await webhooks.rekey_all(conn, cipher)
    print(
        f"re-encrypted {changed} rows and {secrets} app and webhook secrets"
        f" under key {cipher.active_key_id}"
    )
    return 0


async def _purge(settings: Settings, args: argparse.Namespace) -> int:
    from worker.jobs import queue as jobqueue
    from worker.pauses import read_paused
    from worker.retention import due_for_purge, purge_webhook_deliveries
    from worker.runtime import lanes

    paused = sorted(await read_paused(settings.redis_url))
    async with connection(settings.database_url) as conn:
        due = await due_for_purge(conn, settings, datetime.now(UTC), paused_apps=paused)
    for item in due:
        print(
            f"{item.connection_id} {item.status} since {item.since:%Y-%m-%d}:"
            f" {item.resources} resources, tokens and grant"
        )
    if args.dry_run:
        print(f"{len(due)} connections would be unlinked (dry run: nothing queued)")
        return 0
    queue = await jobqueue.open_queue(settings.redis_url)
    try:
        for item in due:
            job = UnlinkJob(connection_id=item.connection_id, purge=True)
            await jobqueue.enqueue(queue, job, lane=lanes.BULK)
    finally:
        await queue.aclose()
    async with connection(settings.database_url) as conn:
        purged = await purge_webhook_deliveries(conn, settings, datetime.now(UTC))
    print(f"queued {len(due)} unlinks; deleted {purged} delivered webhook deliveries")
    return 0


def add_commands(commands: Any) -> None:
    """Add the operator's commands to ``bbingest``'s subcommands."""
    commands.add_parser("migrate", help="create or upgrade the tables").set_defaults(run=_migrate)
    commands.add_parser(
        "health", help="exit 0 when Redis, Postgres and a live worker answer, else 1"
    ).set_defaults(run=_health)

    failed = commands.add_parser("failures", help="jobs that failed for good, newest first")
    failed.add_argument("--limit", type=positive, default=50)
    failed.add_argument("--json", action="store_true", help="machine-readable output")
    failed.set_defaults(run=_failures)

    commands.add_parser(
        "rotate-key",
        help="re-encrypt every token and app secret under the first TOKEN_ENCRYPTION_KEY",
    ).set_defaults(run=_rotate_key)
    purge = commands.add_parser(
        "purge",
        help="unlink what the retention rules say is due (DORMANT_/ERROR_RETENTION_DAYS) and"
        " delete delivered webhook deliveries (WEBHOOK_RETENTION_DAYS)",
    )
    purge.add_argument("--dry-run", action="store_true", help="show it, queue nothing")
    purge.set_defaults(run=_purge)
    move = commands.add_parser(
        "partition-resources",
        help="move a populated fhir_resources into hash partitions, online (after migrate)",
    )
    move.add_argument("--batch", type=positive, default=1000, help="rows copied a transaction")
    move.set_defaults(run=_partition_resources)
