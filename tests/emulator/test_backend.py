"""The modelled backend: a page costs 20 ms + 0.5 ms per matching claim; 502 past 30 s."""

import pytest

from tests.emulator.support import ME, MakeHarness
from worker.emulator.config import EmulatorConfig


async def test_every_page_costs_the_whole_matching_result(make_harness: MakeHarness) -> None:
    config = EmulatorConfig(claims_per_beneficiary=400, part_d_share=0.9, backend_cost=True)
    harness = await make_harness(config)
    token = (await harness.tokens())["access_token"]
    first = await harness.fhir("ExplanationOfBenefit", token, patient=ME, _count=10)
    later = await harness.fhir("ExplanationOfBenefit", token, patient=ME, _count=10, startIndex=390)
    part_d = await harness.fhir("ExplanationOfBenefit", token, patient=ME, type="pde")
    assert first.status_code == later.status_code == part_d.status_code == 200
    pde = part_d.json()["total"]
    assert 330 < pde < 390  # about 90% Part D
    # Page size and position do not matter; a narrower search does.
    assert harness.clock.slept == pytest.approx([0.22, 0.22, 0.02 + 0.0005 * pde])
    stats = (await harness.http.get("/_emulator/stats")).json()
    assert stats["backend_seconds"] == pytest.approx(0.44 + 0.02 + 0.0005 * pde, abs=0.001)


async def test_a_page_past_the_backend_timeout_is_a_502(make_harness: MakeHarness) -> None:
    harness = await make_harness(EmulatorConfig(claims_per_beneficiary=60_000, backend_cost=True))
    token = (await harness.tokens())["access_token"]
    answer = await harness.fhir("ExplanationOfBenefit", token, patient=ME)
    assert answer.status_code == 502
    assert harness.clock.slept == [30.0]


async def test_no_cost_unless_asked(make_harness: MakeHarness) -> None:
    harness = await make_harness(EmulatorConfig(claims_per_beneficiary=400))
    token = (await harness.tokens())["access_token"]
    await harness.fhir("ExplanationOfBenefit", token, patient=ME)
    assert harness.clock.slept == []
