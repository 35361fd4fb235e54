"""/v2/o/revoke/ and /v2/o/revoke_token/ as FACTS.md "Revocation" describes them, deleted
grants (FACTS "Authorization": "Deleted grant ... revokes every token of it"), and what the
emulator lists for a beneficiary.
"""

from typing import Any

import httpx

from tests.emulator.support import ACME, CLIENT, ME, Harness, MakeHarness
from worker.emulator.config import EmulatorConfig, RegisteredClient

NOT_AUTHENTICATED = {"detail": "Authentication credentials were not provided."}
GRANT_NOT_FOUND = (
    "User access cannot be found. To refresh Medicare data, end user must re-authenticate "
    "and consent to share their data."
)


async def revoke(harness: Harness, path: str, token: str, **fields: str) -> httpx.Response:
    """POST a token to a revocation endpoint with HTTP Basic client credentials."""
    return await harness.http.post(f"/v2/o/{path}/", data={"token": token, **fields}, auth=CLIENT)


async def grants(harness: Harness, patient_id: str = ME) -> list[dict[str, Any]]:
    """What CMS holds for this beneficiary, from the admin API."""
    listed = await harness.http.get("/_emulator/grants", params={"patient_id": patient_id})
    found: list[dict[str, Any]] = listed.json()["grants"]
    return found


async def test_revoke_with_an_access_token_ends_the_grant_and_every_token(
    harness: Harness,
) -> None:
    # FACTS "Revocation": a live access token deletes the (beneficiary, app) grant, which
    # revokes every token of it. Two connections of the same person share that grant.
    first = await harness.tokens()
    before = await grants(harness)
    response = await revoke(harness, "revoke", first["access_token"])
    assert before == [
        {
            "client_id": CLIENT[0],
            "patient_id": ME,
            "grant": True,
            "live_access_tokens": 1,
            "live_refresh_tokens": 1,
        }
    ]
    assert response.status_code == 200
    assert await grants(harness) == []
    fhir = await harness.fhir("Coverage", first["access_token"])
    assert fhir.status_code == 401
    assert fhir.json() == NOT_AUTHENTICATED
    refresh = await harness.refresh(first["refresh_token"])
    # FACTS "Authorization": a deleted grant's refresh is 403 invalid_grant "... cannot be found".
    assert refresh.status_code == 403
    assert refresh.json() == {
        "status_code": 403,
        "error": "invalid_grant",
        "error_description": GRANT_NOT_FOUND,
    }


async def test_an_expired_access_token_still_ends_the_grant(harness: Harness) -> None:
    # FACTS "Revocation": "an expired one still counts".
    tokens = await harness.tokens()
    harness.clock.advance(3600)
    assert (await harness.fhir("Coverage", tokens["access_token"])).status_code == 401
    response = await revoke(harness, "revoke", tokens["access_token"])
    assert response.status_code == 200
    assert await grants(harness) == []


async def test_a_retried_revoke_is_a_500(harness: Harness) -> None:
    # FACTS "Revocation": "including one this very call already revoked ... 500".
    tokens = await harness.tokens()
    first = await revoke(harness, "revoke", tokens["access_token"])
    retry = await revoke(harness, "revoke", tokens["access_token"])
    assert first.status_code == 200
    assert retry.status_code == 500
    assert retry.json() == {"error": "Server Error (500)"}  # DRF's handler500
    assert retry.headers["content-type"] == "application/json"  # its JsonResponse


async def test_revoke_with_a_refresh_token_and_no_hint_is_a_500(harness: Harness) -> None:
    # FACTS "Revocation": looked up as an access token; not found without the hint: 500.
    tokens = await harness.tokens()
    response = await revoke(harness, "revoke", tokens["refresh_token"])
    rotated = await harness.tokens()
    refreshed = (await harness.refresh(rotated["refresh_token"])).json()
    rotated_away = await revoke(harness, "revoke", rotated["access_token"])
    assert response.status_code == 500
    assert rotated_away.status_code == 500  # "one already revoked or rotated away does not"
    assert (await harness.fhir("Coverage", refreshed["access_token"])).status_code == 200


async def test_revoke_with_the_refresh_hint_revokes_it_and_keeps_the_grant(
    harness: Harness,
) -> None:
    # FACTS "Revocation": "A refresh token with token_type_hint=refresh_token is revoked
    # and the grant stays."
    tokens = await harness.tokens()
    response = await revoke(
        harness, "revoke", tokens["refresh_token"], token_type_hint="refresh_token"
    )
    assert response.status_code == 200
    assert (await harness.refresh(tokens["refresh_token"])).status_code == 400
    assert (await grants(harness))[0]["grant"] is True
    assert (await harness.fhir("Coverage", (await harness.tokens())["access_token"])).is_success


async def test_revoke_needs_the_client_secret_after_deleting_the_grant(harness: Harness) -> None:
    # RevokeView deletes the grant before django-oauth-toolkit checks the secret.
    tokens = await harness.tokens()
    response = await harness.http.post(
        "/v2/o/revoke/",
        data={"token": tokens["access_token"]},
        auth=(CLIENT[0], "wrong-secret"),
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert await grants(harness) == []


async def test_revoke_token_answers_200_and_keeps_the_grant(harness: Harness) -> None:
    # FACTS "Revocation": /v2/o/revoke_token/ answers 200 in every case, revokes an access
    # token, and the grant stays. BB2's own test_refresh_with_revoked_token: the refresh
    # token of a revoked access token then gets 400 invalid_grant.
    tokens = await harness.tokens()
    revoked = await revoke(harness, "revoke_token", tokens["access_token"])
    unknown = await revoke(harness, "revoke_token", "never-issued")
    again = await revoke(harness, "revoke_token", tokens["access_token"])
    assert revoked.status_code == unknown.status_code == again.status_code == 200
    assert (await harness.fhir("Coverage", tokens["access_token"])).status_code == 401
    refresh = await harness.refresh(tokens["refresh_token"])
    assert refresh.status_code == 400
    assert refresh.json()["error"] == "invalid_grant"
    assert (await grants(harness))[0]["grant"] is True


async def test_revoke_token_leaves_a_refresh_token_alone_without_the_hint(
    harness: Harness,
) -> None:
    # FACTS "Revocation": "without the hint the refresh token is silently *not* revoked".
    tokens = await harness.tokens()
    silent = await revoke(harness, "revoke_token", tokens["refresh_token"])
    assert silent.status_code == 200
    assert (await harness.fhir("Coverage", tokens["access_token"])).status_code == 200
    hinted = await revoke(
        harness, "revoke_token", tokens["refresh_token"], token_type_hint="refresh_token"
    )
    assert hinted.status_code == 200
    assert (await harness.fhir("Coverage", tokens["access_token"])).status_code == 401
    assert (await harness.refresh(tokens["refresh_token"])).status_code == 400
    assert (await grants(harness))[0]["grant"] is True


async def test_revoke_token_needs_client_authentication(harness: Harness) -> None:
    # FACTS "Revocation": "client credentials required".
    tokens = await harness.tokens()
    unknown_app = await harness.http.post(
        "/v2/o/revoke_token/", data={"token": tokens["access_token"]}, auth=("x", "y")
    )
    wrong_secret = await harness.http.post(
        "/v2/o/revoke_token/", data={"token": tokens["access_token"]}, auth=(CLIENT[0], "y")
    )
    assert unknown_app.status_code == wrong_secret.status_code == 401
    assert (await harness.fhir("Coverage", tokens["access_token"])).status_code == 200


async def test_deleting_grants_revokes_their_tokens(harness: Harness) -> None:
    # FACTS "Authorization": "deleting a grant revokes every token of it, so FHIR calls
    # answer 401 and a refresh answers 403 invalid_grant".
    tokens = await harness.tokens()
    deleted = await harness.http.post("/_emulator/grants/delete", json={"patient_id": ME})
    fhir = await harness.fhir("ExplanationOfBenefit", tokens["access_token"])
    refresh = await harness.refresh(tokens["refresh_token"])
    assert deleted.json()["grants"] == 1
    assert fhir.status_code == 401
    assert fhir.json() == NOT_AUTHENTICATED
    assert refresh.status_code == 403
    assert refresh.json()["error_description"] == GRANT_NOT_FOUND
    assert await grants(harness) == []


async def test_grants_listing_needs_a_known_patient(harness: Harness) -> None:
    response = await harness.http.get("/_emulator/grants", params={"patient_id": "-1"})
    assert response.status_code == 404


async def test_the_grant_is_per_app_and_another_apps_token_is_refused(
    make_harness: MakeHarness,
) -> None:
    # FACTS "Authorization": "one data access grant per (beneficiary, app)". A token of
    # another app: RevokeView's get_application_from_request raises an uncaught
    # InvalidRequestError (500); RevokeTokenView answers 403.
    harness = await make_harness(EmulatorConfig(clients=(RegisteredClient(), ACME)))
    acme = await harness.tokens(client=ACME)
    own = await harness.tokens()
    crossed = await revoke(harness, "revoke", acme["access_token"])
    crossed_rfc = await revoke(harness, "revoke_token", acme["access_token"])
    ended = await revoke(harness, "revoke", own["access_token"])
    assert crossed.status_code == 500
    assert crossed_rfc.status_code == 403
    assert ended.status_code == 200
    assert [grant["client_id"] for grant in await grants(harness)] == [ACME.client_id]
    assert (await harness.fhir("Coverage", acme["access_token"])).status_code == 200


async def test_revoke_finds_the_app_as_bb2_does_for_every_request_shape(
    harness: Harness,
) -> None:
    # RevokeView.post (apps/dot_ext/views/authorization.py) -> validate_app_is_active ->
    # get_application_from_request (apps/dot_ext/utils.py): the data's token names the app
    # before its client_id does, and InvalidRequestError is not caught (handler500).
    tokens = await harness.tokens()
    body_creds = {"client_id": CLIENT[0], "client_secret": CLIENT[1]}
    post = harness.http.post
    unknown_client = {"client_id": "no-such-app", "client_secret": "x"}
    with_token = await post(
        "/v2/o/revoke/", data={"token": tokens["access_token"], **unknown_client}
    )
    without_token = await post("/v2/o/revoke/", data=unknown_client)
    other_client = await post(
        "/v2/o/revoke/",
        data={"token": tokens["access_token"], "client_id": "no-such-app"},
        auth=CLIENT,
    )
    unknown_bearer = await post(
        "/v2/o/revoke/",
        data={"token": tokens["access_token"]},
        headers={"Authorization": "Bearer x"},
    )
    assert with_token.status_code == other_client.status_code == unknown_bearer.status_code == 500
    assert without_token.status_code == 400
    assert without_token.json() == {
        "status_code": 400,
        "error": "invalid_client",
        "error_description": "Application does not exist (client_id)",
    }
    assert (await grants(harness))[0]["grant"] is True  # none of them reached the grant
    ended = await post("/v2/o/revoke/", data={"token": tokens["access_token"], **body_creds})
    assert ended.status_code == 200
    assert await grants(harness) == []


async def test_revoke_through_a_bearer_header_ends_the_grant_then_wants_the_secret(
    harness: Harness,
) -> None:
    # get_application_from_meta: a Bearer header names its access token's app; the grant
    # goes before django-oauth-toolkit finds no client credentials (401).
    tokens = await harness.tokens()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    response = await harness.http.post(
        "/v2/o/revoke/", data={"token": tokens["access_token"]}, headers=bearer
    )
    assert response.status_code == 401
    assert await grants(harness) == []


async def test_revoke_token_answers_200_for_an_unknown_client_id(harness: Harness) -> None:
    # RevokeTokenView.post: any InvalidClientError/InvalidRequestError of
    # get_application_from_data is a 200, an unknown client_id without a token included.
    tokens = await harness.tokens()
    response = await harness.http.post(
        "/v2/o/revoke_token/", data={"client_id": "no-such-app"}, auth=CLIENT
    )
    assert response.status_code == 200
    assert (await harness.fhir("Coverage", tokens["access_token"])).status_code == 200
