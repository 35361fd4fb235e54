"""One :class:`BlueButtonClient` per app and budget priority, built on first use and kept.

Apps that share a base URL share its connection pool; each client id has its own budget
(BB2 counts requests per app), so one app's traffic or 429 cool-down never slows another.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Literal, Protocol

import httpx
from redis.asyncio import Redis

from worker.bluebutton.budget import BULK, INTERACTIVE, URGENT, RequestBudget
from worker.bluebutton.client import BlueButtonClient, Budget, build_http_client, warm_up

# The budget priority of a request, named after the lane whose jobs send it (a lane is a
# queue and one of these: worker.runtime.lanes).
Priority = Literal["exchange", "interactive", "bulk"]
# Code exchanges go before everything (a code lives 60 s), bulk after everything.
PRIORITIES: dict[Priority, int] = {"exchange": URGENT, "interactive": INTERACTIVE, "bulk": BULK}


class App(Protocol):
    """What a client is built from: an app of the registry (``worker.apps.App``) as this
    package sees it, by name, base URL, client id and rate."""

    @property
    def name(self) -> str: ...

    @property
    def base_url(self) -> str: ...

    @property
    def client_id(self) -> str: ...

    @property
    def rate_limit(self) -> int: ...


class BlueButtonClients(Protocol):
    """Where jobs get the BB2 client of an app (see :class:`AppClients`)."""

    async def client(self, app: App, priority: Priority) -> BlueButtonClient: ...

    async def aclose(self) -> None: ...


class AppClients:
    """The BB2 clients of a replica, per app and priority."""

    def __init__(
        self,
        redis: Redis,
        *,
        timeout: float,
        max_connections: int,
        burst: int,
        window: float,
    ) -> None:
        self._redis = redis
        self._timeout = timeout
        self._max_connections = max_connections
        self._burst = burst
        self._window = window
        self._http: dict[str, httpx.AsyncClient] = {}
        self._opening: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._clients: dict[tuple[str, str, str, int, Priority], BlueButtonClient] = {}

    async def client(self, app: App, priority: Priority) -> BlueButtonClient:
        """The client that sends ``app``'s requests at ``priority`` through its budget."""
        key = (app.name, app.base_url, app.client_id, app.rate_limit, priority)
        found = self._clients.get(key)
        if found is None:
            # Each priority yields to the higher ones waiting for the same budget.
            budget = RequestBudget(
                self._redis,
                app.client_id,
                app.rate_limit,
                burst=min(self._burst, app.rate_limit),
                priority=PRIORITIES[priority],
                window=self._window,
            )
            found = BlueButtonClient(
                await self.http(app.base_url, budget),
                budget,
                priority=priority,
                app=app.name,
            )
            self._clients[key] = found
        return found

    async def http(self, base_url: str, budget: Budget) -> httpx.AsyncClient:
        """The connection pool to ``base_url``, opened on first use and warmed up with a
        slot of ``budget``, the budget of the app whose client opens it."""
        async with self._opening[base_url]:
            if base_url not in self._http:
                http = build_http_client(
                    base_url, timeout=self._timeout, max_connections=self._max_connections
                )
                await warm_up(http, budget)
                self._http[base_url] = http
        return self._http[base_url]

    async def aclose(self) -> None:
        """Close every connection pool."""
        for http in self._http.values():
            await http.aclose()
        self._http.clear()
        self._clients.clear()
