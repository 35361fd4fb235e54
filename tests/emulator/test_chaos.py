"""Seeded chaos on the FHIR views: 5xx answers, slow answers and dropped connections."""

import argparse
import asyncio
import logging
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from tests.emulator.support import Harness, MakeHarness
from worker.emulator.chaos import FAULT_STATUSES
from worker.emulator.config import EmulatorConfig, add_arguments, config_from_args
from worker.emulator.server import running_emulator
from worker.emulator.state import EmulatorState

FAULT_BODY = {"detail": "An error occurred contacting the FHIR server"}
METADATA = "/v2/fhir/metadata"


async def coverage_statuses(harness: Harness, count: int) -> list[int]:
    """Statuses of `count` Coverage searches with a fresh token."""
    token = (await harness.tokens())["access_token"]
    return [(await harness.fhir("Coverage", token)).status_code for _ in range(count)]


async def outcome(http: httpx.AsyncClient) -> str:
    """The status of a metadata request through a real connection, or "dropped"."""
    try:
        response = await http.get(METADATA)
    except httpx.RemoteProtocolError:
        return "dropped"
    return str(response.status_code)


async def cut_short(http: httpx.AsyncClient, encoding: str) -> tuple[httpx.Response, int]:
    """A dropped metadata response, and how many body bytes came before the drop."""
    received = 0
    headers = {"Accept-Encoding": encoding}
    async with http.stream("GET", METADATA, headers=headers) as response:
        try:
            async for chunk in response.aiter_raw():
                received += len(chunk)
        except httpx.RemoteProtocolError:
            return response, received
    pytest.fail("the connection was not dropped")


class Messages(logging.Handler):
    """Collects the messages of one logger."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def uvicorn_errors() -> Iterator[Messages]:
    """What uvicorn logs about the app; attach once the server has configured logging."""
    messages = Messages()
    yield messages
    logging.getLogger("uvicorn.error").removeHandler(messages)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"fault_rate": -0.1}, "fault_rate must be between 0 and 1, got -0.1"),
        ({"drop_rate": 1.5}, "drop_rate must be between 0 and 1, got 1.5"),
        ({"slow_rate": math.nan, "slow_seconds": 1.0}, "slow_rate must be between 0 and 1"),
        ({"fault_rate": 0.6, "drop_rate": 0.5}, r"fault_rate \+ drop_rate must not exceed 1"),
        ({"slow_seconds": -1.0}, "slow_seconds must be a number of at least 0"),
        ({"slow_seconds": math.inf}, "slow_seconds must be a number of at least 0"),
        ({"slow_rate": 0.5}, "slow_seconds must be above 0 when slow_rate is set"),
    ],
)
def test_chaos_settings_are_validated(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        EmulatorConfig(**settings)
    assert "\n" not in str(error.value)


def test_chaos_flags_build_the_config() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    flags = ["--fault-rate", "0.1", "--drop-rate", "0.05", "--slow-rate", "0.2"]
    flags += ["--slow-seconds", "31", "--fault-seed", "9"]
    config = config_from_args(parser.parse_args(flags))
    defaults = config_from_args(parser.parse_args([]))
    chaos = (config.fault_rate, config.drop_rate, config.slow_rate, config.slow_seconds)
    assert chaos == (0.1, 0.05, 0.2, 31.0)
    assert config.fault_seed == 9
    assert defaults == EmulatorConfig()


async def test_rates_of_zero_leave_every_request_alone(make_harness: MakeHarness) -> None:
    config = EmulatorConfig(fault_rate=0, drop_rate=0, slow_rate=0, slow_seconds=30, fault_seed=5)
    harness = await make_harness(config)
    statuses = await coverage_statuses(harness, 30)
    assert statuses == [200] * 30
    assert harness.clock.slept == []


async def test_fault_rate_one_fails_every_fhir_request_and_nothing_else(
    make_harness: MakeHarness,
) -> None:
    harness = await make_harness(EmulatorConfig(fault_rate=1.0))
    tokens = await harness.tokens()  # the browser pages and the token endpoint are spared
    token = tokens["access_token"]
    answers = [await harness.fhir("ExplanationOfBenefit", token) for _ in range(12)]
    userinfo = await harness.http.get(
        "/v2/connect/userinfo", headers={"Authorization": f"Bearer {token}"}
    )
    refreshed = await harness.refresh(tokens["refresh_token"])
    stats = (await harness.http.get("/_emulator/stats")).json()
    statuses = [answer.status_code for answer in answers]
    assert set(statuses) <= set(FAULT_STATUSES)
    assert len(set(statuses)) > 1  # the status is drawn too
    assert all(answer.json() == FAULT_BODY for answer in answers)
    assert userinfo.status_code == refreshed.status_code == 200
    for status in FAULT_STATUSES:
        assert stats["by_status"].get(str(status), 0) == statuses.count(status)


async def test_seeded_faults_repeat_run_after_run(make_harness: MakeHarness) -> None:
    config = EmulatorConfig(fault_rate=0.25, fault_seed=42)
    first = await coverage_statuses(await make_harness(config), 40)
    second = await coverage_statuses(await make_harness(config), 40)
    other_seed = await coverage_statuses(await make_harness(replace(config, fault_seed=43)), 40)
    assert first == second
    assert other_seed != first
    # Pinned: a change in how fates are drawn would change every benchmark's faults.
    assert Counter(first) == {200: 28, 500: 3, 502: 2, 503: 6, 504: 1}


async def test_throttled_requests_are_429s_and_take_no_draw(make_harness: MakeHarness) -> None:
    config = EmulatorConfig(fault_rate=0.5, fault_seed=1)
    unlimited = await coverage_statuses(await make_harness(config), 6)
    harness = await make_harness(replace(config, rate_limit=2))
    token = (await harness.tokens())["access_token"]
    throttled, admitted = [], []
    for _ in range(3):
        harness.clock.advance(1)
        admitted += [(await harness.fhir("Coverage", token)).status_code for _ in range(2)]
        throttled.append((await harness.fhir("Coverage", token)).status_code)
    assert throttled == [429] * 3
    assert admitted == unlimited
    assert set(admitted) & set(FAULT_STATUSES)


async def test_admin_faults_go_first_and_keep_the_draws_in_step(
    make_harness: MakeHarness,
) -> None:
    config = EmulatorConfig(fault_rate=0.5, fault_seed=1)
    plain = await coverage_statuses(await make_harness(config), 6)
    harness = await make_harness(config)
    await harness.http.post("/_emulator/faults", json={"status": 503, "count": 2})
    with_admin = await coverage_statuses(harness, 6)
    assert with_admin == [503, 503, *plain[2:]]


async def test_slow_rate_one_delays_every_fhir_answer(make_harness: MakeHarness) -> None:
    harness = await make_harness(EmulatorConfig(slow_rate=1.0, slow_seconds=31.0))
    token = (await harness.tokens())["access_token"]
    await harness.http.post("/_emulator/stats/reset")
    start = harness.clock.now
    statuses = [(await harness.fhir("Coverage", token)).status_code for _ in range(3)]
    stats = harness.state.stats()
    assert statuses == [200] * 3
    assert harness.clock.slept == [31.0] * 3  # nothing before the searches was delayed
    assert stats["by_status"] == {"200": 3}
    # Requests are timed by their arrival: the third arrived after two delays.
    assert stats["last_request_at"] == start + 62.0


async def test_seeded_slow_answers(make_harness: MakeHarness) -> None:
    config = EmulatorConfig(slow_rate=0.3, slow_seconds=5.0, fault_seed=11)
    harness = await make_harness(config)
    statuses = await coverage_statuses(harness, 30)
    again = await make_harness(config)
    await coverage_statuses(again, 30)
    assert statuses == [200] * 30
    assert harness.clock.slept == again.clock.slept == [5.0] * 5


async def test_a_slow_answer_outlasts_the_client_timeout() -> None:
    release, delays = asyncio.Event(), []

    async def held(seconds: float) -> None:
        delays.append(seconds)
        await release.wait()

    state = EmulatorState(sleep=held)
    config = EmulatorConfig(slow_rate=1.0, slow_seconds=30.0)
    async with running_emulator(config, state=state) as emulator:
        async with httpx.AsyncClient(base_url=emulator.base_url, timeout=0.05) as http:
            with pytest.raises(httpx.ReadTimeout):
                await http.get(METADATA)
        release.set()
    assert delays == [30.0]
    assert state.stats()["by_status"] == {"200": 1}


async def test_a_dropped_connection_is_a_transport_error(uvicorn_errors: Messages) -> None:
    async with running_emulator(EmulatorConfig(drop_rate=1.0)) as emulator:
        logging.getLogger("uvicorn.error").addHandler(uvicorn_errors)
        async with httpx.AsyncClient(base_url=emulator.base_url) as http:
            with pytest.raises(httpx.RemoteProtocolError, match="without sending complete message"):
                await http.get(METADATA)
            gzipped, gzipped_bytes = await cut_short(http, "gzip")
            plain, plain_bytes = await cut_short(http, "identity")
    stats = emulator.state.stats()
    assert gzipped.headers["Content-Encoding"] == "gzip"
    assert "Content-Encoding" not in plain.headers
    # The headers announce the whole body; half of it comes before the hang-up.
    assert gzipped_bytes == int(gzipped.headers["Content-Length"]) // 2
    assert plain_bytes == int(plain.headers["Content-Length"]) // 2 > 1000
    assert stats["by_status"] == {"dropped": 3}
    assert stats["by_endpoint"] == {"metadata": 3}
    assert uvicorn_errors.messages == []


async def test_seeded_faults_and_drops_share_out_the_requests() -> None:
    config = EmulatorConfig(fault_rate=0.25, drop_rate=0.25, fault_seed=3)
    async with (
        running_emulator(config) as emulator,
        httpx.AsyncClient(base_url=emulator.base_url) as http,
    ):
        outcomes = [await outcome(http) for _ in range(24)]
    seen = Counter(outcomes)
    assert dict(seen) == emulator.state.stats()["by_status"]
    # Pinned by the seed: each request is either faulted, dropped or answered.
    assert seen == {"200": 11, "dropped": 5, "500": 1, "502": 2, "503": 2, "504": 3}
