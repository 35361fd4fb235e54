import logging
import sys

import structlog
from structlog.testing import capture_logs

from worker.log import REDACTED, OneLine, redact_sensitive


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
