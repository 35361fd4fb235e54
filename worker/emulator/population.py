"""The sandbox's synthetic beneficiaries: who they are and how many claims of each type."""

import csv
import functools
import io
from dataclasses import dataclass
from importlib import resources

_COUNTS_FILE = "claim_counts.csv"
# (given name, FHIR gender): pairs keep the synthetic name and gender consistent.
_GIVEN_NAMES = (
    ("Jane", "female"),
    ("John", "male"),
    ("Maria", "female"),
    ("James", "male"),
    ("Linda", "female"),
    ("Robert", "male"),
    ("Susan", "female"),
    ("Michael", "male"),
    ("Ana", "female"),
    ("Wei", "male"),
)
_FAMILY_NAMES = ("Doe", "Smith", "Garcia", "Johnson", "Nguyen", "Brown", "Lopez", "Khan", "Lee")


@dataclass(frozen=True)
class ClaimCounts:
    """Claim counts of one user as published in synthetic_users_by_claim_count_full.csv."""

    bene_id: int
    carrier: int
    inpatient: int
    partd: int


@dataclass(frozen=True)
class Beneficiary:
    """One synthetic beneficiary; `index` is the number in its username."""

    index: int
    bene_id: int

    @property
    def username(self) -> str:
        """Sandbox login name, e.g. BBUser00000."""
        return f"BBUser{self.index:05d}"

    @property
    def password(self) -> str:
        """Sandbox password, e.g. PW00000!."""
        return f"PW{self.index:05d}!"

    @property
    def patient_id(self) -> str:
        """The FHIR Patient id: minus the BENE_ID."""
        return f"-{self.bene_id}"

    @property
    def given_name(self) -> str:
        """A synthetic first name, stable per beneficiary."""
        return _GIVEN_NAMES[self.index % len(_GIVEN_NAMES)][0]

    @property
    def gender(self) -> str:
        """FHIR administrative gender matching the given name."""
        return _GIVEN_NAMES[self.index % len(_GIVEN_NAMES)][1]

    @property
    def family_name(self) -> str:
        """A synthetic family name, stable per beneficiary."""
        return _FAMILY_NAMES[(self.index // len(_GIVEN_NAMES)) % len(_FAMILY_NAMES)]


@functools.cache
def claim_counts() -> tuple[ClaimCounts, ...]:
    """Every sandbox user's counts, indexed by the number in the username (read once)."""
    text = resources.files(__package__).joinpath(f"data/{_COUNTS_FILE}").read_text("utf-8")
    rows = [row for row in csv.DictReader(io.StringIO(text)) if row.get("username")]
    counts = []
    for index, row in enumerate(rows):
        if row["username"] != f"BBUser{index:05d}":
            raise ValueError(f"{_COUNTS_FILE} is not in username order at row {index}")
        counts.append(
            ClaimCounts(
                bene_id=int(row["bene_id"]),
                carrier=int(row["carrier_claims"]),
                inpatient=int(row["inpatient_claims"]),
                partd=int(row["partd_events"]),
            )
        )
    return tuple(counts)


class Population:
    """The first `size` sandbox users, with look-ups by username and patient id."""

    def __init__(self, size: int) -> None:
        counts = claim_counts()
        if not 1 <= size <= len(counts):
            raise ValueError(f"beneficiaries must be between 1 and {len(counts)}, got {size}")
        self._counts = counts[:size]
        # BENE_IDs are 19990000000001 + index except the last user's, so a map is the honest way.
        self._by_patient_id = {f"-{c.bene_id}": i for i, c in enumerate(self._counts)}

    def __len__(self) -> int:
        return len(self._counts)

    def get(self, index: int) -> Beneficiary:
        """The beneficiary with this index (IndexError when out of range)."""
        if not 0 <= index < len(self._counts):
            raise IndexError(index)
        return Beneficiary(index=index, bene_id=self._counts[index].bene_id)

    def counts(self, index: int) -> ClaimCounts:
        """The published claim counts of this beneficiary."""
        return self._counts[index]

    def by_patient_id(self, patient_id: str) -> Beneficiary | None:
        """The beneficiary whose FHIR Patient id this is, if any."""
        index = self._by_patient_id.get(patient_id)
        return None if index is None else self.get(index)

    def by_username(self, username: str) -> Beneficiary | None:
        """The beneficiary with this sandbox username, if any."""
        digits = username[len("BBUser") :]
        valid = username.startswith("BBUser") and len(digits) == 5 and digits.isdigit()
        if not valid or int(digits) >= len(self._counts):
            return None
        return self.get(int(digits))
