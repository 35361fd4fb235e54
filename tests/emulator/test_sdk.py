"""CMS's own Python SDK (cms-bluebutton-sdk 1.1.0) against the emulator, its PKCE pair
unchanged: authorize, token exchange, Patient/Coverage/EOB reads with paging, refresh.

FACTS "Authorization": the SDK's generate_auth_data "sends a padded challenge and a
44-character verifier ending in `=`, and both work"; it sends the token request "as
multipart form data with the client secret in the body" and reads the patient with "a
search, GET /v2/fhir/Patient/". FACTS "The official Python SDK": it "pages by following
`next` links". The SDK is synchronous (requests): it runs in a thread while the emulator
serves in this event loop.
"""

import asyncio
from typing import Any

from tests.emulator.sdk_support import sdk_authorization, sdk_client
from tests.emulator.support import ME
from worker.emulator.config import EmulatorConfig
from worker.emulator.server import running_emulator


async def test_the_cms_sdk_connects_reads_every_page_and_refreshes() -> None:
    async with running_emulator(EmulatorConfig()) as emulator:
        sdk = sdk_client(emulator.base_url)
        started = await sdk_authorization(sdk)
        token = await asyncio.to_thread(
            sdk.get_authorization_token, started.auth_data, started.code, started.state
        )
        config: dict[str, Any] = {"auth_token": token, "params": {}}
        patient = await asyncio.to_thread(sdk.get_patient_data, dict(config))
        coverage = await asyncio.to_thread(sdk.get_coverage_data, dict(config))
        first = await asyncio.to_thread(sdk.get_explaination_of_benefit_data, dict(config))
        paged = await asyncio.to_thread(sdk.get_pages, first["response"].json(), dict(config))
        refreshed = await asyncio.to_thread(sdk.refresh_auth_token, token)
        after = await asyncio.to_thread(sdk.get_coverage_data, {**config, "auth_token": refreshed})
    assert started.auth_data["code_challenge"].endswith("=")
    assert len(started.verifier) == 44
    assert started.verifier.endswith("=")
    assert token.patient == ME
    assert patient["response"].status_code == 200
    assert [e["resource"]["id"] for e in patient["response"].json()["entry"]] == [ME]
    assert coverage["response"].json()["total"] == 4
    pages = paged["pages"]
    eob_ids = [entry["resource"]["id"] for page in pages for entry in page["entry"]]
    assert len(pages) == 6  # 52 EOBs, pages of 10
    assert len(eob_ids) == len(set(eob_ids)) == pages[0]["total"] == 52
    assert refreshed.refresh_token != token.refresh_token
    assert after["response"].status_code == 200
