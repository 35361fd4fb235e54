"""The chaos scenarios: what goes wrong in each, as data.

A disruption is done to the running system (a replica or a server killed mid-run); the
emulator's chaos settings and fault orders make BB2 misbehave. Every scenario but the bad
answers must end with every connection ``active`` and complete; a bad answer costs
exactly the connection that received it, which ends in a recorded error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from worker.emulator.faults import FaultKind

Disruption = Literal["none", "sigkill", "sigkill-exchanges", "redis", "postgres"]


@dataclass(frozen=True)
class Scenario:
    """One row of the chaos table."""

    name: str
    disruption: Disruption = "none"
    emulator: dict[str, Any] = field(default_factory=dict)  # EmulatorConfig chaos fields
    faults: tuple[dict[str, Any], ...] = ()  # POST /_emulator/faults orders
    worker_env: dict[str, str] = field(default_factory=dict)
    expire_tokens: bool = False  # every access token dies after two requests: refreshes
    expected_errors: int = 0
    # Queue ``exchange`` jobs, as the intake does (first syncs follow as jobs of their own),
    # rather than the contract's ``connect`` jobs.
    via_exchange: bool = False
    # Connections that may end in error "lost in flight": codes whose exchange request had
    # left when its replica was killed (at most one replica's exchange concurrency).
    lost_in_flight_allowed: int = 0
    # A text the workers' logs must hold: proof the scenario hit what it aims at.
    evidence: str | None = None

    @property
    def slug(self) -> str:
        """The scenario's name as a file or test id."""
        return self.name.replace(" ", "-").replace("/", "-").replace(",", "")


BAD_ANSWERS = {
    FaultKind.MALFORMED_JSON: "malformed JSON",
    FaultKind.NO_ENTRY: "Bundle without entry",
    FaultKind.WRONG_CONTENT_TYPE: "HTML, not JSON",
    FaultKind.NEXT_LOOP: "next link loops",
    FaultKind.NEXT_OFFSITE: "next link off-site",
    FaultKind.OVERSIZE: "oversized page",
    FaultKind.MISSING_ID: "EOB without id",
}

# Bursts of 5xx on any FHIR request, each shorter than a request's five attempts.
BURSTS = (
    {"status": 502, "count": 3, "after": 3},
    {"status": 503, "count": 4, "after": 30},
    {"status": 504, "count": 2, "after": 60},
)

SCENARIOS: tuple[Scenario, ...] = (
    Scenario("no faults, tokens refreshed", expire_tokens=True, evidence='"refreshes": 1'),
    # Exchanges go first (their own lane, the budget's urgent priority): by the time pages
    # are being stored every code is exchanged, so the kill need not wait for them.
    Scenario(
        "replica SIGKILLed mid-pagination",
        disruption="sigkill",
        via_exchange=True,
        evidence='"job_try": 2',
    ),
    # The kill strikes while codes are being exchanged: the killed replica's exchanges run
    # again on the other one after their 5 s lease; only those whose request had left (its
    # tokens died with the process) may be lost, each recorded.
    Scenario(
        "replica SIGKILLed mid-exchange",
        disruption="sigkill-exchanges",
        via_exchange=True,
        # One exchange at a time per replica, each waiting a while for its slot: the kill
        # strikes while both replicas hold one.
        worker_env={"WORKER_EXCHANGE_CONCURRENCY": "1", "BB_RATE_LIMIT": "4"},
        lost_in_flight_allowed=1,
        evidence='"job_try": 2',
    ),
    Scenario("Redis restarted mid-run", disruption="redis", evidence='"redis_reconnected"'),
    Scenario("Postgres restarted mid-run", disruption="postgres", evidence='"job_deferred"'),
    Scenario("5xx bursts", faults=BURSTS, evidence="BB2 answered 50"),
    Scenario(
        "timeouts",
        # Long enough that only the emulator's slow answers time out, not a busy machine:
        # a timed-out code exchange may have spent the code, and its retry cannot succeed.
        emulator={"slow_rate": 0.1, "slow_seconds": 2.5},
        worker_env={"BB_HTTP_TIMEOUT": "1.5"},
        evidence="BB2 timed out",
    ),
    Scenario("slow answers", emulator={"slow_rate": 0.3, "slow_seconds": 0.3}),
    Scenario("connections reset", emulator={"drop_rate": 0.1}, evidence="BB2 unreachable"),
    *(
        Scenario(
            f"bad answer: {label}",
            faults=({"kind": kind.value, "after": 1},),
            expected_errors=1,
        )
        for kind, label in BAD_ANSWERS.items()
    ),
)


def scenario(name: str) -> Scenario:
    """The scenario called ``name``."""
    return next(s for s in SCENARIOS if s.name == name)
