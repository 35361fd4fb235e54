import httpx
import pytest
import respx

from tests.unit.fakes import RecordingBudget, RecordingSleep
from worker import errors, metrics
from worker.bluebutton.client import BlueButtonClient, build_http_client, warm_up
from worker.bluebutton.retry import RetryPolicy

BASE = "https://sandbox.bluebutton.cms.gov"
URL = f"{BASE}/v2/fhir/Patient/-1"


@pytest.fixture
async def setup() -> tuple[BlueButtonClient, RecordingBudget, RecordingSleep]:
    budget, sleep = RecordingBudget(), RecordingSleep()
    http = build_http_client(BASE, timeout=5, max_connections=4)
    client = BlueButtonClient(
        http, budget, policy=RetryPolicy(max_attempts=3), sleep=sleep, rand=lambda: 1.0
    )
    yield client, budget, sleep
    await http.aclose()


@respx.mock
async def test_every_attempt_takes_a_budget_slot(setup) -> None:  # type: ignore[no-untyped-def]
    client, budget, sleep = setup
    route = respx.get(URL).mock(
        side_effect=[httpx.Response(502), httpx.Response(503), httpx.Response(200, json={})]
    )
    response = await client.request("GET", URL)
    assert response.status_code == 200
    assert route.call_count == 3
    assert budget.acquired == 3
    assert sleep.delays == [0.5, 1.0]


@respx.mock
async def test_429_pauses_the_shared_budget_for_retry_after(setup) -> None:  # type: ignore[no-untyped-def]
    client, budget, sleep = setup
    respx.get(URL).mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(200)]
    )
    await client.request("GET", URL)
    assert budget.pauses == [7.0]
    assert budget.slowdowns == 1
    assert sleep.delays == []  # the budget does the waiting, for every replica


@respx.mock
async def test_a_bare_429_slows_the_app_down_and_pauses_nobody(setup) -> None:  # type: ignore[no-untyped-def]
    client, budget, sleep = setup
    respx.get(URL).mock(side_effect=[httpx.Response(429), httpx.Response(200)])
    await client.request("GET", URL)
    # CMS announces no per-app limit: a 429 is the sign to slow every replica down; with no
    # Retry-After the lower shared rate spaces the retry, so nobody is paused.
    assert budget.slowdowns == 1
    assert budget.pauses == []
    assert sleep.delays == []
    assert budget.acquired == 2


@respx.mock
async def test_gives_up_after_max_attempts_with_retryable_error(setup) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = setup
    respx.get(URL).mock(return_value=httpx.Response(503, headers={"Retry-After": "30"}))
    with pytest.raises(errors.ServerError) as caught:
        await client.request("GET", URL)
    assert caught.value.retry_after == 30.0
    assert caught.value.decision is errors.Decision.RETRY_LATER


@respx.mock
async def test_timeouts_and_resets_are_transport_errors(setup) -> None:  # type: ignore[no-untyped-def]
    client, _, sleep = setup
    respx.get(URL).mock(
        side_effect=[httpx.ReadTimeout("slow"), httpx.ConnectError("reset"), httpx.Response(200)]
    )
    assert (await client.request("GET", URL)).status_code == 200
    assert len(sleep.delays) == 2
    respx.get(URL).mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(errors.TransportError, match="timed out"):
        await client.request("GET", URL)


@respx.mock
@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_non_transient_answers_are_returned_once(setup, status: int) -> None:  # type: ignore[no-untyped-def]
    client, budget, _ = setup
    route = respx.get(URL).mock(return_value=httpx.Response(status))
    assert (await client.request("GET", URL)).status_code == status
    assert route.call_count == 1
    assert budget.acquired == 1


@respx.mock
async def test_each_request_shows_the_app_budget_rate(setup) -> None:  # type: ignore[no-untyped-def]
    client, budget, _ = setup
    budget.current_rate = 4.25
    respx.get(URL).mock(return_value=httpx.Response(200))
    await client.request("GET", URL)
    assert metrics.BUDGET_RATE.labels("default")._value.get() == 4.25


@respx.mock
async def test_an_oversized_answer_is_refused_while_reading(
    setup,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    from worker.bluebutton import client as client_module

    client, _, _ = setup
    monkeypatch.setattr(client_module, "MAX_RESPONSE_BYTES", 100)

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(1000):  # far more than the limit: reading must stop early
            yield b"x" * 50

    oversize = metrics.BB2_REQUESTS.labels("default", "Patient", "oversize")
    before = oversize._value.get()
    respx.get(URL).mock(return_value=httpx.Response(200, content=chunks()))
    with pytest.raises(errors.ProtocolError, match="too large"):
        await client.request("GET", URL)
    assert oversize._value.get() == before + 1  # counted, as every request is
    respx.get(URL).mock(return_value=httpx.Response(200, headers={"Content-Length": "5000"}))
    with pytest.raises(errors.ProtocolError, match="announced"):
        await client.request("GET", URL)
    respx.get(URL).mock(return_value=httpx.Response(200, content=b"y" * 100))
    assert (await client.request("GET", URL)).content == b"y" * 100


@respx.mock
async def test_warm_up_uses_the_public_metadata_and_a_slot_of_the_budget(setup) -> None:  # type: ignore[no-untyped-def]
    client, budget, _ = setup
    route = respx.get(f"{BASE}/v2/fhir/metadata").mock(return_value=httpx.Response(200))
    assert await warm_up(client.http, budget) is True
    assert route.calls.last.request.headers.get("Authorization") is None
    assert budget.acquired == 1  # the edge counts every request to the host
    route.mock(side_effect=httpx.ConnectError("down"))
    assert await warm_up(client.http, budget) is False
    assert budget.acquired == 2


@respx.mock
async def test_a_once_request_is_repeated_only_when_it_never_left(setup) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = setup
    # Refused before sending: safe to repeat even a request that spends a code.
    route = respx.post(URL).mock(
        side_effect=[httpx.ConnectError("refused"), httpx.Response(200, json={})]
    )
    assert (await client.request("POST", URL, once=True)).status_code == 200
    assert route.call_count == 2
    # A read timeout may come after BB2 took the code: the job decides, not a blind repeat.
    route.mock(side_effect=[httpx.ReadTimeout("slow"), httpx.Response(200, json={})])
    route.reset()
    with pytest.raises(errors.TransportError, match="timed out") as raised:
        await client.request("POST", URL, once=True)
    assert raised.value.maybe_delivered
    assert route.call_count == 1
