"""CMS-side events switched on through the admin API: an inactive app, an edge's HTML 403,
a refresh that fails after rotating; and re-consent. Each cites its line of FACTS.md."""

import httpx

from tests.emulator.support import CLIENT, ME, REDIRECT_URI, Harness, MakeHarness
from worker.emulator.config import EmulatorConfig, RegisteredClient

INACTIVE = (
    "This application, bluebutton-ingest demo, is temporarily inactive."
    " If you are the app maintainer, please contact the Blue Button API team."
    " If you are a Medicare Beneficiary and need assistance, please contact"
    " the support team for the application you are trying to access."
)


async def set_inactive(harness: Harness, inactive: bool) -> httpx.Response:
    body = {"client_id": CLIENT[0], "inactive": inactive}
    return await harness.http.post("/_emulator/apps/inactive", json=body)


async def test_an_inactive_app_gets_401_on_fhir_and_403_on_refresh(harness: Harness) -> None:
    # FACTS "Authorization": "App made inactive by CMS ... FHIR calls answer 401 and
    # refreshes 403 invalid_client, both with 'This application, NAME, is temporarily
    # inactive.'" Nothing happens to the grant: reactivated, everything works again.
    tokens = await harness.tokens()
    switched = await set_inactive(harness, True)
    fhir = await harness.fhir("ExplanationOfBenefit", tokens["access_token"])
    refresh = await harness.refresh(tokens["refresh_token"])
    await set_inactive(harness, False)
    assert switched.json() == {"client_id": CLIENT[0], "inactive": True}
    assert fhir.status_code == 401
    assert fhir.json() == {"detail": INACTIVE}
    assert refresh.status_code == 403
    assert refresh.json() == {
        "status_code": 403,
        "error": "invalid_client",
        "error_description": INACTIVE,
    }
    assert (await harness.fhir("Coverage", tokens["access_token"])).status_code == 200
    assert (await harness.refresh(tokens["refresh_token"])).status_code == 200


async def test_an_inactive_app_cannot_authorize_exchange_or_revoke(harness: Harness) -> None:
    # BB2 runs validate_app_is_active in AuthorizationView, TokenView and RevokeView (403),
    # and RevokeTokenView refuses an inactive app with its own 403 (issue 12: "An app CMS
    # made inactive answers revokes 403").
    code, verifier = await harness.code()
    tokens = await harness.tokens("BBUser00001")
    await set_inactive(harness, True)
    exchange = await harness.exchange(code, verifier)
    revoke = await harness.http.post(
        "/v2/o/revoke/", data={"token": tokens["access_token"]}, auth=CLIENT
    )
    revoke_token = await harness.http.post(
        "/v2/o/revoke_token/", data={"token": tokens["access_token"]}, auth=CLIENT
    )
    authorize = await harness.http.get(
        "/v2/o/authorize/", params={"client_id": CLIENT[0], "redirect_uri": REDIRECT_URI}
    )
    assert exchange.status_code == revoke.status_code == 403
    assert exchange.json()["error_description"] == revoke.json()["error_description"] == INACTIVE
    assert revoke_token.status_code == 403
    assert revoke_token.json()["description"] == "Application is not active or does not exist."
    assert authorize.status_code == 403
    assert "temporarily inactive" in authorize.text


async def test_inactive_needs_a_known_app(harness: Harness) -> None:
    response = await harness.http.post("/_emulator/apps/inactive", json={"client_id": "nope"})
    assert response.status_code == 404


async def test_a_one_time_app_refresh_names_the_reason(make_harness: MakeHarness) -> None:
    # FACTS "Authorization": ONE_TIME "(no refresh allowed: 403 invalid_client)"; the text
    # differs from the inactive one (apps/constants.py).
    client = RegisteredClient(grant_type="ONE_TIME")
    harness = await make_harness(EmulatorConfig(clients=(client,)))
    refresh = await harness.refresh((await harness.tokens())["refresh_token"])
    assert refresh.status_code == 403
    assert refresh.json()["error"] == "invalid_client"
    assert refresh.json()["error_description"].startswith("Your application is not allowed")


async def test_the_edge_refuses_one_beneficiary_with_html_for_a_while(harness: Harness) -> None:
    # FACTS "Errors and limits": "A 403 that is not BB2's JSON (an HTML page from an edge,
    # firewall or gateway) says nothing about the beneficiary's consent."
    mine = (await harness.tokens())["access_token"]
    other = (await harness.tokens("BBUser00001"))["access_token"]
    ordered = await harness.http.post(
        "/_emulator/edge/forbid", json={"patient_id": ME, "seconds": 6}
    )
    refused = await harness.fhir("Coverage", mine)
    unaffected = await harness.fhir("Coverage", other)
    harness.clock.advance(6)
    after = await harness.fhir("Coverage", mine)
    assert ordered.status_code == 200
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("text/html")
    assert unaffected.status_code == after.status_code == 200


async def test_the_edge_can_refuse_a_number_of_requests(harness: Harness) -> None:
    token = (await harness.tokens())["access_token"]
    await harness.http.post("/_emulator/edge/forbid", json={"patient_id": ME, "count": 2})
    statuses = [(await harness.fhir("ExplanationOfBenefit", token)).status_code for _ in range(3)]
    assert statuses == [403, 403, 200]


async def test_edge_forbid_needs_a_duration_or_a_count(harness: Harness) -> None:
    response = await harness.http.post("/_emulator/edge/forbid", json={"patient_id": ME})
    assert response.status_code == 400


async def test_a_refresh_fault_rotates_the_token_then_fails(harness: Harness) -> None:
    # FACTS "Authorization": "CMS mints the new tokens *before* it looks the beneficiary up
    # in its backend, and that lookup can still answer 502 (backend failure) or 404: the old
    # refresh token is then already spent and the new one never arrived."
    tokens = await harness.tokens()
    ordered = await harness.http.post("/_emulator/faults/refresh", json={"status": 502})
    failed = await harness.refresh(tokens["refresh_token"])
    again = await harness.refresh(tokens["refresh_token"])
    grants = (await harness.http.get("/_emulator/grants", params={"patient_id": ME})).json()
    assert ordered.json() == {"status": 502, "count": 1, "pending": 1}
    assert failed.status_code == 502
    assert failed.json() == {
        "status_code": 502,
        "message": "Failed to retrieve data from data source.",
    }
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    # The new pair was minted and stored: CMS holds a live refresh token nobody received.
    assert grants["grants"][0]["live_refresh_tokens"] == 1


async def test_a_refresh_fault_may_be_a_404(harness: Harness) -> None:
    tokens = await harness.tokens()
    await harness.http.post("/_emulator/faults/refresh", json={"status": 404, "count": 1})
    failed = await harness.refresh(tokens["refresh_token"])
    assert failed.status_code == 404
    assert failed.json() == {"status_code": 404, "message": "Not found."}


async def test_refresh_faults_take_only_502_or_404(harness: Harness) -> None:
    response = await harness.http.post("/_emulator/faults/refresh", json={"status": 500})
    assert response.status_code == 400


async def test_reconsent_deletes_the_earlier_tokens_and_keeps_the_grant(harness: Harness) -> None:
    # FACTS "Authorization": "Authorizing again (re-consent) deletes every earlier access
    # and refresh token of that app and beneficiary (the grant itself stays): ... 401, and
    # their refresh fails with 400 invalid_request (the token no longer exists)."
    old = await harness.tokens()
    new = await harness.tokens()
    fhir = await harness.fhir("Coverage", old["access_token"])
    refresh = await harness.refresh(old["refresh_token"])
    assert fhir.status_code == 401
    assert refresh.status_code == 400
    assert refresh.json()["error"] == "invalid_request"
    assert (await harness.fhir("Coverage", new["access_token"])).status_code == 200
    assert (await harness.refresh(new["refresh_token"])).status_code == 200


async def test_reconsent_leaves_other_beneficiaries_alone(harness: Harness) -> None:
    other = await harness.tokens("BBUser00001")
    await harness.tokens()
    await harness.tokens()
    assert (await harness.fhir("Coverage", other["access_token"])).status_code == 200


async def test_unticking_personal_information_deletes_the_earlier_grant(harness: Harness) -> None:
    # FACTS "Authorization": "When the beneficiary unticks personal information, the
    # earlier grant is deleted too" (and a new one made for the new authorization).
    old = await harness.tokens()
    new = await harness.tokens(share=False)
    listed = await harness.http.get("/_emulator/grants", params={"patient_id": ME})
    assert (await harness.fhir("Coverage", old["access_token"])).status_code == 401
    assert (await harness.refresh(old["refresh_token"])).status_code == 400
    assert (await harness.fhir("Coverage", new["access_token"])).status_code == 200
    assert (await harness.fhir(f"Patient/{ME}", new["access_token"])).status_code == 403
    assert [grant["live_access_tokens"] for grant in listed.json()["grants"]] == [1]


async def test_an_unknown_refresh_token_is_invalid_request(harness: Harness) -> None:
    # FACTS "Authorization": "a token CMS does not know at all: 400 invalid_request". The
    # description is get_application_from_data's (apps/dot_ext/utils.py); "Missing refresh
    # token parameter" is what a refresh without any refresh_token gets.
    unknown = await harness.refresh("never-issued")
    missing = await harness.http.post(
        "/v2/o/token/", data={"grant_type": "refresh_token"}, auth=CLIENT
    )
    assert unknown.status_code == missing.status_code == 400
    assert unknown.json()["error"] == missing.json()["error"] == "invalid_request"
    assert unknown.json()["error_description"] == "Refresh token not found."
    assert missing.json()["error_description"] == "Missing refresh token parameter"
