"""Settings of the local Blue Button 2.0 emulator, and their command-line wiring."""

import argparse
import math
from dataclasses import dataclass, field
from typing import Literal

GrantType = Literal["THIRTEEN_MONTH", "ONE_TIME", "RESEARCH_STUDY"]
GRANT_TYPES: tuple[GrantType, ...] = ("THIRTEEN_MONTH", "ONE_TIME", "RESEARCH_STUDY")

# The sandbox has BBUser00000..BBUser10000; the claim counts ship for exactly these.
MAX_BENEFICIARIES = 10_001
# Claim ids encode (beneficiary, sequence) in 10**6 slots per beneficiary.
MAX_CLAIMS_PER_BENEFICIARY = 100_000


@dataclass(frozen=True)
class RegisteredClient:
    """An application registered with the emulator, as on the BB2 developer sandbox."""

    client_id: str = "emulator-client"
    client_secret: str = "emulator-secret"  # noqa: S105 - a well-known local demo credential
    name: str = "bluebutton-ingest demo"
    grant_type: GrantType = "THIRTEEN_MONTH"
    rate_limit: int | None = None  # None: the emulator's rate_limit
    redirect_uris: tuple[str, ...] = (
        "http://localhost:3000/api/auth/smart/callback",
        "http://127.0.0.1:3000/api/auth/smart/callback",
    )


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything that shapes one emulator instance; validated on construction."""

    beneficiaries: int = 30
    claims_per_beneficiary: int | None = None
    token_lifetime: int = 3600
    # Codes live 60 s: django-oauth-toolkit's default, unchanged by BB2 (FACTS "Authorization").
    code_lifetime: int = 60
    rate_limit: int | None = None
    rate_burst: int = 0
    # The edge in front of BB2 (worker.emulator.edge): requests/s per app, None: no edge.
    edge_rate: int | None = None
    edge_retry_after: bool = False
    # Search pages cost what CMS's backend spends on them (worker.emulator.backend); off by
    # default so that tests stay fast.
    backend_cost: bool = False
    # With claims_per_beneficiary: the share of the claims that are Part D (pde), as for
    # production beneficiaries with thousands of prescriptions (FACTS "Errors and limits").
    part_d_share: float = 0.0
    # Seeded chaos on FHIR views, as shares (0..1) of the admitted requests: a 500/502/503/504,
    # a connection dropped mid-body, and (independently) an answer delayed by slow_seconds.
    fault_rate: float = 0.0
    drop_rate: float = 0.0
    slow_rate: float = 0.0
    slow_seconds: float = 0.0
    fault_seed: int = 0
    clients: tuple[RegisteredClient, ...] = field(default_factory=lambda: (RegisteredClient(),))

    def __post_init__(self) -> None:
        _check_range("beneficiaries", self.beneficiaries, 1, MAX_BENEFICIARIES)
        if self.claims_per_beneficiary is not None:
            _check_range(
                "claims_per_beneficiary", self.claims_per_beneficiary, 0, MAX_CLAIMS_PER_BENEFICIARY
            )
        _check_range("token_lifetime", self.token_lifetime, 1, None)
        _check_range("code_lifetime", self.code_lifetime, 1, None)
        if self.rate_limit is not None:
            _check_range("rate_limit", self.rate_limit, 1, None)
        _check_range("rate_burst", self.rate_burst, 0, None)
        if self.edge_rate is not None:
            _check_range("edge_rate", self.edge_rate, 1, None)
        self._check_chaos()
        _check_share("part_d_share", self.part_d_share)
        if not self.clients:
            raise ValueError("at least one registered client is needed")
        if len({c.client_id for c in self.clients}) != len(self.clients):
            raise ValueError("client ids must be unique")
        for client in self.clients:
            _check_client(client)

    def client(self, client_id: str) -> RegisteredClient | None:
        """The registered client with this id, or None."""
        return next((c for c in self.clients if c.client_id == client_id), None)

    def _check_chaos(self) -> None:
        """Each request gets one outcome, so the fault and drop shares must fit in one."""
        for name in ("fault_rate", "drop_rate", "slow_rate"):
            _check_share(name, getattr(self, name))
        if self.fault_rate + self.drop_rate > 1:
            raise ValueError(
                f"fault_rate + drop_rate must not exceed 1, got {self.fault_rate + self.drop_rate}"
            )
        if not math.isfinite(self.slow_seconds) or self.slow_seconds < 0:
            raise ValueError(
                f"slow_seconds must be a number of at least 0, got {self.slow_seconds}"
            )
        if self.slow_rate > 0 and self.slow_seconds == 0:
            raise ValueError("slow_seconds must be above 0 when slow_rate is set")


def _check_range(name: str, value: int, low: int, high: int | None) -> None:
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ValueError(f"{name} must be {bound}, got {value}")


def _check_share(name: str, value: float) -> None:
    # The negated form also rejects NaN.
    if not 0 <= value <= 1:
        raise ValueError(f"{name} must be between 0 and 1, got {value}")


def _check_client(client: RegisteredClient) -> None:
    if client.rate_limit is not None:
        _check_range(f"rate_limit of {client.client_id}", client.rate_limit, 1, None)
    if client.grant_type not in GRANT_TYPES:
        raise ValueError(
            f"grant_type of {client.client_id} must be one of {', '.join(GRANT_TYPES)}"
        )
    if not client.client_id or not client.client_secret or not client.redirect_uris:
        raise ValueError(f"client {client.client_id!r} needs an id, a secret and a redirect URI")


ADMIN_HELP = """\
admin API (not BB2; JSON bodies):
  GET  /_emulator/stats, POST /_emulator/stats/reset      request counters
  GET  /_emulator/beneficiaries?offset=&limit=            users, passwords, patient ids
  POST /_emulator/tokens/expire {"patient_id", "after_requests"}
  POST /_emulator/grants/lapse  {"patient_id"}            grants time out (401)
  POST /_emulator/grants/delete {"patient_id"}            grants deleted, their tokens revoked
  GET  /_emulator/grants?patient_id=P                     grants and live tokens CMS holds
  POST /_emulator/claims/touch|add|remove {"patient_id", ...}
  POST /_emulator/faults {"status"|"kind", "count", "after", "search"}
  POST /_emulator/faults/refresh {"status": 502|404, "count"}  refreshes rotate, then fail
  POST /_emulator/apps/inactive {"client_id", "inactive": true|false}  FHIR 401, token 403
  POST /_emulator/edge/forbid {"patient_id", "seconds", "count"}  FHIR meets an HTML 403
  POST /_emulator/edge/rate {"rate": N|null, "retry_after": false}  the edge's throttle
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the emulator's options (not --host/--port, which belong to the server) to a parser,
    and the admin API to its help."""
    parser.epilog = ADMIN_HELP
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    defaults = EmulatorConfig()
    parser.add_argument("--beneficiaries", type=int, default=defaults.beneficiaries)
    parser.add_argument(
        "--claims-per-beneficiary",
        type=int,
        default=None,
        help="the same EOB count for every beneficiary (default: the sandbox's counts)",
    )
    parser.add_argument(
        "--backend-cost",
        action="store_true",
        help="each EOB search page costs 20 ms + 0.5 ms per matching claim; 502 past 30 s",
    )
    parser.add_argument(
        "--part-d-share",
        type=float,
        default=defaults.part_d_share,
        help="with --claims-per-beneficiary: the share (0..1) of Part D claims",
    )
    parser.add_argument("--token-lifetime", type=int, default=defaults.token_lifetime)
    parser.add_argument(
        "--code-lifetime",
        type=int,
        default=defaults.code_lifetime,
        help="seconds an authorization code lives (CMS: 60)",
    )
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=None,
        help="requests per sliding second per client id (default: unlimited)",
    )
    parser.add_argument("--rate-burst", type=int, default=defaults.rate_burst)
    parser.add_argument(
        "--edge-rate",
        type=int,
        default=None,
        help="requests per sliding second per app at the edge in front of BB2, answered "
        '429 "Assembly Rate Limit exceeded" (default: no edge)',
    )
    parser.add_argument(
        "--edge-retry-after",
        action="store_true",
        help="the edge's 429s carry Retry-After (default: bare, as an edge may send them)",
    )
    parser.add_argument(
        "--fault-rate",
        type=float,
        default=defaults.fault_rate,
        help="share (0..1) of FHIR requests answered with a random 500/502/503/504",
    )
    parser.add_argument(
        "--drop-rate",
        type=float,
        default=defaults.drop_rate,
        help="share (0..1) of FHIR requests whose connection is dropped mid-body",
    )
    parser.add_argument(
        "--slow-rate",
        type=float,
        default=defaults.slow_rate,
        help="share (0..1) of FHIR requests answered only after --slow-seconds",
    )
    parser.add_argument("--slow-seconds", type=float, default=defaults.slow_seconds)
    parser.add_argument(
        "--fault-seed",
        type=int,
        default=defaults.fault_seed,
        help="seed of the draws above, so that a run is repeatable",
    )
    parser.add_argument(
        "--grant-type",
        choices=GRANT_TYPES,
        default=RegisteredClient().grant_type,
        help="data access type of the default client",
    )
    parser.add_argument(
        "--client",
        action="append",
        type=parse_client,
        default=[],
        metavar="ID:SECRET:RATE:NAME",
        help="register another app (RATE may be empty: --rate-limit); repeatable",
    )


def parse_client(text: str) -> RegisteredClient:
    """An app registered by ``--client ID:SECRET:RATE:NAME`` (the name may hold colons)."""
    parts = text.split(":", 3)
    if len(parts) != 4 or not all(parts[:2]) or not parts[3]:
        raise argparse.ArgumentTypeError(f"{text!r} is not ID:SECRET:RATE:NAME")
    client_id, secret, rate, name = parts
    if rate and not rate.isdigit():
        raise argparse.ArgumentTypeError(f"rate of {client_id} must be a whole number")
    return RegisteredClient(
        client_id=client_id,
        client_secret=secret,
        name=name,
        rate_limit=int(rate) if rate else None,
    )


def config_from_args(ns: argparse.Namespace) -> EmulatorConfig:
    """Build a validated config from parsed arguments; raises ValueError with a one-line reason."""
    return EmulatorConfig(
        beneficiaries=ns.beneficiaries,
        claims_per_beneficiary=ns.claims_per_beneficiary,
        token_lifetime=ns.token_lifetime,
        code_lifetime=ns.code_lifetime,
        rate_limit=ns.rate_limit,
        rate_burst=ns.rate_burst,
        edge_rate=ns.edge_rate,
        edge_retry_after=ns.edge_retry_after,
        backend_cost=ns.backend_cost,
        part_d_share=ns.part_d_share,
        fault_rate=ns.fault_rate,
        drop_rate=ns.drop_rate,
        slow_rate=ns.slow_rate,
        slow_seconds=ns.slow_seconds,
        fault_seed=ns.fault_seed,
        clients=(RegisteredClient(grant_type=ns.grant_type), *ns.client),
    )
