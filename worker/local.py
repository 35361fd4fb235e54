"""Driving the service against the local emulator: synthetic beneficiaries authorize through
the real redirect, and worker replicas run as separate processes. Shared by the demo, the
benchmarks and the multi-process tests."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs, urlsplit

import httpx
from redis.asyncio import Redis

from worker.apps import DEFAULT_APP
from worker.bluebutton import oauth
from worker.emulator.useragent import authorize
from worker.jobs.payloads import ConnectJob, JobPayload
from worker.jobs.queue import enqueue, open_queue
from worker.settings import Settings

REDIRECT_URI = "http://localhost:3000/api/auth/smart/callback"
CLIENT_ID, CLIENT_SECRET = "emulator-client", "emulator-secret"


async def authorize_beneficiary(
    http: httpx.AsyncClient,
    base_url: str,
    username: str,
    password: str,
    connection_id: str,
    *,
    share_personal_info: bool = True,
    redirect_uri: str = REDIRECT_URI,
    client_id: str = CLIENT_ID,
    app: str = DEFAULT_APP,
) -> ConnectJob:
    """One beneficiary logs in and consents to ``client_id``; the connect job for ``app``
    that the app would push.

    ``redirect_uri`` is what the job carries: a value other than the one sent to authorize
    is how tests make the code exchange fail.
    """
    pkce, state = oauth.make_pkce(), oauth.make_state()
    url = oauth.authorize_url(
        base_url,
        client_id=client_id,
        redirect_uri=REDIRECT_URI,
        state=state,
        challenge=pkce.challenge,
    )
    location = await authorize(
        http, url, username, password, share_personal_info=share_personal_info
    )
    query = parse_qs(urlsplit(location).query)
    if not secrets.compare_digest(query.get("state", [""])[0], state):
        raise RuntimeError("the authorization redirect carried a different state")
    return ConnectJob(
        connection_id=connection_id,
        code=query["code"][0],
        code_verifier=pkce.verifier,
        redirect_uri=redirect_uri,
        app=app,
    )


async def authorize_beneficiaries(
    base_url: str,
    count: int,
    prefix: str,
    *,
    offset: int = 0,
    client_id: str = CLIENT_ID,
    app: str = DEFAULT_APP,
) -> list[ConnectJob]:
    """``count`` synthetic beneficiaries (from ``offset``) log in and consent to
    ``client_id``; their connect jobs for ``app``."""
    async with httpx.AsyncClient(base_url=base_url) as http:
        params = {"limit": count, "offset": offset}
        response = await http.get("/_emulator/beneficiaries", params=params)
        response.raise_for_status()
        return [
            await authorize_beneficiary(
                http,
                base_url,
                user["username"],
                user["password"],
                prefix + user["username"],
                client_id=client_id,
                app=app,
            )
            for user in response.json()
        ]


async def enqueue_all(redis_url: str, jobs: Sequence[JobPayload]) -> None:
    """Queue every job, each in its lane."""
    queue = await open_queue(redis_url)
    try:
        for job in jobs:
            await enqueue(queue, job)
    finally:
        await queue.aclose()


def worker_environment(settings: Settings, base_url: str, **extra: str) -> dict[str, str]:
    """The environment of a worker process pointed at the emulator."""
    return {
        **os.environ,
        "BB_BASE_URL": base_url,
        "BB_CLIENT_ID": CLIENT_ID,
        "BB_CLIENT_SECRET": CLIENT_SECRET,
        "BB_RATE_LIMIT": str(settings.bb_rate_limit),
        "BB_RATE_BURST": str(settings.bb_rate_burst),
        "BB_RATE_MARGIN": str(settings.bb_rate_margin),
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "TOKEN_ENCRYPTION_KEY": settings.token_encryption_key.get_secret_value(),
        "LOG_FORMAT": "json",
        **extra,
    }


def _open_log(directory: Path, index: int) -> BinaryIO:
    directory.mkdir(parents=True, exist_ok=True)
    return (directory / f"worker-{index + 1}.log").open("wb")


async def start_workers(
    env: dict[str, str], replicas: int, log_dir: Path, *, metrics_port: int = 0, burst: bool = True
) -> list[asyncio.subprocess.Process]:
    """Start ``replicas`` worker processes (by default in burst mode, ending when the queues
    are empty); each logs to its own file and, with a ``metrics_port``, serves /metrics on
    that port plus its index."""
    mode = ["--burst"] if burst else []
    processes = []
    for index in range(replicas):
        port = str(metrics_port + index if metrics_port else 0)
        with _open_log(log_dir, index) as log:
            processes.append(
                await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "worker.cli", "worker", *mode,
                    env={**env, "METRICS_PORT": port}, stdout=log, stderr=log,
                )
            )  # fmt: skip
    return processes


async def stop_workers(workers: Sequence[asyncio.subprocess.Process]) -> None:
    """SIGTERM every worker process still running and wait for each to exit."""
    for worker in workers:
        if worker.returncode is None:
            worker.terminate()
    for worker in workers:
        await worker.wait()


async def emulator_stats(base_url: str, *, reset: bool = False) -> dict[str, Any]:
    """The emulator's request counts; ``reset`` clears them instead."""
    async with httpx.AsyncClient(base_url=base_url) as http:
        if reset:
            (await http.post("/_emulator/stats/reset")).raise_for_status()
            return {}
        response = await http.get("/_emulator/stats")
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats


async def wait_for_replicas(redis_url: str, count: int) -> None:
    """Until ``count`` worker replicas have announced themselves (their lanes are polling);
    TimeoutError after a minute."""
    from worker.ops import REPLICA_KEY

    pattern = REPLICA_KEY.format(replica="*")
    redis: Redis = Redis.from_url(redis_url)
    try:
        async with asyncio.timeout(60):
            while len([key async for key in redis.scan_iter(match=pattern)]) < count:  # noqa: ASYNC110 - polling another process
                await asyncio.sleep(0.1)
    finally:
        await redis.aclose()
