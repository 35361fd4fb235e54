"""Which failures are outages of our own Postgres or Redis, and how long they are waited out."""

from __future__ import annotations

import asyncpg
import pytest
from redis.exceptions import BusyLoadingError, WatchError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from worker import errors
from worker.constants import JOB_MAX_TRIES, OUTAGE_RETRY_CAP_SECONDS, REDIS_OUTAGE_POLL_SECONDS
from worker.outages import RedisOutage, is_redis_outage, unavailable
from worker.runtime.job_retry import Attempt, outage_retry_delay


def _raised_inside(error: Exception, outer: Exception) -> Exception:
    """``outer`` raised while handling ``error``, as drivers do."""
    try:
        try:
            raise error
        except Exception:
            raise outer  # noqa: B904 - the implicit context is the point
    except Exception as caught:
        return caught


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        ConnectionRefusedError(111, "Connect call failed"),
        ConnectionResetError(104, "reset"),
        TimeoutError(),
        _raised_inside(
            asyncpg.ConnectionDoesNotExistError("closed"),
            asyncpg.InterfaceError("connection is closed"),
        ),
    ],
)
def test_postgres_going_away_is_a_database_outage(error: Exception) -> None:
    found = unavailable(error)
    assert isinstance(found, errors.DatabaseUnavailable)
    assert found.decision is errors.Decision.RETRY_SOON
    assert str(found).startswith("Postgres unavailable (")
    assert not is_redis_outage(error)


@pytest.mark.parametrize(
    "error",
    [
        RedisConnectionError("Connection closed by server."),
        RedisTimeoutError("Timeout reading from socket"),
        BusyLoadingError("Redis is loading the dataset in memory"),
        _raised_inside(RedisConnectionError("gone"), WatchError("while watching")),
    ],
)
def test_redis_going_away_is_a_redis_outage(error: Exception) -> None:
    assert isinstance(unavailable(error), errors.RedisUnavailable)
    assert is_redis_outage(error)


@pytest.mark.parametrize(
    "error",
    [
        ValueError("a bug"),
        asyncpg.UniqueViolationError("duplicate key"),
        WatchError("someone else changed the key"),
        # BB2 unreachable is decided by the client, however its socket failed.
        _raised_inside(ConnectionRefusedError(111, "refused"), errors.TransportError("BB2")),
    ],
)
def test_other_failures_are_not_outages(error: Exception) -> None:
    assert unavailable(error) is None
    assert not is_redis_outage(error)


def test_outage_retries_come_soon_then_level_off() -> None:
    delays = [outage_retry_delay(job_try) for job_try in range(1, 10)]
    assert delays[:4] == [2.0, 4.0, 8.0, 16.0]
    assert delays == sorted(delays)
    assert delays[-1] == OUTAGE_RETRY_CAP_SECONDS


def test_a_redis_outage_is_waited_out_within_the_patience() -> None:
    outage = RedisOutage(patience=60)
    pauses = [outage.failed(now) for now in (100.0, 100.5, 101.0, 102.0, 104.0, 108.0)]
    assert pauses[0] < pauses[1] < pauses[2]
    assert max(pauses) == REDIS_OUTAGE_POLL_SECONDS
    assert outage.recovered(110.0) == pytest.approx(10.0)
    assert outage.recovered(111.0) is None  # no outage any more
    # A new outage starts the count again.
    assert outage.failed(200.0) == pauses[0]


def test_a_redis_outage_longer_than_the_patience_gives_up() -> None:
    outage = RedisOutage(patience=30)
    outage.failed(0.0)
    outage.failed(29.0)
    with pytest.raises(errors.RedisUnavailable, match="unavailable for 31 s"):
        outage.failed(31.0)


def test_a_job_that_met_an_outage_retries_until_its_last_try() -> None:
    outage = asyncpg.CannotConnectNowError("the database system is starting up")
    retry = Attempt(2).retry_for_outage(outage)
    assert retry is not None
    assert retry.defer_score == 4000  # ms: the second outage delay
    # On the last try it is a crash like any other, recorded for `bbingest failures`.
    assert Attempt(JOB_MAX_TRIES).retry_for_outage(outage) is None
    assert Attempt(1).retry_for_outage(ValueError("a bug")) is None


def test_a_job_bb2_failed_retries_no_sooner_than_asked_until_its_last_try() -> None:
    failed = errors.RateLimited("BB2 answered 429", status=429, retry_after=40)
    retry = Attempt(1).retry_later(failed)
    assert retry is not None
    assert retry.defer_score == 40_000  # ms: BB2's 40 s, above the first 15 s
    assert Attempt(2).retry_later(errors.ServerError("502")).defer_score == 30_000  # type: ignore[union-attr]
    assert Attempt(JOB_MAX_TRIES).retry_later(failed) is None
