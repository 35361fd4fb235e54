"""Access and refresh token life: expiry, rotation, revocation, grant lapses."""

import pytest

from tests.emulator.support import CLIENT, ME, Harness, MakeHarness
from worker.emulator.config import EmulatorConfig, RegisteredClient

TIMED_OUT = (
    "User access has timed out. To refresh Medicare data, end user must re-authenticate "
    "and consent to share their data."
)


async def test_refresh_rotates_and_kills_the_old_pair(harness: Harness) -> None:
    old = await harness.tokens()
    refreshed = await harness.refresh(old["refresh_token"])
    new = refreshed.json()
    reused = await harness.refresh(old["refresh_token"])
    assert refreshed.status_code == 200
    assert new["refresh_token"] != old["refresh_token"]
    assert new["access_grant_expiration"] == old["access_grant_expiration"]
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    assert (await harness.fhir(f"Patient/{ME}", old["access_token"])).status_code == 401
    assert (await harness.fhir(f"Patient/{ME}", new["access_token"])).status_code == 200
    assert (await harness.refresh(new["refresh_token"])).status_code == 200


async def test_access_token_expires_after_its_lifetime(harness: Harness) -> None:
    token = (await harness.tokens())["access_token"]
    harness.clock.advance(3599)
    assert (await harness.fhir("ExplanationOfBenefit", token)).status_code == 200
    harness.clock.advance(1)
    expired = await harness.fhir("ExplanationOfBenefit", token)
    assert expired.status_code == 401
    assert expired.json() == {"detail": "Authentication credentials were not provided."}


async def test_token_lifetime_comes_from_the_config(make_harness: MakeHarness) -> None:
    harness = await make_harness(EmulatorConfig(token_lifetime=60))
    body = await harness.tokens()
    harness.clock.advance(60)
    assert body["expires_in"] == 60
    assert (await harness.fhir("Coverage", body["access_token"])).status_code == 401


async def test_missing_or_unknown_bearer_is_401(harness: Harness) -> None:
    missing = await harness.http.get("/v2/fhir/ExplanationOfBenefit")
    unknown = await harness.fhir("ExplanationOfBenefit", "not-a-token")
    assert missing.status_code == unknown.status_code == 401


async def test_token_in_the_query_string_is_400(harness: Harness) -> None:
    token = (await harness.tokens())["access_token"]
    response = await harness.http.get(
        "/v2/fhir/ExplanationOfBenefit", params={"access_token": token}
    )
    assert response.status_code == 400
    assert "detail" in response.json()


async def test_lapsed_grant_answers_401_timed_out_on_fhir_and_refresh(harness: Harness) -> None:
    tokens = await harness.tokens()
    lapse = await harness.http.post("/_emulator/grants/lapse", json={"patient_id": ME})
    fhir = await harness.fhir("ExplanationOfBenefit", tokens["access_token"])
    refresh = await harness.refresh(tokens["refresh_token"])
    assert lapse.json()["grants"] == 1
    assert fhir.status_code == 401
    assert fhir.json() == {"detail": TIMED_OUT}
    assert refresh.status_code == 401
    assert refresh.json() == {
        "status_code": 401,
        "error": "invalid_grant",
        "error_description": TIMED_OUT,
    }


async def test_grant_lapses_by_itself_after_thirteen_months(harness: Harness) -> None:
    tokens = await harness.tokens()
    harness.clock.advance(396 * 86400)
    assert (await harness.refresh(tokens["refresh_token"])).status_code == 401


async def test_one_time_apps_cannot_refresh(make_harness: MakeHarness) -> None:
    harness = await make_harness(EmulatorConfig(clients=(RegisteredClient(grant_type="ONE_TIME"),)))
    tokens = await harness.tokens()
    response = await harness.refresh(tokens["refresh_token"])
    assert response.status_code == 403
    assert response.json()["error"] == "invalid_client"


async def test_unsupported_grant_type_is_400(harness: Harness) -> None:
    response = await harness.http.post(
        "/v2/o/token/", data={"grant_type": "client_credentials"}, auth=CLIENT
    )
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


@pytest.mark.parametrize("after", [0, 3])
async def test_tokens_expire_after_a_set_number_of_requests(harness: Harness, after: int) -> None:
    tokens = await harness.tokens()
    scheduled = await harness.http.post(
        "/_emulator/tokens/expire", json={"patient_id": ME, "after_requests": after}
    )
    statuses = [
        (await harness.fhir("ExplanationOfBenefit", tokens["access_token"])).status_code
        for _ in range(after + 1)
    ]
    assert scheduled.json()["tokens"] == 1
    assert statuses == [200] * after + [401]
    refreshed = (await harness.refresh(tokens["refresh_token"])).json()
    assert (await harness.fhir("Coverage", refreshed["access_token"])).status_code == 200


async def test_userinfo_needs_the_profile_scope(harness: Harness) -> None:
    shared = await harness.tokens()
    headers = {"Authorization": f"Bearer {shared['access_token']}"}
    info = await harness.http.get("/v2/connect/userinfo", headers=headers)
    withheld = await harness.tokens(share=False)  # a re-consent: the shared token dies
    headers = {"Authorization": f"Bearer {withheld['access_token']}"}
    refused = await harness.http.get("/v2/connect/userinfo", headers=headers)
    assert info.status_code == 200
    assert set(info.json()) == {
        "sub",
        "name",
        "given_name",
        "family_name",
        "email",
        "iat",
        "patient",
    }
    assert info.json()["patient"] == info.json()["sub"] == ME
    assert refused.status_code == 403
