"""Each job declared once: the worker's lanes, the schemas and the intake's routes all
come from the job specs."""

from __future__ import annotations

from worker.cli import build_parser
from worker.intake.models import EVENT_KINDS
from worker.jobs.payloads import JobPayload
from worker.jobs.schemas import PAYLOADS
from worker.jobs.spec import SPECS
from worker.jobs.worker import LANES
from worker.runtime import lanes


def _payload_models(root: type[JobPayload]) -> set[type[JobPayload]]:
    return {sub for cls in root.__subclasses__() for sub in {cls, *_payload_models(cls)}}


def test_every_job_payload_has_one_spec() -> None:
    jobs = {model for model in _payload_models(JobPayload) if "job_name" in vars(model)}
    assert jobs == {spec.payload for spec in SPECS}
    assert len({spec.name for spec in SPECS}) == len(SPECS)


def test_the_worker_lanes_run_what_the_specs_say() -> None:
    served = {queue: sorted(f.name for f in functions) for queue, functions in LANES.items()}
    assert served == {
        lanes.EXCHANGE.queue: ["exchange"],
        lanes.INTERACTIVE.queue: ["connect", "first_sync", "unlink"],
        lanes.BULK.queue: ["resync", "unlink"],
    }
    exchange = next(f for f in LANES[lanes.EXCHANGE.queue] if f.name == "exchange")
    spec = next(spec for spec in SPECS if spec.name == "exchange")
    assert (exchange.max_tries, exchange.timeout_s) == (spec.tries, spec.timeout)


def test_schemas_and_event_routes_come_from_the_specs() -> None:
    assert {spec.name: spec.payload for spec in SPECS} == PAYLOADS
    routes = {kind.name: kind.job_model.job_name for kind in EVENT_KINDS}
    assert routes == {"connect": "exchange", "unlink": "unlink", "resync": "resync"}


def test_the_cli_queues_the_job_of_each_event_kind() -> None:
    parser = build_parser()
    queued = {
        "connect": parser.parse_args(["enqueue", "connect", "c1", "--redirect-uri", "https://x"]),
        "unlink": parser.parse_args(["enqueue", "unlink", "c1"]),
        "resync": parser.parse_args(["enqueue", "resync", "--all"]),
    }
    assert {kind: args.payload for kind, args in queued.items()} == {
        kind.name: kind.job_model for kind in EVENT_KINDS
    }
