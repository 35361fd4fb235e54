"""Who may call the intake API, and which apps' connections each caller reaches.

``INTAKE_KEYS`` names the callers, one per entry (entries separated by commas or newlines)::

    name:app1|app2:secret      a caller reaching the connections of app1 and app2
    name:*:secret              a caller reaching every app

Two entries may name the same apps: that is how a key is rotated (add the new one, move the
upstream to it, remove the old one). ``INTAKE_SECRET`` stays the single all-apps key of a
one-backend deployment, as the caller named ``default``. Every secret has at least
:data:`MIN_SECRET_CHARS` characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from worker.apps import APP_NAME_PATTERN
from worker.errors import ConfigError

MIN_SECRET_CHARS: Final = 32
ALL_APPS: Final = "*"
SINGLE_KEY_CALLER: Final = "default"
CALLER_NAME_PATTERN: Final = r"^[a-z0-9][a-z0-9_-]{0,62}$"
_CALLER_NAME = re.compile(CALLER_NAME_PATTERN)
_APP_NAME = re.compile(APP_NAME_PATTERN)
_ENTRY_SEPARATOR = re.compile(r"[,\n]")


@dataclass(frozen=True)
class Caller:
    """One upstream: its key's name (sent in ``X-Bbingest-Key``), its HMAC key, and the apps
    whose connections it reaches (None: every app)."""

    name: str
    key: bytes = field(repr=False)
    apps: frozenset[str] | None

    def may_reach(self, app: str) -> bool:
        """Whether this caller may see and act on a connection of ``app``."""
        return self.apps is None or app in self.apps


def _parse_entry(entry: str) -> Caller:
    name, _, rest = entry.partition(":")
    apps_text, _, secret = rest.partition(":")
    if not _CALLER_NAME.match(name):
        raise ConfigError("INTAKE_KEYS: each entry is name:apps:secret with a lower-case name")
    if len(secret) < MIN_SECRET_CHARS:
        raise ConfigError(f"INTAKE_KEYS: the secret of {name!r} is under {MIN_SECRET_CHARS} chars")
    if apps_text == ALL_APPS:
        return Caller(name, secret.encode(), None)
    apps = frozenset(apps_text.split("|"))
    if not all(_APP_NAME.match(app) for app in apps):
        raise ConfigError(f"INTAKE_KEYS: the apps of {name!r} are app names joined by '|' or *")
    return Caller(name, secret.encode(), apps)


def parse_callers(intake_keys: str, intake_secret: str) -> tuple[Caller, ...]:
    """The callers ``INTAKE_KEYS`` and ``INTAKE_SECRET`` configure; a ConfigError naming the
    setting when there is none, an entry is malformed, or a name repeats."""
    callers = [_parse_entry(e.strip()) for e in _ENTRY_SEPARATOR.split(intake_keys) if e.strip()]
    if intake_secret:
        if len(intake_secret) < MIN_SECRET_CHARS:
            raise ConfigError(
                f"INTAKE_SECRET must be set to at least {MIN_SECRET_CHARS} characters"
            )
        callers.append(Caller(SINGLE_KEY_CALLER, intake_secret.encode(), None))
    if not callers:
        raise ConfigError(
            f"INTAKE_KEYS or INTAKE_SECRET must be set (secrets of at least {MIN_SECRET_CHARS}"
            " characters)"
        )
    names = [caller.name for caller in callers]
    if len(set(names)) != len(names):
        raise ConfigError(
            "INTAKE_KEYS: a caller name is repeated (or is 'default' with INTAKE_SECRET)"
        )
    return tuple(callers)
