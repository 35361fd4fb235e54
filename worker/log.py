"""structlog set-up: JSON lines in production, and a processor that keeps secrets out.

The first defence is never to pass a token, code, secret or personal field to a logger;
:func:`redact_sensitive` is the second, for the day someone forgets. It runs last, after
exception text is formatted, and on the records of stdlib loggers too (arq, asyncpg,
uvicorn, httpx), which reach stderr through structlog's ProcessorFormatter. Besides the
values of sensitive keys it rewrites, inside any text, ``key=value`` / ``"key": value`` pairs
of sensitive keys, bearer tokens, BB2 patient ids (``-1999...``, ``patient=``,
``Patient/<id>``) and Medicare Beneficiary Identifiers. The connection id is the upstream's
own key and stays.
"""

from __future__ import annotations

import logging
import re
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
        "given",
        "family",
        "patient",
        "patient_id",
        "beneficiary",
        "beneficiary_id",
        "mbi",
        "identifier",
        "telecom",
    }
)
# Keys whose values are ids of ours or the upstream's, never the person's: kept as they are.
KEPT_KEYS: Final = frozenset({"connection_id", "event_id", "job_id", "run_id", "key_id"})
_TEXT_KEYS: Final = "|".join(
    sorted(
        {
            "access_token",
            "refresh_token",
            "token",
            "code",
            "code_verifier",
            "client_secret",
            "secret",
            "password",
            "patient",
            "patient_id",
            "beneficiary",
            "name",
            "given",
            "family",
            "birthDate",
            "birth_date",
            "mbi",
            "identifier",
        },
        key=len,
        reverse=True,
    )
)
# Inside free text (exception messages, URLs, reprs): what follows a sensitive key written
# as ``key=`` or as a quoted ``"key":`` (JSON, dict reprs), up to the next separator; a list
# value (FHIR's "given": ["Jane"]) is taken whole. A bare ``code: 500`` is left alone.
_TEXT_PATTERNS: Final = (
    re.compile(
        rf"""(?i)(?P<key>\b(?:{_TEXT_KEYS})(?:\s*=|["']\s*:)\s*)"""
        r"""(?P<value>\[[^\]]*\]|"[^"]*"|'[^']*'|[^\s"'&,;)}\]]+)"""
    ),
    re.compile(r"(?i)(?P<key>\bbearer\s+)(?P<value>[A-Za-z0-9._~+/=-]+)"),
    re.compile(r"(?P<key>\bPatient/)(?P<value>-?[A-Za-z0-9.-]+)"),
    # BB2 beneficiary ids are long integers, the synthetic ones negative (-19990000000001).
    re.compile(r"(?P<key>(?<![\w-]))(?P<value>-\d{8,})\b"),
    # A Medicare Beneficiary Identifier: 11 characters in CMS's fixed pattern.
    re.compile(
        r"(?P<key>\b)(?P<value>[1-9][AC-HJKMNP-RT-Y][AC-HJKMNP-RT-Y0-9][0-9]-?"
        r"[AC-HJKMNP-RT-Y][AC-HJKMNP-RT-Y0-9][0-9]-?[AC-HJKMNP-RT-Y]{2}[0-9]{2})\b"
    ),
)
# Any key named like these is sensitive too: ``stale_token``, ``app_secret`` ...
SENSITIVE_SUFFIXES: Final = ("_token", "_secret", "_verifier", "_password")


def _sensitive(key: str) -> bool:
    key = key.lower()
    return key in SENSITIVE_KEYS or key.endswith(SENSITIVE_SUFFIXES)


def _redact_text(text: str) -> str:
    """``text`` with every sensitive value the patterns find replaced by the marker."""
    for pattern in _TEXT_PATTERNS:
        text = pattern.sub(lambda m: m["key"] + REDACTED, text)
    return text


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _redact_item(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_redact(item) for item in value)
    if isinstance(value, str):
        return _redact_text(value)
    return value


def _redact_item(key: str, value: Any) -> Any:
    if key in KEPT_KEYS or key.startswith("_"):  # ids of ours; structlog's own entries
        return value
    return REDACTED if _sensitive(key) else _redact(value)


def redact_sensitive(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Replace the value of every sensitive key with a marker, at any depth of dicts,
    lists and tuples, and sensitive values inside any text (the event, exception text)
    (copies: the caller's objects are left as they were)."""
    for key, value in event_dict.items():
        event_dict[key] = _redact_item(key, value)
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
    """Route structlog and the stdlib loggers of our dependencies to stderr, both through
    the same chain: exception text is formatted first, then everything is redacted."""
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    numeric_level = logging.getLevelNamesMapping()[level.upper()]
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            redact_sensitive,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    _route_stdlib(shared, renderer)
    # httpx logs every request URL at INFO; URLs hold patient ids, so keep it quiet.
    for noisy in ("httpx", "httpcore", "arq", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    pool_logger = logging.getLogger("asyncpg.pool")
    if not any(isinstance(f, OneLine) for f in pool_logger.filters):
        pool_logger.addFilter(OneLine())


class _StructlogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The root handler configure_logging installs (recognised to be replaced, not doubled)."""


def _route_stdlib(
    shared: list[structlog.types.Processor], renderer: structlog.types.Processor
) -> None:
    """Send stdlib records (warnings and up) through the same redacting chain."""
    handler = _StructlogHandler(_Stderr())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact_sensitive,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StructlogHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
