from pathlib import Path

import pytest

from worker.errors import InvalidJob
from worker.jobs.payloads import ConnectJob, UnlinkJob, parse_payload
from worker.jobs.schemas import PAYLOADS, render

VERIFIER = "v" * 64
GOOD = {
    "connection_id": "conn-1",
    "code": "secret-code-123",
    "code_verifier": VERIFIER,
    "redirect_uri": "http://localhost:3000/api/auth/smart/callback",
}


def test_keyword_and_positional_payloads_bind() -> None:
    by_name = parse_payload(ConnectJob, (), GOOD)
    by_position = parse_payload(ConnectJob, tuple(GOOD.values()), {})
    assert by_name == by_position
    assert by_name.connection_id == "conn-1"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"code": None}, "code"),
        ({"connection_id": ""}, "connection_id"),
        ({"connection_id": "x; DROP TABLE connections"}, "connection_id"),
        ({"connection_id": "$(rm -rf /)"}, "connection_id"),
        ({"connection_id": "a" * 129}, "connection_id"),
        ({"code_verifier": "short"}, "code_verifier"),
        ({"code_verifier": "a" * 43 + " "}, "code_verifier"),  # a space: never printable ASCII
        ({"code_verifier": "a" * 43 + "\u00e9"}, "code_verifier"),  # not ASCII
        ({"code_verifier": "a" * 129}, "code_verifier"),
        ({"redirect_uri": "ftp://x/cb"}, "redirect_uri"),
        ({"redirect_uri": "http://example.com/cb"}, "redirect_uri"),
        ({"connection_id": 42}, "connection_id"),
        ({"extra": "field"}, "extra"),
    ],
)
def test_bad_payloads_name_the_field(change: dict[str, object], reason: str) -> None:
    payload = {**GOOD, **change}
    if change.get("code", "") is None:
        del payload["code"]
    with pytest.raises(InvalidJob, match=reason):
        parse_payload(ConnectJob, (), payload)


def test_errors_never_echo_secret_values() -> None:
    with pytest.raises(InvalidJob) as caught:
        parse_payload(
            ConnectJob, (), {**GOOD, "code": "SECRETCODE" * 60, "code_verifier": "s3cr3t"}
        )
    message = str(caught.value)
    # pydantic would shorten a long value rather than drop it: look for any part of it.
    assert "SECRETCODE" not in message
    assert "s3cr3t" not in message
    assert "input_value" not in message
    assert "code: String should have at most 512 characters" in message
    assert "secret-code-123" not in repr(parse_payload(ConnectJob, (), GOOD))


def test_too_many_or_doubled_arguments() -> None:
    with pytest.raises(InvalidJob, match="positional"):
        parse_payload(UnlinkJob, ("a", False, "c"), {})
    with pytest.raises(InvalidJob, match="twice"):
        parse_payload(UnlinkJob, ("a",), {"connection_id": "a"})


@pytest.mark.parametrize("job", sorted(PAYLOADS))
def test_schema_files_are_current(job: str) -> None:
    path = Path(__file__).resolve().parents[2] / "schemas" / "jobs" / f"{job}.schema.json"
    assert path.read_bytes() == render(job), "run `make schemas`"


def test_the_cms_sdk_verifier_is_accepted() -> None:
    # cms-bluebutton-sdk's generate_auth_data: 32 random bytes, base64 with padding, 44
    # characters ending in '='; CMS accepts it (it only hashes the verifier).
    sdk_verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk="
    job = parse_payload(ConnectJob, (), {**GOOD, "code_verifier": sdk_verifier})
    assert job.code_verifier == sdk_verifier
