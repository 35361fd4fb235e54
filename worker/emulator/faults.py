"""Faults an admin orders through POST /_emulator/faults: what goes wrong, and where.

A `status` fault answers a 5xx instead of the real answer. Every other kind keeps the
status 200 and spoils the answer of a FHIR search the way real upstreams do (see
`bad_answers`). An order is validated here, before anything is queued::

    POST /_emulator/faults {"kind": "next_loop", "count": 1, "after": 1}
    -> {"kind": "next_loop", "count": 1, "after": 1, "search": "ExplanationOfBenefit",
        "pending": 1}

spoils the 2nd ExplanationOfBenefit search from now on. `{"status": 503, "count": 2}`
(kind "status", no `search`) still fails the next two FHIR requests of any kind.
"""

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from worker.emulator.chaos import FAULT_STATUSES

SEARCHES: Final = ("ExplanationOfBenefit", "Coverage")
# The queues hold one entry per request: a bound keeps a typo from filling the memory.
MAX_REQUESTS: Final = 100_000
_DEFAULT_STATUS: Final = 502
_FIELDS: Final = frozenset({"kind", "status", "count", "after", "search"})


class FaultKind(StrEnum):
    """How an answer goes wrong."""

    STATUS = "status"  # a 5xx {"detail"} answer
    MALFORMED_JSON = "malformed_json"  # 200, the JSON body cut in half
    NO_ENTRY = "no_entry"  # 200 Bundle with its total but without `entry`
    WRONG_CONTENT_TYPE = "wrong_content_type"  # 200 HTML maintenance page
    NEXT_LOOP = "next_loop"  # `next` is the URL of the page itself
    NEXT_OFFSITE = "next_offsite"  # `next` is on another host
    OVERSIZE = "oversize"  # 200 body larger than any client should load
    MISSING_ID = "missing_id"  # the page's last resource has no `id`


@dataclass(frozen=True)
class Fault:
    """One request's fault; `status` is the 5xx of a STATUS fault (200 for the others)."""

    kind: FaultKind
    status: int = 200


@dataclass(frozen=True)
class FaultOrder:
    """A validated admin order: `count` faults once `after` requests were let through.

    `search` None (STATUS faults only) counts and fails any FHIR request; otherwise only
    the searches of that resource type are counted and spoiled.
    """

    fault: Fault
    count: int
    after: int
    search: str | None

    def describe(self) -> dict[str, Any]:
        """The order as the admin API echoes it."""
        echo: dict[str, Any] = {"kind": self.fault.kind.value}
        if self.fault.kind is FaultKind.STATUS:
            echo["status"] = self.fault.status
        return {**echo, "count": self.count, "after": self.after, "search": self.search}


class FaultOrderError(ValueError):
    """An order the admin API refuses with 400; the message says what to fix."""


def parse_fault_order(body: dict[str, Any]) -> FaultOrder:
    """Validate `{"kind", "status", "count", "after", "search"}` (all optional).

    The kind defaults to "status", its status to 502; count to 1 and after to 0. Answer
    kinds spoil ExplanationOfBenefit searches unless `search` says "Coverage".
    """
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise FaultOrderError(f"unknown fields {unknown}; expected some of {sorted(_FIELDS)}")
    kind = _kind(body.get("kind", FaultKind.STATUS.value))
    if kind is FaultKind.STATUS:
        status = body.get("status", _DEFAULT_STATUS)
        if type(status) is not int or status not in FAULT_STATUSES:
            raise FaultOrderError(f"status must be one of {list(FAULT_STATUSES)}")
        fault = Fault(kind, status)
    elif "status" in body:
        raise FaultOrderError(f"status goes with kind 'status' only, not {kind.value!r}")
    else:
        fault = Fault(kind)
    return FaultOrder(
        fault=fault,
        count=_integer(body, "count", 1, minimum=1),
        after=_integer(body, "after", 0, minimum=0),
        search=_search(body.get("search"), kind),
    )


def _kind(raw: object) -> FaultKind:
    if not isinstance(raw, str) or raw not in {kind.value for kind in FaultKind}:
        kinds = ", ".join(kind.value for kind in FaultKind)
        raise FaultOrderError(f"kind must be one of {kinds}")
    return FaultKind(raw)


def _search(raw: object, kind: FaultKind) -> str | None:
    if raw is None:
        return None if kind is FaultKind.STATUS else SEARCHES[0]
    if raw not in SEARCHES:
        raise FaultOrderError(f"search must be one of {', '.join(SEARCHES)}")
    return str(raw)


def _integer(body: dict[str, Any], name: str, default: int, *, minimum: int) -> int:
    """A JSON integer (not a boolean, float or string) in [minimum, MAX_REQUESTS]."""
    value = body.get(name, default)
    if type(value) is not int:
        raise FaultOrderError(f"{name} must be an integer")
    if not minimum <= value <= MAX_REQUESTS:
        raise FaultOrderError(f"{name} must be between {minimum} and {MAX_REQUESTS}")
    return value
