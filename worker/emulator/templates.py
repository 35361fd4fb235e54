"""Real BB2/BFD resources used as templates, compiled once so that rendering is cheap.

Provenance (see the shared samples' SOURCES.txt): eob_carrier and eob_outpatient are sandbox
EOBs of BBUser00000 (cms-bb2-python-sdk fixtures); the other EOBs come from BFD's
eobByPatientIdPaged.json; coverage_part_* and patient from bluebutton-web-server's v2 fixtures
(deceasedDateTime dropped from the patient: synthetic beneficiaries are alive);
capability_statement is bluebutton-web-server's fhir_meta_v2.json.
"""

import functools
import re
from dataclasses import dataclass
from datetime import date, timedelta
from importlib import resources
from typing import Any, TypeGuard

import orjson

JsonObject = dict[str, Any]
Path = tuple[str | int, ...]

_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})(T.*)?$")
# Set explicitly per resource, so never shifted with the other dates.
_EXPLICIT_DATES: frozenset[Path] = frozenset({("meta", "lastUpdated"), ("created",)})


@dataclass(frozen=True)
class Fragment:
    """A JSON object plus where its dates and money amounts sit, for fast substitution."""

    raw: bytes
    dates: tuple[tuple[Path, date, str], ...]
    money: tuple[tuple[Path, float], ...]

    def render(self, shift: timedelta, factor: float) -> JsonObject:
        """A fresh copy with every date moved by `shift` and every amount scaled by `factor`."""
        obj: JsonObject = orjson.loads(self.raw)
        for path, day, suffix in self.dates:
            _assign(obj, path, (day + shift).isoformat() + suffix)
        for path, amount in self.money:
            _assign(obj, path, round(amount * factor, 2))
        return obj


@dataclass(frozen=True)
class Template:
    """A resource template: its body without `item`, and each template item on its own."""

    body: Fragment
    items: tuple[Fragment, ...]


def compile_template(resource: JsonObject) -> Template:
    """Split a resource into body and items and index the dates and amounts of each."""
    body = {key: value for key, value in resource.items() if key != "item"}
    items = resource.get("item", [])
    return Template(body=_fragment(body), items=tuple(_fragment(item) for item in items))


@functools.cache
def load_template(name: str) -> Template:
    """The compiled template stored as templates/<name>.json."""
    return compile_template(load_json(name))


def load_json(name: str) -> JsonObject:
    """The raw template stored as templates/<name>.json."""
    data = resources.files(__package__).joinpath(f"templates/{name}.json").read_bytes()
    obj: JsonObject = orjson.loads(data)
    return obj


def _fragment(obj: JsonObject) -> Fragment:
    dates: list[tuple[Path, date, str]] = []
    money: list[tuple[Path, float]] = []
    for path, value in _leaves(obj, ()):
        match = _DATE.match(value) if isinstance(value, str) else None
        if match and path not in _EXPLICIT_DATES:
            dates.append((path, date.fromisoformat(match.group(1)), match.group(2) or ""))
        elif _is_amount(value, obj, path):
            money.append((path, float(value)))
    return Fragment(raw=orjson.dumps(obj), dates=tuple(dates), money=tuple(money))


def _leaves(node: object, path: Path) -> list[tuple[Path, object]]:
    if isinstance(node, dict):
        return [leaf for key, value in node.items() for leaf in _leaves(value, (*path, key))]
    if isinstance(node, list):
        return [leaf for i, value in enumerate(node) for leaf in _leaves(value, (*path, i))]
    return [(path, node)]


def _is_amount(value: object, obj: JsonObject, path: Path) -> TypeGuard[int | float]:
    """A FHIR Money is an object with a numeric `value` next to a `currency`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or path[-1:] != ("value",):
        return False
    parent = _lookup(obj, path[:-1])
    return isinstance(parent, dict) and "currency" in parent


def _lookup(obj: Any, path: Path) -> Any:
    for key in path:
        obj = obj[key]
    return obj


def _assign(obj: Any, path: Path, value: object) -> None:
    _lookup(obj, path[:-1])[path[-1]] = value
