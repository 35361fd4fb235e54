import json
import logging
import sys
from collections.abc import Iterator

import pytest
import structlog
from structlog.testing import capture_logs

from worker.log import REDACTED, OneLine, configure_logging, redact_sensitive


def test_sensitive_keys_are_redacted_at_any_depth() -> None:
    event = {
        "event": "x",
        "access_token": "AT",
        "Code": "C",
        "nested": {"refresh_token": "RT", "count": 3},
        "items": [{"access_token": "AT2"}, ({"verifier": "V"}, 4)],
        "stale_token": "AT0",
        "connection_id": "c1",
    }
    out = redact_sensitive(None, "info", event)
    assert out["access_token"] == REDACTED
    assert out["Code"] == REDACTED
    assert out["nested"] == {"refresh_token": REDACTED, "count": 3}
    assert out["items"] == [{"access_token": REDACTED}, ({"verifier": REDACTED}, 4)]
    assert out["stale_token"] == REDACTED
    assert out["connection_id"] == "c1"


def test_processor_in_a_chain() -> None:
    with capture_logs(processors=[redact_sensitive]) as logs:
        structlog.get_logger().info("token_saved", client_secret="s", pages=2)
    assert logs == [
        {"event": "token_saved", "client_secret": REDACTED, "pages": 2, "log_level": "info"}
    ]


def test_a_library_traceback_becomes_one_line() -> None:
    try:
        raise ConnectionRefusedError(111, "Connect call failed")
    except ConnectionRefusedError:
        record = logging.LogRecord(
            "asyncpg.pool", logging.WARNING, "", 0, "Failed %s", ("again",), sys.exc_info()
        )
    assert OneLine().filter(record)
    assert record.exc_info is None
    assert logging.Formatter().format(record) == "Failed again: ConnectionRefusedError"


TOKEN = "tok-3f9a8b7c6d5e4f3a2b1c"
PATIENT = "-19990000000001"
MBI = "1EG4TE5MK73"


@pytest.fixture
def configured() -> Iterator[None]:
    """configure_logging as a command runs it, undone afterwards."""
    configure_logging(fmt="json")
    yield
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if type(h).__name__ == "_StructlogHandler"]:
        root.removeHandler(handler)


def _raise_holding_secrets() -> None:
    resource = {"name": [{"family": "Doe", "given": ["Jane"]}], "birthDate": "1950-02-03"}
    raise ValueError(
        f"refresh failed: refresh_token={TOKEN} for Patient/{PATIENT} ({MBI}) in {resource}"
    )


def _assert_clean(line: str) -> None:
    for secret in (TOKEN, PATIENT, MBI, "Doe", "Jane", "1950-02-03"):
        assert secret not in line


def test_an_exception_logged_by_structlog_shows_no_token_or_name(
    configured: None, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        _raise_holding_secrets()
    except ValueError:
        structlog.get_logger("t").exception("sync_crashed", connection_id="conn-7")
    (line,) = capsys.readouterr().err.splitlines()
    entry = json.loads(line)
    _assert_clean(line)
    assert entry["connection_id"] == "conn-7"
    assert "ValueError: refresh failed: refresh_token=[redacted]" in entry["exception"]


def test_stdlib_loggers_are_redacted_too(
    configured: None, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        _raise_holding_secrets()
    except ValueError:
        logging.getLogger("arq.worker").exception("job failed: %s", f"patient={PATIENT}")
    (line,) = capsys.readouterr().err.splitlines()
    entry = json.loads(line)
    _assert_clean(line)
    assert entry["logger"] == "arq.worker"
    assert entry["event"] == "job failed: patient=[redacted]"
    assert "ValueError" in entry["exception"]


def test_personal_keys_and_values_are_redacted_but_ids_of_ours_stay() -> None:
    with capture_logs(processors=[redact_sensitive]) as logs:
        structlog.get_logger().info(
            "fetched",
            patient_id=PATIENT,
            url=f"https://x/v2/fhir/Coverage/?patient={PATIENT}&_count=10",
            note=f"Bearer {TOKEN}",
            connection_id="-19990000000009",
            status_code=500,
            detail="status code: 500",
        )
    (entry,) = logs
    assert entry["patient_id"] == REDACTED
    assert entry["url"] == "https://x/v2/fhir/Coverage/?patient=[redacted]&_count=10"
    assert entry["note"] == "Bearer [redacted]"
    assert entry["connection_id"] == "-19990000000009"  # the upstream's key stays
    assert entry["status_code"] == 500
    assert entry["detail"] == "status code: 500"
