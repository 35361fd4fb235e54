"""Property-based tests: whatever arrives, parsing answers with a result or our own error."""

from __future__ import annotations

import string
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.bluebutton.bundle import parse_read, parse_search_page
from worker.errors import InvalidJob, ProtocolError
from worker.jobs.payloads import ConnectJob, UnlinkJob, parse_payload

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
ids = st.text(alphabet=string.ascii_letters + string.digits + "._:@-", min_size=1, max_size=128)


@given(st.dictionaries(st.text(max_size=20), json_values, max_size=6))
def test_any_payload_is_accepted_or_refused_with_invalid_job(payload: dict[str, Any]) -> None:
    try:
        job = parse_payload(ConnectJob, (), payload)
    except InvalidJob as exc:
        message = str(exc)
    else:
        assert job.model_dump() == payload
        return
    assert message.startswith("invalid ConnectJob payload")


GOOD = {
    "connection_id": "conn-1",
    "code": "a-code",
    "code_verifier": "v" * 43,
    "redirect_uri": "https://app.example.com/callback",
    "app": "acme",
}


@given(st.dictionaries(st.sampled_from([*GOOD, "extra"]), json_values, max_size=3))
def test_a_good_payload_with_fields_changed_names_only_changed_fields(
    changes: dict[str, Any],
) -> None:
    # Starting from a valid payload, both outcomes happen: a change that keeps a field valid
    # is accepted; a refusal names changed fields only, never one that was good.
    payload = {**GOOD, **changes}
    try:
        job = parse_payload(ConnectJob, (), payload)
    except InvalidJob as exc:
        named = {field for field in [*GOOD, "extra"] if f"{field}: " in str(exc)}
        assert named
        assert named <= set(changes)
    else:
        assert job.model_dump() == payload


@given(st.lists(json_values, max_size=6))
def test_any_positional_arguments_are_accepted_or_refused(args: list[Any]) -> None:
    try:
        job = parse_payload(UnlinkJob, args, {})
    except InvalidJob:
        return
    assert job.connection_id == args[0]


@given(ids.filter(lambda i: i[0].isalnum()))
def test_every_well_formed_id_is_accepted(connection_id: str) -> None:
    assert parse_payload(UnlinkJob, (), {"connection_id": connection_id}).job_id() == (
        f"unlink:{connection_id}"
    )


@given(st.binary(max_size=200) | json_values.map(orjson.dumps))
@settings(max_examples=300)
def test_any_answer_parses_or_is_a_protocol_error(body: bytes) -> None:
    for parse in (parse_search_page, parse_read):
        try:
            page = parse(body, "u", "ExplanationOfBenefit", "-1")
        except ProtocolError:
            continue
        assert all(r["resourceType"] == "ExplanationOfBenefit" for r in page.resources)


eob = st.fixed_dictionaries(
    {
        "resourceType": st.just("ExplanationOfBenefit"),
        "id": ids,
        "meta": st.fixed_dictionaries({"lastUpdated": st.just("2024-01-01T00:00:00+00:00")}),
        "patient": st.fixed_dictionaries(
            {"reference": st.sampled_from(["Patient/-1", "Patient/-2"])}
        ),
    }
)


@given(st.lists(eob, max_size=8))
def test_a_page_is_stored_whole_only_when_every_claim_is_the_patients(entries: list[Any]) -> None:
    body = orjson.dumps(
        {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": e} for e in entries]}
    )
    foreign = any(e["patient"]["reference"] != "Patient/-1" for e in entries)
    try:
        page = parse_search_page(body, "u", "ExplanationOfBenefit", "-1")
    except ProtocolError:
        assert foreign
        return
    assert not foreign
    assert len(page.resources) == len(entries)
