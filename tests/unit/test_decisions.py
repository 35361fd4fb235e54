"""decide(): every class of the exception tree, and other exceptions, to one decision."""

from __future__ import annotations

import asyncpg
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from worker import errors
from worker.decisions import decide
from worker.errors import Decision
from worker.runtime.failures import on_failure

RETRY_SOON, RETRY_LATER = Decision.RETRY_SOON, Decision.RETRY_LATER

# The tree's docstring, as a table: a class added to the tree without a row here fails.
TABLE: dict[type[errors.IngestError], Decision] = {
    errors.IngestError: Decision.GIVE_UP,
    errors.ConfigError: Decision.GIVE_UP,
    errors.AppUnavailable: Decision.GIVE_UP,
    errors.InvalidJob: Decision.GIVE_UP,
    errors.GrantConflict: Decision.GIVE_UP,
    errors.UnknownConnection: Decision.GIVE_UP,
    errors.ConnectionRevoked: Decision.SUPERSEDED,
    errors.DecryptionError: Decision.GIVE_UP,
    errors.KeyMissing: RETRY_SOON,
    errors.ServiceUnavailable: RETRY_SOON,
    errors.DatabaseUnavailable: RETRY_SOON,
    errors.RedisUnavailable: RETRY_SOON,
    errors.BlueButtonError: Decision.GIVE_UP,
    errors.RetryableError: RETRY_LATER,
    errors.RateLimited: RETRY_LATER,
    errors.ServerError: RETRY_LATER,
    errors.EdgeError: RETRY_LATER,
    errors.EdgeRefused: RETRY_LATER,
    errors.TransportError: RETRY_LATER,
    errors.AppPaused: Decision.APP_PAUSED,
    errors.TokenExpired: Decision.REFRESH,
    errors.ReconsentRequired: Decision.RECONSENT,
    errors.RefreshInterrupted: Decision.RECONSENT,
    errors.PermanentError: Decision.GIVE_UP,
    errors.AuthorizationFailed: Decision.GIVE_UP,
    errors.CodeExpired: Decision.CODE_EXPIRED,
    errors.ClientRejected: Decision.GIVE_UP,
    errors.BadRequest: Decision.GIVE_UP,
    errors.CursorPastEnd: Decision.RESTART_TYPE,
    errors.Forbidden: Decision.GIVE_UP,
    errors.NotFound: Decision.GIVE_UP,
    errors.ProtocolError: Decision.GIVE_UP,
}


def _tree(root: type[errors.IngestError]) -> list[type[errors.IngestError]]:
    return [root, *(cls for sub in root.__subclasses__() for cls in _tree(sub))]


def test_every_class_of_the_tree_has_a_row() -> None:
    assert set(_tree(errors.IngestError)) == set(TABLE)


@pytest.mark.parametrize("cls", list(TABLE), ids=lambda cls: cls.__name__)
def test_each_class_decides_as_the_tree_says(cls: type[errors.IngestError]) -> None:
    error = Exception.__new__(cls)  # the decision belongs to the class, not the arguments
    assert decide(error) is TABLE[cls]


def test_every_decision_is_reached_by_some_class() -> None:
    assert set(TABLE.values()) == set(Decision)


@pytest.mark.parametrize(
    ("error", "decision"),
    [
        (RedisConnectionError("Connection refused"), RETRY_SOON),
        (asyncpg.exceptions.ConnectionDoesNotExistError("closed"), RETRY_SOON),
        (ConnectionRefusedError(111, "refused"), RETRY_SOON),
        (ValueError("a bug"), Decision.GIVE_UP),
        (KeyError("a bug"), Decision.GIVE_UP),
    ],
    ids=lambda value: type(value).__name__,
)
def test_exceptions_outside_the_tree(error: BaseException, decision: Decision) -> None:
    assert decide(error) is decision


def test_a_wrapped_outage_is_still_an_outage() -> None:
    wrapped = RuntimeError("while recording")
    wrapped.__cause__ = RedisConnectionError("reset")
    assert decide(wrapped) is RETRY_SOON


async def test_the_hook_runs_the_handler_of_the_decision() -> None:
    async def needs_reauth(error: errors.IngestError) -> str:
        return f"needs_reauth: {error}"

    error = errors.RefreshInterrupted("CMS failed mid-refresh", status=502)
    handlers = {Decision.RECONSENT: needs_reauth}
    assert await on_failure(error, handlers) == "needs_reauth: CMS failed mid-refresh"


async def test_the_hook_raises_what_the_job_has_no_handler_for() -> None:
    async def never(error: errors.IngestError) -> str:
        raise AssertionError(error)

    with pytest.raises(errors.DatabaseUnavailable):
        await on_failure(errors.DatabaseUnavailable("away"), {Decision.GIVE_UP: never})
