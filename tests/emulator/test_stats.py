"""The busiest sliding second, and the span of the requests counted."""

import asyncio

import pytest

from tests.emulator.support import CLIENT, Harness, MakeHarness
from worker.emulator.config import EmulatorConfig
from worker.emulator.stats import RequestStats, SlidingWindow, WindowPeak

T0 = 1_800_000_000.0


@pytest.mark.parametrize(
    ("offsets", "peak"),
    [
        ([], 0),
        ([0.0, 0.5, 0.99, 1.2], 3),
        # Half-open windows (t - 1, t]: 0.0 has left the window that ends at 1.0.
        ([0.0, 1.0], 1),
        ([0.0, 0.999, 1.998, 2.997], 2),
        ([0.0, 0.0, 0.0, 0.0, 3.0, 3.5], 4),
        ([0.0, 5.0, 5.1, 5.2, 5.3, 9.0], 4),
    ],
)
def test_window_peak_is_the_most_arrivals_in_any_second(offsets: list[float], peak: int) -> None:
    window = WindowPeak()
    for offset in offsets:
        window.add(T0 + offset)
    assert window.peak == peak


def test_the_limiter_counts_the_same_half_open_window() -> None:
    limiter = SlidingWindow(limit=1, burst=0)
    assert limiter.admit("app", T0) is None
    assert limiter.admit("app", T0 + 0.99) == 1
    assert limiter.admit("app", T0 + 1.0) is None


async def test_max_in_window_counts_admitted_app_requests_per_client(
    make_harness: MakeHarness,
) -> None:
    harness = await make_harness(EmulatorConfig(rate_limit=3))
    token = (await harness.tokens())["access_token"]
    after_authorizing = harness.state.stats()
    harness.clock.advance(1)
    statuses = [(await harness.fhir("Coverage", token)).status_code for _ in range(4)]
    harness.clock.advance(0.4)
    for _ in range(2):
        await harness.http.post("/v2/o/token/", data={"grant_type": "x"}, auth=("bad", "client"))
    harness.clock.advance(0.7)
    await harness.fhir("Coverage", token)
    stats = (await harness.http.get("/_emulator/stats")).json()
    # The browser pages of the authorization came at the same instant as the token call.
    assert after_authorizing["total"] > 1
    assert after_authorizing["max_in_window"] == 1
    assert statuses == [200, 200, 200, 429]
    assert stats["max_in_window_by_client"] == {CLIENT[0]: 3, "bad": 2}
    assert stats["max_in_window"] == 5


async def test_max_in_window_without_a_rate_limit(harness: Harness) -> None:
    token = (await harness.tokens())["access_token"]
    harness.clock.advance(1)
    for _ in range(7):
        await harness.fhir("Coverage", token)
        harness.clock.advance(0.1)
    stats = harness.state.stats()
    assert stats["max_in_window_by_client"] == {CLIENT[0]: 7}
    assert stats["max_in_window"] == 7


async def test_first_and_last_request_times_and_their_reset(harness: Harness) -> None:
    empty = harness.state.stats()
    start = harness.clock.now
    await harness.http.get("/v2/fhir/metadata")
    harness.clock.advance(2.5)
    await harness.http.get("/v2/fhir/metadata")
    await harness.http.get("/v2/fhir/metadata")
    busy = (await harness.http.get("/_emulator/stats")).json()
    reset = (await harness.http.post("/_emulator/stats/reset")).json()
    await harness.http.get("/v2/fhir/metadata")
    after = harness.state.stats()
    for stats in (empty, reset):
        assert stats["first_request_at"] is stats["last_request_at"] is None
        assert stats["max_in_window"] == 0
        assert stats["max_in_window_by_client"] == {}
    assert (busy["first_request_at"], busy["last_request_at"]) == (start, start + 2.5)
    assert busy["max_in_window"] == 2
    assert busy["max_in_window_by_client"] == {"unknown": 2}  # metadata needs no token
    # The reset forgets this second's earlier arrivals too.
    assert after["max_in_window"] == 1
    assert after["first_request_at"] == after["last_request_at"] == start + 2.5


async def test_the_span_follows_arrivals_when_a_slow_answer_ends_last(
    make_harness: MakeHarness,
) -> None:
    harness = await make_harness(EmulatorConfig(slow_rate=1.0, slow_seconds=30.0))
    holding, release = asyncio.Event(), asyncio.Event()

    async def hold_the_first(seconds: float) -> None:
        if not holding.is_set():
            holding.set()
            await release.wait()

    harness.state.sleep = hold_the_first
    token = (await harness.tokens())["access_token"]
    await harness.http.post("/_emulator/stats/reset")
    start = harness.clock.now
    slow = asyncio.create_task(harness.fhir("Coverage", token))
    await holding.wait()
    harness.clock.advance(1)
    fast = await harness.fhir("Coverage", token)
    release.set()
    late = await slow
    stats = harness.state.stats()
    assert fast.status_code == late.status_code == 200
    assert (stats["first_request_at"], stats["last_request_at"]) == (start, start + 1)


def test_requests_inside_a_cool_down_are_counted_after_the_grace() -> None:
    stats = RequestStats()
    stats.record_throttled("app", at=10.0, retry_after=2)
    for at in (10.01, 10.5, 11.9, 12.0, 12.5):  # in flight, inside, inside, after, after
        stats.record_arrival("app", at)
    stats.record_arrival("other-app", 10.5)  # another client is not cooling down
    assert stats.snapshot()["during_cooldown"] == 2


def test_a_429_inside_a_cool_down_lengthens_it() -> None:
    stats = RequestStats()
    stats.record_throttled("app", at=10.0, retry_after=1)
    stats.record_throttled("app", at=10.02, retry_after=3)
    stats.record_arrival("app", 12.5)
    assert stats.snapshot()["during_cooldown"] == 1


def test_an_arrival_recorded_out_of_order_counts_in_the_right_windows() -> None:
    peak = WindowPeak()
    for at in (0.0, 0.9, 1.5, 0.95):  # 0.95 was timestamped on arrival but recorded late
        peak.add(at)
    # (0.5, 1.5] holds 0.9, 0.95 and 1.5; no window holds more. 0.0 is gone from the deque.
    assert peak.peak == 3
