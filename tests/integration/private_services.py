"""Private Redis and Postgres servers on free ports, to kill and restart mid-run.

The machine's shared servers belong to everyone's tests and are never restarted; these are
the test's own. Redis keeps an append-only file (fsync always), as production must, so a
restart keeps the queue. Postgres refuses to run as root: as root the cluster belongs to
the ``postgres`` user and its commands run through ``runuser``.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

START_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _run(*command: str) -> None:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{command[0]} failed: {output.decode(errors='replace')[-2000:]}")


@dataclass
class PrivateRedis:
    """A redis-server of our own, with an append-only file in ``directory``."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        """Start (again, on the same port and files) and return once it answers."""
        self.process = await asyncio.create_subprocess_exec(
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.directory), "--appendonly", "yes", "--appendfsync", "always",
            "--save", "", "--logfile", "redis.log",  # in --dir, which redis-server enters
        )  # fmt: skip
        client: Redis = Redis.from_url(self.url)
        try:
            async with asyncio.timeout(START_TIMEOUT):
                while True:
                    try:
                        await client.ping()
                        return
                    except RedisConnectionError:  # also "loading the dataset"
                        if self.process.returncode is not None:
                            raise RuntimeError(
                                f"redis-server exited: see {self.directory}"
                            ) from None
                        await asyncio.sleep(0.02)
        finally:
            await client.aclose()

    async def kill(self) -> None:
        """SIGKILL: nothing flushed on the way out (fsync always has written every write)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def restart(self, pause: float) -> None:
        """Kill, stay away for ``pause`` seconds, start again."""
        await self.kill()
        await asyncio.sleep(pause)
        await self.start()


@asynccontextmanager
async def private_redis(directory: Path) -> AsyncIterator[PrivateRedis]:
    """A running private Redis, killed on exit."""
    server = PrivateRedis(directory)
    await server.start()
    try:
        yield server
    finally:
        if server.process is not None and server.process.returncode is None:
            await server.kill()


def _postgres_bin(name: str) -> str:
    found = shutil.which(name) or max(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), default="")
    if not found:
        raise RuntimeError(f"{name} not found: install postgresql (scripts/services.sh does)")
    return found


@dataclass
class PrivatePostgres:
    """A Postgres cluster of our own in ``directory`` (trust auth, user postgres)."""

    directory: Path
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_owner(self, name: str, *args: str) -> tuple[str, ...]:
        command = (_postgres_bin(name), *args)
        return ("runuser", "-u", "postgres", "--", *command) if os.geteuid() == 0 else command

    async def create(self) -> None:
        """initdb, without fsync: a test cluster needs no crash safety of the disk."""
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        data = str(self.directory / "data")
        await _run(*self._as_owner("initdb", "-D", data, "-U", "postgres", "-A", "trust", "-N"))

    async def start(self) -> None:
        """Start and return once it accepts connections."""
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} -c fsync=off"
        await _run(
            *self._as_owner(
                "pg_ctl", "-D", str(self.directory / "data"), "-o", options,
                "-l", str(self.directory / "postgres.log"), "-w", "start",
            )
        )  # fmt: skip

    async def stop(self, mode: str = "immediate") -> None:
        """Stop; ``immediate`` drops every connection without a goodbye, like a crash."""
        data = str(self.directory / "data")
        await _run(*self._as_owner("pg_ctl", "-D", data, "-m", mode, "stop"))

    async def restart(self, pause: float) -> None:
        """Stop immediately, stay away for ``pause`` seconds, start again."""
        await self.stop()
        await asyncio.sleep(pause)
        await self.start()


@asynccontextmanager
async def private_postgres() -> AsyncIterator[PrivatePostgres]:
    """A running private Postgres cluster, stopped and removed on exit.

    Its directory is not pytest's (readable by its owner only): the postgres user must own it.
    """
    directory = Path(tempfile.mkdtemp(prefix="bbingest-pg-"))
    server = PrivatePostgres(directory)
    try:
        await server.create()
        await server.start()
        try:
            yield server
        finally:
            await server.stop("fast")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
