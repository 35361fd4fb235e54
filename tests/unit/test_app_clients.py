"""One BB2 client per app and lane: pools shared per base URL, budgets per client id."""

from collections.abc import AsyncIterator

import httpx
import pytest
import respx
from redis.asyncio import Redis

from tests.unit.fakes import RecordingBudget
from worker.apps import App
from worker.bluebutton import app_clients as clients_module
from worker.bluebutton.app_clients import AppClients

SANDBOX = "https://sandbox.bluebutton.cms.gov"
PRODUCTION = "https://api.bluebutton.cms.gov"


def app(name: str, base_url: str = SANDBOX, client_id: str | None = None) -> App:
    return App(name, "sandbox", base_url, client_id or f"{name}-id", "secret", 10)


class Budgets:
    """The budgets the clients were built with, by client id (recording, never waiting)."""

    def __init__(self) -> None:
        self.by_client: dict[str, RecordingBudget] = {}

    def __call__(self, _redis: Redis, client_id: str, _rate: int, **_: object) -> RecordingBudget:
        return self.by_client.setdefault(client_id, RecordingBudget())


@pytest.fixture
def budgets(monkeypatch: pytest.MonkeyPatch) -> Budgets:
    made = Budgets()
    monkeypatch.setattr(clients_module, "RequestBudget", made)
    return made


@pytest.fixture
async def clients(budgets: Budgets) -> AsyncIterator[AppClients]:
    # The budgets are recording doubles: these tests reach no Redis.
    redis = Redis.from_url("redis://127.0.0.1:1/0")
    clients = AppClients(redis, timeout=5, max_connections=4, burst=1, window=1.02)
    yield clients
    await clients.aclose()
    await redis.aclose()


@respx.mock
async def test_apps_on_one_host_share_its_pool_which_is_warmed_once(
    clients: AppClients, budgets: Budgets
) -> None:
    sandbox = respx.get(f"{SANDBOX}/v2/fhir/metadata").mock(return_value=httpx.Response(200))
    production = respx.get(f"{PRODUCTION}/v2/fhir/metadata").mock(return_value=httpx.Response(200))
    a = await clients.client(app("a"), "interactive")
    b = await clients.client(app("b"), "interactive")
    c = await clients.client(app("c", PRODUCTION), "interactive")
    assert a.http is b.http
    assert c.http is not a.http
    assert (sandbox.call_count, production.call_count) == (1, 1)
    assert (a.app, b.app, c.app) == ("a", "b", "c")
    # Each warm-up took a slot of the app whose client opened the pool, and only then.
    acquired = {client_id: budget.acquired for client_id, budget in budgets.by_client.items()}
    assert acquired == {"a-id": 1, "b-id": 0, "c-id": 1}


@respx.mock
async def test_each_app_and_lane_has_its_own_client_kept_for_reuse(clients: AppClients) -> None:
    respx.get(f"{SANDBOX}/v2/fhir/metadata").mock(return_value=httpx.Response(200))
    first = await clients.client(app("a"), "interactive")
    assert await clients.client(app("a"), "interactive") is first
    bulk = await clients.client(app("a"), "bulk")
    assert bulk is not first
    assert bulk.priority == "bulk"
    # A new client id (say, a re-registered app) is a new budget, not the old one's.
    assert await clients.client(app("a", client_id="other"), "interactive") is not first


@respx.mock
async def test_an_unreachable_host_still_gives_a_client(clients: AppClients) -> None:
    respx.get(f"{SANDBOX}/v2/fhir/metadata").mock(side_effect=httpx.ConnectError("refused"))
    client = await clients.client(app("a"), "interactive")
    assert client.base_url == SANDBOX  # the jobs find out, and retry
