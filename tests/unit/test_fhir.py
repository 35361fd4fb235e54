from pathlib import Path

import httpx
import orjson
import pytest
import respx

from tests.unit.fakes import RecordingBudget
from worker import errors
from worker.bluebutton.client import BlueButtonClient, build_http_client
from worker.bluebutton.endpoints import remove_dot_segments
from worker.bluebutton.fhir import iter_pages, query_for

BASE = "https://sandbox.bluebutton.cms.gov"
PATIENT = "-19990000000001"
EOB = query_for("ExplanationOfBenefit")
FIRST = EOB.first_url(BASE, PATIENT)
SECOND = f"{BASE}/v2/fhir/ExplanationOfBenefit?startIndex=50&_count=50&patient={PATIENT}"
FHIR_JSON = {"Content-Type": "application/fhir+json"}


class Tokens:
    def __init__(self) -> None:
        self.token = "AT1"
        self.refreshes = 0

    async def current(self) -> str:
        return self.token

    async def refreshed(self, stale: str) -> str:
        self.refreshes += 1
        self.token = f"AT{self.refreshes + 1}"
        return self.token


def page(fixtures: Path, next_url: str | None) -> bytes:
    bundle = orjson.loads((fixtures / "eob_page_last.json").read_bytes())
    bundle["link"] = [{"relation": "next", "url": next_url}] if next_url else []
    return orjson.dumps(bundle)


@pytest.fixture
async def client() -> BlueButtonClient:
    http = build_http_client(BASE, timeout=5, max_connections=2)
    yield BlueButtonClient(http, RecordingBudget())
    await http.aclose()


async def collect(client: BlueButtonClient, tokens: Tokens, start: str | None = None) -> list[str]:
    return [p.url async for p in iter_pages(client, EOB, PATIENT, tokens, start_url=start)]


@respx.mock
async def test_follows_next_links_to_the_end(client: BlueButtonClient, fixtures: Path) -> None:
    respx.get(FIRST).mock(
        return_value=httpx.Response(200, content=page(fixtures, SECOND), headers=FHIR_JSON)
    )
    respx.get(SECOND).mock(
        return_value=httpx.Response(200, content=page(fixtures, None), headers=FHIR_JSON)
    )
    assert await collect(client, Tokens()) == [FIRST, SECOND]


@respx.mock
async def test_resumes_from_a_cursor(client: BlueButtonClient, fixtures: Path) -> None:
    first = respx.get(FIRST).mock(return_value=httpx.Response(500))
    respx.get(SECOND).mock(
        return_value=httpx.Response(200, content=page(fixtures, None), headers=FHIR_JSON)
    )
    assert await collect(client, Tokens(), SECOND) == [SECOND]
    assert not first.called


@respx.mock
async def test_a_401_refreshes_once_and_retries(client: BlueButtonClient, fixtures: Path) -> None:
    tokens = Tokens()
    route = respx.get(FIRST).mock(
        side_effect=[
            httpx.Response(401, json={"detail": "Authentication credentials were not provided."}),
            httpx.Response(200, content=page(fixtures, None), headers=FHIR_JSON),
        ]
    )
    assert await collect(client, tokens) == [FIRST]
    assert tokens.refreshes == 1
    assert route.calls.last.request.headers["Authorization"] == "Bearer AT2"


@respx.mock
async def test_a_401_that_survives_refresh_needs_reconsent(client: BlueButtonClient) -> None:
    respx.get(FIRST).mock(return_value=httpx.Response(401, json={"detail": "x"}))
    tokens = Tokens()
    with pytest.raises(errors.ReconsentRequired):
        await collect(client, tokens)
    assert tokens.refreshes == 1


@respx.mock
@pytest.mark.parametrize(
    "bad_next",
    [
        "https://evil.example.com/v2/fhir/ExplanationOfBenefit?x=1",
        FIRST.replace(BASE, "https://evil.example.com"),  # a "repeat", but of another host
        "http://sandbox.bluebutton.cms.gov/v2/fhir/ExplanationOfBenefit?x=1",
        f"{BASE}/v2/o/token/",
        f"{BASE}/v2/fhir/../o/token/",
        f"{BASE}/v2/fhir/ExplanationOfBenefit/%2E%2E/%2e%2e/o/token/",
        f"{BASE}/v2/fhir/./..",
    ],
)
async def test_next_link_leaving_base_is_refused(
    client: BlueButtonClient, fixtures: Path, bad_next: str
) -> None:
    respx.get(FIRST).mock(
        return_value=httpx.Response(200, content=page(fixtures, bad_next), headers=FHIR_JSON)
    )
    with pytest.raises(errors.ProtocolError, match="leaves"):
        await collect(client, Tokens())


@respx.mock
async def test_next_link_loop_is_refused(client: BlueButtonClient, fixtures: Path) -> None:
    respx.get(FIRST).mock(
        return_value=httpx.Response(200, content=page(fixtures, SECOND), headers=FHIR_JSON)
    )
    respx.get(SECOND).mock(
        return_value=httpx.Response(200, content=page(fixtures, FIRST), headers=FHIR_JSON)
    )
    with pytest.raises(errors.ProtocolError, match="repeats"):
        await collect(client, Tokens())


@respx.mock
async def test_html_error_page_is_a_protocol_error(client: BlueButtonClient) -> None:
    respx.get(FIRST).mock(
        return_value=httpx.Response(
            200, text="<html>maintenance</html>", headers={"Content-Type": "text/html"}
        )
    )
    with pytest.raises(errors.ProtocolError, match="content type"):
        await collect(client, Tokens())


@respx.mock
async def test_a_loop_respelling_its_next_link_is_refused(
    client: BlueButtonClient, fixtures: Path
) -> None:
    # The same page as SECOND, its parameters reordered and one percent-encoded.
    respelled = (
        f"{BASE}/v2/fhir/ExplanationOfBenefit/?patient=%2D{PATIENT[1:]}&_count=50&startIndex=50"
    )
    respx.get(FIRST).mock(
        return_value=httpx.Response(200, content=page(fixtures, SECOND), headers=FHIR_JSON)
    )
    respx.get(SECOND).mock(
        return_value=httpx.Response(200, content=page(fixtures, respelled), headers=FHIR_JSON)
    )
    with pytest.raises(errors.ProtocolError, match="repeats"):
        await collect(client, Tokens())


@respx.mock
async def test_next_links_without_end_stop_at_the_page_cap(
    client: BlueButtonClient, fixtures: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("worker.bluebutton.fhir.MAX_PAGES_PER_QUERY", 5)

    def endless(request: httpx.Request) -> httpx.Response:
        start = int(request.url.params.get("startIndex", "0")) + 50
        following = f"{BASE}/v2/fhir/ExplanationOfBenefit?startIndex={start}&patient={PATIENT}"
        return httpx.Response(200, content=page(fixtures, following), headers=FHIR_JSON)

    route = respx.get(url__startswith=f"{BASE}/v2/fhir/ExplanationOfBenefit").mock(
        side_effect=endless
    )
    with pytest.raises(errors.ProtocolError, match="go on past 5 pages"):
        await collect(client, Tokens())
    assert route.call_count == 5


@pytest.mark.parametrize(
    ("path", "resolved"),
    [
        ("/v2/fhir/../x", "/v2/x"),
        ("/v2/fhir/a/./b", "/v2/fhir/a/b"),
        ("/v2/fhir/a/..", "/v2/fhir/"),
        ("/../../v2/fhir/", "/v2/fhir/"),
        ("/v2/fhir/%2e%2E/o", "/v2/o"),
        ("/v2/fhir/ExplanationOfBenefit/", "/v2/fhir/ExplanationOfBenefit/"),
    ],
)
def test_dot_segments_resolve_as_a_server_would(path: str, resolved: str) -> None:
    assert remove_dot_segments(path) == resolved
