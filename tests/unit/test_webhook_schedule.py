"""The retry schedule of webhook deliveries, as a pure function (no sleeping)."""

import random
from datetime import UTC, datetime, timedelta

import pytest

from worker.settings import load_settings
from worker.webhooks.schedule import Schedule
from worker.webhooks.urls import check_webhook_url

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DEFAULT = Schedule.from_settings(load_settings({}))


def test_by_default_retries_go_on_for_at_least_three_days() -> None:
    assert DEFAULT.give_up >= timedelta(days=3)


def test_the_ceiling_doubles_then_stops_at_the_cap() -> None:
    schedule = Schedule(base=5, cap=3600, give_up=timedelta(days=3))
    assert [schedule.ceiling(n) for n in range(5)] == [5, 10, 20, 40, 80]
    assert schedule.ceiling(20) == 3600
    assert schedule.ceiling(10_000) == 3600


def test_full_jitter_draws_below_the_ceiling() -> None:
    rng = random.Random(7)
    delays = [DEFAULT.delay(4, rng) for _ in range(1000)]
    assert all(0 <= d < DEFAULT.ceiling(4) for d in delays)
    # Spread over the whole range, not bunched at the ceiling.
    assert min(delays) < DEFAULT.ceiling(4) / 10 < DEFAULT.ceiling(4) * 0.9 < max(delays)


def test_a_row_is_dead_lettered_once_the_give_up_time_has_passed() -> None:
    rng = random.Random(1)
    assert DEFAULT.next_attempt(3, T0, T0 + timedelta(hours=71), rng) is not None
    assert DEFAULT.next_attempt(3, T0, T0 + timedelta(hours=72), rng) is None


def test_the_whole_schedule_retries_for_three_days_then_gives_up() -> None:
    rng = random.Random(3)
    now, attempts = T0, 0
    while (retry := DEFAULT.next_attempt(attempts + 1, T0, now, rng)) is not None:
        assert retry >= now
        now, attempts = retry, attempts + 1
    assert now - T0 >= timedelta(days=3)
    # The cap keeps attempts coming: at least one an hour on average once it is reached.
    assert attempts >= 72 * 3600 / DEFAULT.cap


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/bb",
        "http://127.0.0.1:9000/x",
        "http://localhost/x",
        "http://[::1]:8/",
    ],
)
def test_https_or_loopback_urls_are_accepted(url: str) -> None:
    assert check_webhook_url(url) == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://hooks.example.com/bb", "https only"),
        ("ftp://example.com/", "not an http"),
        ("https://user:pw@example.com/", "user or password"),
        ("example.com/hook", "not an http"),
    ],
)
def test_other_urls_are_refused_with_a_reason(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        check_webhook_url(url)
