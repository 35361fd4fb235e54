"""What every ``bbingest`` command shares: one-line usage errors with exit status 2."""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

EXIT_INVALID = 2


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
