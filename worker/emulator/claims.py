"""Deterministic synthetic claims: which claims a beneficiary has, their ids, dates and sizes.

Every value is derived by hashing its inputs, so any claim can be rebuilt on its own in any
process and nothing has to be stored per beneficiary.
"""

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone

from worker.emulator.population import ClaimCounts

CLAIM_TYPES = ("carrier", "dme", "hha", "hospice", "inpatient", "outpatient", "pde", "snf")

# The sandbox data loads run at night US Eastern; samples carry -04:00 offsets.
EASTERN = timezone(timedelta(hours=-4))
FIRST_LOAD = datetime(2021, 6, 7, 21, 51, 33, 688000, tzinfo=EASTERN)
LOAD_WEEKS = 120
LAST_LOAD = FIRST_LOAD + timedelta(weeks=LOAD_WEEKS)

_FIRST_SERVICE_DAY = date(2014, 1, 1)
_SERVICE_DAYS = 6 * 365
# Weights out of 100 for moving a published carrier claim to another type, so that every
# type shows up among the first users while each user's claim total stays as published.
_CARRIER_REASSIGNMENT = (
    ("carrier", 70),
    ("outpatient", 12),
    ("pde", 8),
    ("dme", 4),
    ("hha", 2),
    ("hospice", 2),
    ("snf", 2),
)
_OVERRIDE_MIX = (("inpatient", 4), *_CARRIER_REASSIGNMENT[1:], ("carrier", 66))
# How many days a claim of each type spans (billablePeriod), as (minimum, spread).
_STAY_DAYS = {"inpatient": (1, 14), "snf": (5, 35), "hospice": (10, 80)}
# BBUser00000 really has 52 EOBs, carrier and outpatient, more than the CSV says (FACTS.md).
_SANDBOX_OVERRIDES: dict[int, tuple[tuple[str, int], ...]] = {
    0: (("carrier", 14), ("outpatient", 38)),
}
# Claim ids are a bijection of (beneficiary, sequence) so they never collide; the multiplier
# is coprime with the modulus and scatters ids like the sandbox's.
_ID_SLOTS = 10**6
_ID_MODULUS = 9 * 10**10
_ID_MULTIPLIER = 1_000_000_007


@dataclass(frozen=True)
class Claim:
    """One claim as far as search and paging need it; the resource is rendered on demand."""

    claim_type: str
    claim_id: str
    seq: int
    service_start: date
    service_end: date
    last_updated: datetime
    lines: int
    version: int = 0

    @property
    def eob_id(self) -> str:
        """The EOB resource id, e.g. carrier--10344810963."""
        return f"{self.claim_type}-{self.claim_id}"

    @property
    def sort_key(self) -> tuple[str, str]:
        """BFD sorts by claim id as a string, then by type (see the sandbox pages)."""
        return (self.claim_id, self.claim_type)

    @property
    def amount_factor(self) -> float:
        """Scales the template's amounts; changes with every version of the claim."""
        return 0.5 + digest(self.claim_id, self.version) % 1000 / 1000

    def touched(self, now: datetime) -> "Claim":
        """The same claim after a data refresh changed it."""
        return replace(self, version=self.version + 1, last_updated=now)


def digest(*parts: object) -> int:
    """A stable 64-bit number for these parts (same in every process, unlike hash())."""
    text = ":".join(str(part) for part in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def make_claim(
    index: int, seq: int, claim_type: str, last_updated: datetime | None = None
) -> Claim:
    """Claim number `seq` of beneficiary `index`; dates and size follow from the two numbers."""
    mixed = (index * _ID_SLOTS + seq + 1) * _ID_MULTIPLIER % _ID_MODULUS
    claim_id = f"-{10**10 + mixed}"
    start = _FIRST_SERVICE_DAY + timedelta(days=digest(claim_id, "day") % _SERVICE_DAYS)
    low, spread = _STAY_DAYS.get(claim_type, (0, 1))
    weeks = digest(claim_id, "load") % LOAD_WEEKS
    return Claim(
        claim_type=claim_type,
        claim_id=claim_id,
        seq=seq,
        service_start=start,
        service_end=start + timedelta(days=low + digest(claim_id, "stay") % spread),
        last_updated=last_updated or FIRST_LOAD + timedelta(weeks=weeks),
        lines=(1, 1, 1, 1, 1, 2, 2, 2, 3, 3)[digest(claim_id, "lines") % 10],
    )


@functools.lru_cache(maxsize=64)
def generate_claims(
    index: int, counts: ClaimCounts, override: int | None, part_d_share: float = 0.0
) -> tuple[Claim, ...]:
    """All claims of a beneficiary in search order; `override` replaces the published count,
    and then `part_d_share` of them are Part D."""
    types = claim_types(index, counts, override, part_d_share)
    claims = [make_claim(index, seq, claim_type) for seq, claim_type in enumerate(types)]
    return tuple(sorted(claims, key=lambda claim: claim.sort_key))


def claim_count(index: int, counts: ClaimCounts, override: int | None) -> int:
    """How many claims generate_claims would return, without generating them."""
    if override is not None:
        return override
    if index in _SANDBOX_OVERRIDES:
        return sum(n for _, n in _SANDBOX_OVERRIDES[index])
    return counts.carrier + counts.inpatient + counts.partd


def claim_types(
    index: int, counts: ClaimCounts, override: int | None, part_d_share: float = 0.0
) -> list[str]:
    """The type of each of a beneficiary's claims, by sequence number."""
    if override is not None:
        return [
            "pde"
            if digest(index, seq, "part-d") % 10_000 < part_d_share * 10_000
            else _weighted(_OVERRIDE_MIX, index, seq)
            for seq in range(override)
        ]
    if index in _SANDBOX_OVERRIDES:
        return [kind for kind, n in _SANDBOX_OVERRIDES[index] for _ in range(n)]
    fixed = ["inpatient"] * counts.inpatient + ["pde"] * counts.partd
    carriers = range(len(fixed), len(fixed) + counts.carrier)
    return fixed + [_weighted(_CARRIER_REASSIGNMENT, index, seq) for seq in carriers]


def _weighted(mix: Sequence[tuple[str, int]], index: int, seq: int) -> str:
    roll = digest(index, seq, "type") % sum(weight for _, weight in mix)
    for kind, weight in mix:
        if roll < weight:
            return kind
        roll -= weight
    raise AssertionError("unreachable: roll is below the total weight")
