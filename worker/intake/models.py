"""What the intake API accepts and answers, as pydantic models: they validate the requests,
shape the answers, and generate the OpenAPI schemas, so the three cannot drift apart."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from worker.jobs.payloads import ConnectJob, JobPayload, ResyncJob
from worker.jobs.spec import SPECS

EventId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="The upstream's unique id of this event: a repeat is answered as a duplicate.",
    ),
]


# An event is its job's payload plus an event id (same strictness: no unknown keys).
class ConnectEvent(ConnectJob):
    """A beneficiary authorized the app: exchange the code (within its minute) and fetch
    everything."""

    event_id: EventId


# Not an UnlinkJob: an upstream's unlink is never a retention purge (it has no ``purge``).
class UnlinkEvent(JobPayload):
    """The beneficiary unlinked the app: revoke at CMS and delete everything stored."""

    event_id: EventId


class ResyncEvent(ResyncJob):
    """Fetch what changed since the connection's last successful sync."""

    event_id: EventId


@dataclass(frozen=True)
class EventKind:
    """One kind of event: its route name, the body it accepts, and the job it queues."""

    name: str
    event_model: type[JobPayload]
    job_model: type[JobPayload]

    @property
    def path(self) -> str:
        """The route that accepts this kind of event."""
        return f"/v1/events/{self.name}"

    def parse(self, data: Any) -> tuple[str, JobPayload]:
        """The event id and the job of a decoded body; pydantic's ValidationError when invalid."""
        fields = self.event_model.model_validate(data).model_dump()
        event_id = str(fields.pop("event_id"))
        return event_id, self.job_model.model_validate(fields)


_EVENT_MODELS: dict[str, type[JobPayload]] = {
    "connect": ConnectEvent,
    "unlink": UnlinkEvent,
    "resync": ResyncEvent,
}
# Each job spec that names an event kind (worker.jobs.spec) gets a route.
EVENT_KINDS: tuple[EventKind, ...] = tuple(
    EventKind(spec.event, _EVENT_MODELS[spec.event], spec.payload)
    for spec in SPECS
    if spec.event is not None
)


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Queued(_Answer):
    """The event's job is queued (or merged into the identical job already queued)."""

    status: Literal["queued"] = "queued"
    job_id: str = Field(description="The stable arq job id, e.g. unlink:<connection_id>.")


class Duplicate(_Answer):
    """This event id was seen within the last 7 days; nothing was queued."""

    status: Literal["duplicate"] = "duplicate"


class ErrorBody(_Answer):
    """Any refusal: what was wrong, never the values that were sent."""

    error: str


class FieldError(_Answer):
    """One invalid field of a request body."""

    field: str = Field(description="Dotted path of the field; 'body' for the whole body.")
    message: str


class InvalidPayload(_Answer):
    """A well-formed JSON body whose fields do not validate."""

    error: Literal["invalid payload"] = "invalid payload"
    fields: list[FieldError]


class ConnectionStatusBody(_Answer):
    """A connection as ``bbingest status --json`` shows it (no tokens)."""

    connection_id: str
    app: str
    environment: Literal["sandbox", "production"] | None = Field(
        description="The environment of the client that issued the connection's tokens."
    )
    status: Literal["pending", "active", "needs_reauth", "revoked", "error"]
    patient_id: str | None
    scopes: list[str]
    counts: dict[str, int] = Field(description="Stored resources per FHIR resource type.")
    last_synced_at: str | None = Field(description="ISO 8601")
    consent_expires_at: str | None = Field(description="ISO 8601")
    last_error: str | None


class Health(_Answer):
    """Each dependency's state: "ok" or the kind of failure."""

    redis: str
    postgres: str
