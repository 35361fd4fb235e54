"""Rate limiting, request statistics, and the admin API."""

import argparse
from dataclasses import replace

import httpx
import pytest

from tests.emulator.support import ACME, CLIENT, ME, Harness, MakeHarness
from worker.emulator.config import EmulatorConfig, RegisteredClient, parse_client


async def test_rate_limit_answers_429_with_retry_after(make_harness: MakeHarness) -> None:
    harness = await make_harness(EmulatorConfig(rate_limit=5))
    token = (await harness.tokens())["access_token"]  # the token call is counted too
    harness.clock.advance(1)
    statuses = []
    for _ in range(6):
        statuses.append((await harness.fhir("Coverage", token)).status_code)
        harness.clock.advance(0.1)
    throttled = await harness.fhir("Coverage", token)
    harness.clock.advance(0.5)
    after_window = await harness.fhir("Coverage", token)
    assert statuses == [200] * 5 + [429]
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "1"
    assert throttled.json()["detail"].startswith("Request was throttled. Expected available in")
    # The edge's 429 announces no limit; BB2's own headers are per token (FACTS "Errors
    # and limits").
    assert "X-RateLimit-Limit" not in throttled.headers
    assert after_window.status_code == 200
    stats = (await harness.http.get("/_emulator/stats")).json()
    assert stats["by_status"]["429"] == 2


async def test_the_edge_refuses_bare_below_the_app_limit_and_changes_at_run_time(
    make_harness: MakeHarness,
) -> None:
    harness = await make_harness(EmulatorConfig(rate_limit=10, edge_rate=3))
    token = (await harness.tokens())["access_token"]  # counted by the edge too
    harness.clock.advance(1)
    statuses = []
    for _ in range(4):
        statuses.append((await harness.fhir("Coverage", token)).status_code)
        harness.clock.advance(0.1)
    refused = await harness.fhir("Coverage", token)
    assert statuses == [200, 200, 200, 429]
    # FACTS "Errors and limits": the edge's text, no Retry-After, no X-RateLimit-* headers.
    assert refused.status_code == 429
    assert refused.text == "Assembly Rate Limit exceeded"
    assert "Retry-After" not in refused.headers
    assert "X-RateLimit-Limit" not in refused.headers
    answer = await harness.http.post("/_emulator/edge/rate", json={"rate": 5, "retry_after": True})
    assert answer.json() == {"rate": 5, "retry_after": True}
    harness.clock.advance(1)
    statuses = [(await harness.fhir("Coverage", token)).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    assert (await harness.fhir("Coverage", token)).headers["Retry-After"] == "1"
    stats = (await harness.http.get("/_emulator/stats")).json()
    assert sum(stats["throttled_by_second"].values()) == stats["by_status"]["429"] == 4
    await harness.http.post("/_emulator/edge/rate", json={"rate": None})
    statuses = [(await harness.fhir("Coverage", token)).status_code for _ in range(10)]
    assert statuses == [200] * 5 + [429] * 5  # the app's own limit of 10 remains


async def test_a_bad_edge_rate_is_refused(harness: Harness) -> None:
    answer = await harness.http.post("/_emulator/edge/rate", json={"rate": 0})
    assert answer.status_code == 400


async def test_burst_raises_the_ceiling(make_harness: MakeHarness) -> None:
    harness = await make_harness(EmulatorConfig(rate_limit=2, rate_burst=2))
    token = (await harness.tokens())["access_token"]
    harness.clock.advance(1)
    statuses = [(await harness.fhir("Coverage", token)).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]


async def test_token_endpoint_is_rate_limited_per_client(make_harness: MakeHarness) -> None:
    harness = await make_harness(EmulatorConfig(rate_limit=1))
    tokens = await harness.tokens()
    harness.clock.advance(1)
    first = await harness.refresh(tokens["refresh_token"])
    second = await harness.refresh(first.json()["refresh_token"])
    assert first.status_code == 200
    assert second.status_code == 429
    assert int(second.headers["Retry-After"]) >= 1


async def test_no_limit_when_not_configured(harness: Harness) -> None:
    token = (await harness.tokens())["access_token"]
    statuses = {(await harness.fhir("Coverage", token)).status_code for _ in range(30)}
    assert statuses == {200}


async def test_stats_count_by_endpoint_status_client_and_second(harness: Harness) -> None:
    token = (await harness.tokens())["access_token"]
    await harness.http.post("/_emulator/stats/reset")
    await harness.fhir("ExplanationOfBenefit", token)
    await harness.fhir("ExplanationOfBenefit", token)
    harness.clock.advance(1)
    await harness.fhir(f"Patient/{ME}", token)
    await harness.fhir("ExplanationOfBenefit/nope", token)
    await harness.http.post("/v2/o/token/", data={"grant_type": "x"}, auth=("bad", "client"))
    stats = (await harness.http.get("/_emulator/stats")).json()
    second = int(harness.clock.now)
    assert stats["total"] == 5
    assert stats["by_endpoint"] == {"eob_search": 2, "patient_read": 1, "eob_read": 1, "token": 1}
    assert stats["by_status"] == {"200": 3, "404": 1, "401": 1}
    assert stats["by_client"] == {CLIENT[0]: 4, "bad": 1}
    assert stats["by_second"] == {str(second - 1): 2, str(second): 3}
    assert stats["max_per_second"] == 3


async def test_stats_are_also_a_method_of_the_state(harness: Harness) -> None:
    await harness.http.get("/v2/fhir/metadata")
    over_http = (await harness.http.get("/_emulator/stats")).json()
    assert over_http["by_endpoint"] == {"metadata": 1}
    assert over_http == harness.state.stats()


async def test_beneficiaries_listing(make_harness: MakeHarness) -> None:
    harness = await make_harness(EmulatorConfig(beneficiaries=40))
    everyone = (await harness.http.get("/_emulator/beneficiaries")).json()
    some = (await harness.http.get("/_emulator/beneficiaries", params={"limit": 2})).json()
    assert len(everyone) == 40
    assert some == [
        {
            "username": "BBUser00000",
            "password": "PW00000!",
            "patient_id": "-19990000000001",
            "eob_count": 52,
        },
        {
            "username": "BBUser00001",
            "password": "PW00001!",
            "patient_id": "-19990000000002",
            "eob_count": 50,
        },
    ]


async def test_touched_claims_show_up_in_a_last_updated_search(harness: Harness) -> None:
    token = (await harness.tokens())["access_token"]
    since = "gt2026-01-01T00:00:00+00:00"
    before = (await harness.fhir("ExplanationOfBenefit", token, _lastUpdated=since)).json()
    touched = await harness.http.post(
        "/_emulator/claims/touch", json={"patient_id": ME, "count": 3}
    )
    after = (await harness.fhir("ExplanationOfBenefit", token, _lastUpdated=since)).json()
    assert before["total"] == 0
    assert after["total"] == 3
    assert {entry["resource"]["id"] for entry in after["entry"]} == set(touched.json()["touched"])


async def test_added_and_removed_claims_change_the_search(harness: Harness) -> None:
    token = (await harness.tokens())["access_token"]
    added = await harness.http.post(
        "/_emulator/claims/add", json={"patient_id": ME, "claim_type": "hospice"}
    )
    new_id = added.json()["added"]
    read = await harness.fhir(f"ExplanationOfBenefit/{new_id}", token)
    removed = await harness.http.post(
        "/_emulator/claims/remove", json={"patient_id": ME, "eob_id": new_id}
    )
    gone = await harness.fhir(f"ExplanationOfBenefit/{new_id}", token)
    total = (await harness.fhir("ExplanationOfBenefit", token, _count=0)).json()["total"]
    assert new_id.startswith("hospice--")
    assert read.status_code == 200
    assert removed.status_code == 200
    assert gone.status_code == 404
    assert total == 52


async def test_admin_rejects_bad_input(harness: Harness) -> None:
    unknown = await harness.http.post("/_emulator/claims/touch", json={"patient_id": "-1"})
    bad_type = await harness.http.post(
        "/_emulator/claims/add", json={"patient_id": ME, "claim_type": "dental"}
    )
    not_json = await harness.http.post("/_emulator/grants/lapse", content=b"[1")
    missing = await harness.http.post(
        "/_emulator/claims/remove", json={"patient_id": ME, "eob_id": "carrier--1"}
    )
    assert unknown.status_code == 404
    assert bad_type.status_code == not_json.status_code == missing.status_code == 400


async def test_injected_faults_fail_the_next_fhir_requests(harness: Harness) -> None:
    token = (await harness.tokens())["access_token"]
    await harness.http.post("/_emulator/faults", json={"status": 502, "count": 2})
    statuses = [(await harness.fhir("Coverage", token)).status_code for _ in range(3)]
    assert statuses == [502, 502, 200]


async def test_each_registered_app_has_its_own_limit(
    make_harness: MakeHarness,
) -> None:
    acme = replace(ACME, rate_limit=4)
    harness = await make_harness(EmulatorConfig(rate_limit=2, clients=(RegisteredClient(), acme)))
    acme_token = (await harness.tokens(client=acme))["access_token"]
    own_token = (await harness.tokens("BBUser00001"))["access_token"]
    harness.clock.advance(1)
    acme = [(await harness.fhir("Coverage", acme_token)).status_code for _ in range(5)]
    own = [(await harness.fhir("Coverage", own_token)).status_code for _ in range(3)]
    assert acme == [200] * 4 + [429]  # acme's own limit, untouched by the other app
    assert own == [200, 200, 429]
    harness.clock.advance(1)
    limit = (await harness.fhir("Coverage", own_token)).headers["X-RateLimit-Limit"]
    assert limit == "100000"  # CMS announces no per-app limit (FACTS "Errors and limits")


async def test_the_consent_page_shows_the_name_of_the_app_asking(make_harness: MakeHarness) -> None:
    harness = await make_harness(EmulatorConfig(clients=(RegisteredClient(), ACME)))
    pages = [
        await consent_page(harness, client_id) for client_id in ("emulator-client", ACME.client_id)
    ]
    assert "bluebutton-ingest demo" in pages[0]
    assert "Acme Health" in pages[1]
    assert "Acme Health" not in pages[0]


async def consent_page(harness: Harness, client_id: str) -> str:
    """The consent page a beneficiary sees when ``client_id`` asks for access."""
    seen: list[str] = []

    async def keep(response: httpx.Response) -> None:
        await response.aread()
        seen.append(response.text)

    harness.http.event_hooks["response"].append(keep)
    try:
        await harness.code(client_id=client_id)
    finally:
        harness.http.event_hooks["response"].remove(keep)
    return next(page for page in seen if "wants to access your Medicare claims" in page)


def test_apps_are_registered_on_the_command_line() -> None:
    client = parse_client("acme-client:acme-secret:4:Acme: Health")
    assert client == RegisteredClient(
        client_id="acme-client", client_secret="acme-secret", name="Acme: Health", rate_limit=4
    )
    assert parse_client("b:s::B").rate_limit is None
    for bad in ("acme", "a:s:x:Name", ":s:1:Name", "a:s:1:"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_client(bad)
