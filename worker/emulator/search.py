"""FHIR search parameters as BB2 reads them, and the searchset Bundle it answers with."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import urlencode

from starlette.datastructures import QueryParams

from worker.emulator.templates import JsonObject

DEFAULT_COUNT = 10
MAX_COUNT = 50
EOB_TYPE_SYSTEM = "https://bluebutton.cms.gov/resources/codesystem/eob-type"
_FORMAT = ("_format", "application/json+fhir")
_PREFIXES = ("gt", "ge", "lt", "le")
_BACKEND_400 = "An error occurred contacting the upstream server"


class SearchError(ValueError):
    """A search parameter BB2 would reject with 400."""


@dataclass(frozen=True)
class DateBound:
    """One `_lastUpdated` or `service-date` condition; its value covers [start, end)."""

    prefix: str
    start: datetime
    end: datetime

    def admits(self, moment: datetime) -> bool:
        """Whether a resource with this time passes the condition (FHIR range semantics)."""
        if self.prefix == "gt":
            return moment >= self.end
        if self.prefix == "ge":
            return moment >= self.start
        if self.prefix == "lt":
            return moment < self.start
        return moment < self.end


@dataclass(frozen=True)
class Paging:
    """`_count` and `startIndex` of a search."""

    count: int
    start: int


def parse_paging(query: QueryParams) -> Paging:
    """Read `_count` (default 10, 0..50) and `startIndex` (an offset, at least 0)."""
    count = _integer(query, "_count", DEFAULT_COUNT)
    if not 0 <= count <= MAX_COUNT:
        raise SearchError(f"_count must be between 0 and {MAX_COUNT}")
    start = _integer(query, "startIndex", 0)
    if start < 0:
        raise SearchError("startIndex must not be negative")
    return Paging(count=count, start=start)


def check_start(paging: Paging, total: int) -> None:
    """BFD slices the page out of the whole result and refuses a `startIndex` at or past
    its end, unless the result is empty (TransformerUtilsV2.createBundle and
    validateStartIndexSize); BB2 passes the backend's diagnostics on as a 400 detail
    (apps/fhir/bluebutton/exceptions.py). FACTS "Errors and limits"."""
    if total and paging.start >= total:
        raise SearchError(
            f"{_BACKEND_400}:Value for startIndex ({paging.start}) must be less than than "
            f"result size ({total})"
        )


def parse_dates(values: Sequence[str], name: str) -> tuple[DateBound, ...]:
    """Read repeated date conditions such as `_lastUpdated=gt2020-02-13T00:00:00Z`."""
    return tuple(_date_bound(value, name) for value in values)


def parse_types(values: Sequence[str], known: Sequence[str]) -> frozenset[str] | None:
    """Read the EOB `type` parameter: comma-separated codes, optionally system-qualified."""
    if not values:
        return None
    types = set()
    for token in (part.strip() for value in values for part in value.split(",")):
        system, _, code = token.rpartition("|")
        if system and system != EOB_TYPE_SYSTEM:
            raise SearchError(f"unknown type system {system}")
        if code.lower() not in known:
            raise SearchError(f"unknown type {code}")
        types.add(code.lower())
    return frozenset(types)


def admits_all(bounds: Sequence[DateBound], moment: datetime) -> bool:
    """Whether a time passes every condition."""
    return all(bound.admits(moment) for bound in bounds)


def day_start(day: date) -> datetime:
    """A calendar day as the UTC instant it starts, to compare with date conditions."""
    return datetime.combine(day, time(), tzinfo=UTC)


def searchset(
    resources: Sequence[JsonObject],
    total: int,
    links: list[dict[str, str]],
    last_updated: str,
) -> JsonObject:
    """A searchset Bundle; `entry` is left out when empty, as FHIR servers do."""
    bundle: JsonObject = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": last_updated},
        "type": "searchset",
        "total": total,
        "link": links,
    }
    if resources:
        bundle["entry"] = [{"resource": resource} for resource in resources]
    return bundle


def page_links(
    resource_url: str, paging: Paging, total: int, criteria: list[tuple[str, str]]
) -> list[dict[str, str]]:
    """first/next/previous/last/self links built like BB2's (absolute, `_format` first)."""
    count = paging.count

    def at(start: int) -> str:
        query = [_FORMAT, ("startIndex", str(start)), ("_count", str(count)), *criteria]
        return f"{resource_url}?{urlencode(query)}"

    last = (total - 1) // count * count if count and total else 0
    links = [{"relation": "first", "url": at(0)}]
    if count and paging.start + count < total:
        links.append({"relation": "next", "url": at(paging.start + count)})
    if count and paging.start > 0:
        links.append({"relation": "previous", "url": at(max(paging.start - count, 0))})
    links.append({"relation": "last", "url": at(last)})
    current = [_FORMAT, ("startIndex", str(paging.start)), ("_count", str(count)), *criteria]
    links.append({"relation": "self", "url": f"{resource_url}/?{urlencode(sorted(current))}"})
    return links


def _integer(query: QueryParams, name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SearchError(f"{name} must be an integer") from None


def _date_bound(value: str, name: str) -> DateBound:
    prefix, text = value[:2], value[2:]
    if prefix not in _PREFIXES:
        raise SearchError(f"{name} needs one of the prefixes {', '.join(_PREFIXES)}: {value}")
    try:
        if len(text) == len("2020-02-13"):
            start = day_start(date.fromisoformat(text))
            return DateBound(prefix=prefix, start=start, end=start + timedelta(days=1))
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise SearchError(f"{name} has an invalid date: {value}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    # A value covers its precision: "10:00:00" is the whole second, ".123" one fraction.
    precision = timedelta(microseconds=1) if "." in text else timedelta(seconds=1)
    return DateBound(prefix=prefix, start=moment, end=moment + precision)
