"""The emulator's data set: generated claims plus the changes made at run time.

Generated data costs nothing until a beneficiary is asked for; only beneficiaries whose data
was changed through the admin API keep a claim list in memory.
"""

from collections.abc import Sequence
from datetime import datetime

from worker.emulator.claims import (
    CLAIM_TYPES,
    LAST_LOAD,
    Claim,
    claim_count,
    generate_claims,
    make_claim,
)
from worker.emulator.config import EmulatorConfig
from worker.emulator.population import Beneficiary, Population


class DataChangeError(ValueError):
    """A run-time data change that cannot be applied (unknown claim or type)."""


class Dataset:
    """Claims per beneficiary, deterministic until changed at run time."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.population = Population(config.beneficiaries)
        self._override = config.claims_per_beneficiary
        self._part_d_share = config.part_d_share
        self._changed: dict[int, list[Claim]] = {}
        self._next_seq: dict[int, int] = {}
        # What BFD reports as the bundle's meta.lastUpdated: the time of the last data load.
        self.loaded_at = LAST_LOAD

    def claims(self, beneficiary: Beneficiary) -> Sequence[Claim]:
        """The beneficiary's claims in search order (claim id, then type)."""
        changed = self._changed.get(beneficiary.index)
        if changed is not None:
            return changed
        counts = self.population.counts(beneficiary.index)
        return generate_claims(beneficiary.index, counts, self._override, self._part_d_share)

    def eob_count(self, beneficiary: Beneficiary) -> int:
        """How many EOBs the beneficiary has now, cheaply for untouched beneficiaries."""
        changed = self._changed.get(beneficiary.index)
        if changed is not None:
            return len(changed)
        counts = self.population.counts(beneficiary.index)
        return claim_count(beneficiary.index, counts, self._override)

    def touch(self, beneficiary: Beneficiary, count: int, now: datetime) -> list[str]:
        """Change the first `count` claims (new amounts, lastUpdated = now); returns EOB ids."""
        claims = self._editable(beneficiary)
        for position in range(min(count, len(claims))):
            claims[position] = claims[position].touched(now)
        self.loaded_at = now
        return [claim.eob_id for claim in claims[:count]]

    def add_claim(self, beneficiary: Beneficiary, claim_type: str, now: datetime) -> str:
        """Add a new claim of this type, last updated now; returns its EOB id."""
        if claim_type not in CLAIM_TYPES:
            raise DataChangeError(f"claim_type must be one of {', '.join(CLAIM_TYPES)}")
        claims = self._editable(beneficiary)
        seq = self._next_seq[beneficiary.index]
        self._next_seq[beneficiary.index] = seq + 1
        claim = make_claim(beneficiary.index, seq, claim_type, last_updated=now)
        claims.append(claim)
        claims.sort(key=lambda c: c.sort_key)
        self.loaded_at = now
        return claim.eob_id

    def remove_claim(self, beneficiary: Beneficiary, eob_id: str, now: datetime) -> None:
        """Remove the claim with this EOB id, as when CMS withdraws a claim."""
        claims = self._editable(beneficiary)
        kept = [claim for claim in claims if claim.eob_id != eob_id]
        if len(kept) == len(claims):
            raise DataChangeError(f"{beneficiary.patient_id} has no EOB {eob_id}")
        claims[:] = kept
        self.loaded_at = now

    def _editable(self, beneficiary: Beneficiary) -> list[Claim]:
        if beneficiary.index not in self._changed:
            claims = list(self.claims(beneficiary))
            self._changed[beneficiary.index] = claims
            self._next_seq[beneficiary.index] = max((c.seq for c in claims), default=-1) + 1
        return self._changed[beneficiary.index]
