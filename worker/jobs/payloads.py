"""Job payloads: validated before any work, so a bad one fails once with a clear reason.

The JSON schemas in ``schemas/jobs/`` are generated from these models (``make schemas``)
for upstream services that enqueue jobs in other languages.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar, Final, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from worker.apps import APP_NAME_PATTERN, DEFAULT_APP
from worker.constants import (
    EXCHANGE_PAYLOAD_GRACE_SECONDS,
    JOB_CONNECT,
    JOB_EXCHANGE,
    JOB_FIRST_SYNC,
    JOB_RESYNC,
    JOB_UNLINK,
)
from worker.errors import InvalidJob
from worker.runtime.lanes import BULK, EXCHANGE, INTERACTIVE, Lane
from worker.settings import is_loopback_host

ConnectionId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$",
        description="The upstream's id of the connection.",
    ),
]
MAX_URI_LENGTH: Final = 2048
VERIFIER_PATTERN: Final = r"^[!-~]+$"
# A code lives 60 s at CMS (FACTS.md, Authorization: django-oauth-toolkit's default).
CMS_CODE_LIFETIME_SECONDS: Final = 60


def code_fingerprint(code: str) -> str:
    """sha256 of an authorization code: lets a redelivered job recognise a spent code."""
    return hashlib.sha256(code.encode()).hexdigest()


class JobPayload(BaseModel):
    """Base of every payload: strict types, no unknown keys, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    job_name: ClassVar[str]
    lane: ClassVar[Lane] = INTERACTIVE  # where the job is queued unless told otherwise

    connection_id: ConnectionId

    def job_id(self) -> str:
        """A stable arq job id: a repeated event collapses into the job already queued."""
        return f"{self.job_name}:{self.connection_id}"

    def payload_ttl(self) -> float | None:
        """Seconds the queued job (its arguments) may stay in Redis; None: arq's day."""
        return None


class ConnectJob(JobPayload):
    """``connect(connection_id, code, code_verifier, redirect_uri, app="default")``."""

    job_name = JOB_CONNECT
    code: str = Field(min_length=1, max_length=512, repr=False)
    # CMS checks a verifier only by hashing it (FACTS.md, Authorization): its own SDK sends
    # 44 characters ending in '='. Accepted: RFC 7636's lengths, printable ASCII, no spaces.
    code_verifier: str = Field(min_length=43, max_length=128, pattern=VERIFIER_PATTERN, repr=False)
    redirect_uri: str = Field(min_length=1, max_length=MAX_URI_LENGTH)
    app: str = Field(
        DEFAULT_APP,
        max_length=63,
        pattern=APP_NAME_PATTERN,
        description="The app whose client issued the code (bbingest apps list);"
        " 'default' is the one the BB_* settings configure.",
    )

    @field_validator("redirect_uri")
    @classmethod
    def _absolute_uri(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("must be an absolute http(s) URI")
        if parts.scheme == "http" and not is_loopback_host(parts.hostname):
            raise ValueError("http:// is allowed only for loopback hosts")
        return value

    def job_id(self) -> str:
        """Includes the code's fingerprint: a new authorization is a new job."""
        return f"{super().job_id()}:{code_fingerprint(self.code)[:16]}"


class ExchangeJob(ConnectJob):
    """``exchange(connection_id, code, code_verifier, redirect_uri, app, received_at)``: the
    code exchange alone, in its own lane; the first sync follows as its own job."""

    job_name = JOB_EXCHANGE
    lane = EXCHANGE
    received_at: float | None = Field(
        None,
        gt=0,
        description="When the event arrived (Unix seconds): the code's age counts from it;"
        " absent: from the job's enqueue time.",
    )

    def payload_ttl(self) -> float:
        """The code and verifier leave Redis a few minutes after the code died."""
        return CMS_CODE_LIFETIME_SECONDS + EXCHANGE_PAYLOAD_GRACE_SECONDS


class FirstSyncJob(JobPayload):
    """``first_sync(connection_id)``: fetch everything after a code exchange."""

    job_name = JOB_FIRST_SYNC


class UnlinkJob(JobPayload):
    """``unlink(connection_id, purge=False)``."""

    job_name = JOB_UNLINK
    purge: bool = Field(
        False,
        description="A retention purge (the nightly run, bbingest purge): unlinks only a"
        " connection still in needs_reauth or error past DORMANT_/ERROR_RETENTION_DAYS when"
        " it runs. An upstream's unlink leaves it false: it unlinks whatever the status.",
    )

    def job_id(self) -> str:
        """A purge's own id: an upstream's unlink must not collapse into a purge that a
        re-consent may since have made void."""
        return f"{super().job_id()}:purge" if self.purge else super().job_id()


class RevocationRetryJob(UnlinkJob):
    """The nightly retry of a revocation CMS still owes for an unlinked connection: the same
    ``unlink`` job and arguments under an id of its own, ``unlink:<id>:retry``. Under a
    person's id it would swallow their unlink asked after a relink (arq drops a job whose
    id is queued), and then, seeing the relink, do nothing: their data would stay."""

    def job_id(self) -> str:
        """Neither an upstream's unlink id nor a purge's."""
        return f"{JobPayload.job_id(self)}:retry"


class ResyncJob(JobPayload):
    """``resync(connection_id)``."""

    job_name = JOB_RESYNC
    lane = BULK


Payload = TypeVar("Payload", bound=JobPayload)


def _describe_errors(error: ValidationError) -> str:
    """A one-line reason naming each bad field, never echoing the (secret) value."""
    reasons = []
    for item in error.errors(include_input=False, include_url=False):
        field = ".".join(str(part) for part in item["loc"]) or "payload"
        reasons.append(f"{field}: {item['msg']}")
    return "; ".join(reasons)


def parse_payload(model: type[Payload], args: Sequence[Any], kwargs: Mapping[str, Any]) -> Payload:
    """Bind positional and keyword job arguments to ``model``; InvalidJob when they do not fit."""
    fields = list(model.model_fields)
    if len(args) > len(fields):
        raise InvalidJob(f"{len(args)} positional arguments, at most {len(fields)} expected")
    data = dict(zip(fields, args, strict=False))
    duplicated = data.keys() & kwargs.keys()
    if duplicated:
        raise InvalidJob(f"argument given twice: {', '.join(sorted(duplicated))}")
    try:
        return model.model_validate({**data, **kwargs})
    except ValidationError as exc:
        raise InvalidJob(f"invalid {model.__name__} payload: {_describe_errors(exc)}") from None
