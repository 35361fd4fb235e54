"""What every ``bbingest`` command shares: one-line usage errors with exit status 2, and
listings printed as lines or as JSON."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import orjson

EXIT_INVALID = 2

T = TypeVar("T")


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2, and options
    are never abbreviated (``--client-secret`` must not pass for ``--client-secret-file``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_INVALID, f"{self.prog}: error: {message}\n")


def fail(message: str) -> NoReturn:
    """Stop the command: ``message`` on stderr, exit status 2."""
    print(f"bbingest: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_INVALID)


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


def duration(text: str) -> timedelta:
    """An argparse type: a duration like 30d, 12h or 2w."""
    number, unit = text[:-1], text[-1:]
    if unit not in _UNITS or not number.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30d, 12h or 2w")
    return int(number) * _UNITS[unit]


def read_secret(path: str) -> str:
    """The text of ``path`` (``-``: stdin) without its surrounding whitespace; exit 2 when
    it cannot be read."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    return text.strip()


def _from_stdin() -> tuple[str, str]:
    try:
        data = orjson.loads(sys.stdin.buffer.read())
    except orjson.JSONDecodeError:
        fail("--stdin: not a JSON object")
    if not isinstance(data, dict) or set(data) != {"code", "code_verifier"}:
        fail('--stdin: expected {"code": ..., "code_verifier": ...}')
    code, verifier = data["code"], data["code_verifier"]
    if not isinstance(code, str) or not isinstance(verifier, str):
        fail("--stdin: code and code_verifier must be strings")
    return code, verifier


def connect_secrets(args: argparse.Namespace) -> tuple[str, str]:
    """The code and verifier of ``enqueue connect``, from exactly one source each:
    ``--code``/``--code-file`` and ``--code-verifier``/``--code-verifier-file``, or both
    from ``--stdin``; exit 2 otherwise. Files and stdin keep them out of the process list."""
    given = [args.code, args.code_file, args.code_verifier, args.code_verifier_file]
    if args.stdin:
        if any(value is not None for value in given):
            fail("--stdin replaces --code, --code-file, --code-verifier and --code-verifier-file")
        return _from_stdin()
    if args.code_file == "-" and args.code_verifier_file == "-":
        fail("only one of --code-file and --code-verifier-file can be - (stdin): use --stdin")
    if args.code is None and args.code_file is None:
        fail("one of --code, --code-file or --stdin is required")
    if args.code_verifier is None and args.code_verifier_file is None:
        fail("one of --code-verifier, --code-verifier-file or --stdin is required")
    code = args.code if args.code is not None else read_secret(args.code_file)
    verifier = (
        args.code_verifier
        if args.code_verifier is not None
        else read_secret(args.code_verifier_file)
    )
    return code, verifier


def print_listing(found: Sequence[T], as_json: bool, line: Callable[[T], str], empty: str) -> None:
    """Print ``found`` (dataclasses): with ``as_json`` a JSON array of their fields (orjson
    writes times as ISO 8601 text, as ``isoformat()`` does), else a ``line`` each, or
    ``empty`` when there is none."""
    if as_json:
        print(orjson.dumps(list(found), option=orjson.OPT_INDENT_2).decode())
        return
    for item in found:
        print(line(item))
    if not found:
        print(empty)
