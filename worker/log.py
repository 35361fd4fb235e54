"""structlog set-up: JSON lines in production, and a processor that keeps secrets out.

The first defence is never to pass a token, code, secret or personal field to a logger;
:func:`redact_sensitive` is the second, for the day someone forgets.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Final

import structlog

REDACTED: Final = "[redacted]"
SENSITIVE_KEYS: Final = frozenset(
    {
        "access_token",
        "refresh_token",
        "token",
        "code",
        "code_verifier",
        "verifier",
        "client_secret",
        "secret",
        "password",
        "authorization",
        "state",
        "name",
        "given_name",
        "family_name",
        "email",
        "birth_date",
        "birthdate",
        "address",
    }
)
# Any key named like these is sensitive too: ``stale_token``, ``app_secret`` ...
SENSITIVE_SUFFIXES: Final = ("_token", "_secret", "_verifier", "_password")


def _sensitive(key: str) -> bool:
    key = key.lower()
    return key in SENSITIVE_KEYS or key.endswith(SENSITIVE_SUFFIXES)


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: REDACTED if _sensitive(str(k)) else _redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_redact(item) for item in value)
    return value


def redact_sensitive(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Replace the value of every sensitive key with a marker, at any depth of dicts,
    lists and tuples (copies: the caller's objects are left as they were)."""
    for key, value in event_dict.items():
        event_dict[key] = REDACTED if _sensitive(key) else _redact(value)
    return event_dict


class OneLine(logging.Filter):
    """Turns a record's traceback into the exception's type, on the same line.

    asyncpg's pool logs a full traceback each time it fails to reconnect while Postgres is
    away; the outage is reported once per job (``job_deferred``), not as pages of stack.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep the record, without its traceback."""
        if record.exc_info and record.exc_info[1] is not None:
            record.msg = f"{record.getMessage()}: {type(record.exc_info[1]).__name__}"
            record.args, record.exc_info, record.exc_text = None, None, None
        return True


class _Stderr:
    """Whatever ``sys.stderr`` is at write time, so redirections (and tests) see every line."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(*, fmt: str = "json", level: str = "info") -> None:
    """Route structlog (and the stdlib loggers of our dependencies) to stderr."""
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    numeric_level = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_sensitive,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    # httpx logs every request URL at INFO; URLs hold patient ids, so keep it quiet.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(message)s")
    for noisy in ("httpx", "httpcore", "arq", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    pool_logger = logging.getLogger("asyncpg.pool")
    if not any(isinstance(f, OneLine) for f in pool_logger.filters):
        pool_logger.addFilter(OneLine())
