"""The synthetic data set: sandbox users, claim counts and types, determinism, scale."""

import argparse
import csv
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from worker.emulator import resources
from worker.emulator.app import build_app
from worker.emulator.claims import CLAIM_TYPES
from worker.emulator.config import EmulatorConfig, add_arguments, config_from_args
from worker.emulator.data import Dataset

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "bluebutton" / "samples"


def test_bbuser00000_is_the_sandbox_user_with_52_carrier_and_outpatient_eobs() -> None:
    dataset = Dataset(EmulatorConfig())
    user = dataset.population.by_username("BBUser00000")
    assert user is not None
    claims = dataset.claims(user)
    assert (user.patient_id, user.password) == ("-19990000000001", "PW00000!")
    assert len(claims) == dataset.eob_count(user) == 52
    assert Counter(claim.claim_type for claim in claims) == {"carrier": 14, "outpatient": 38}


def test_all_eight_claim_types_appear_among_the_first_30_users() -> None:
    dataset = Dataset(EmulatorConfig())
    types = {
        claim.claim_type
        for index in range(30)
        for claim in dataset.claims(dataset.population.get(index))
    }
    assert types == set(CLAIM_TYPES)


def test_claim_totals_follow_the_published_counts() -> None:
    dataset = Dataset(EmulatorConfig(beneficiaries=100))
    claims = dataset.claims(dataset.population.get(7))
    kinds = Counter(claim.claim_type for claim in claims)
    # BBUser00007: 61 carrier claims and 1 inpatient claim in the published CSV.
    assert len(claims) == 62
    assert kinds["inpatient"] == 1
    assert kinds["carrier"] < 61


@pytest.mark.skipif(not SAMPLES.exists(), reason="shared samples not mounted")
def test_every_user_matches_the_published_csv_total() -> None:
    with (SAMPLES / "synthetic_users_by_claim_count_full.csv").open() as handle:
        published = {
            row["FRONTEND_USER_NAME"]: int(row["total_claim_count"])
            for row in csv.DictReader(handle)
            if row.get("FRONTEND_USER_NAME")
        }
    dataset = Dataset(EmulatorConfig(beneficiaries=10_001))
    for index in range(1, 10_001, 97):
        user = dataset.population.get(index)
        assert dataset.eob_count(user) == published[user.username]
        assert len(dataset.claims(user)) == published[user.username]


def test_data_is_deterministic_across_instances() -> None:
    first, second = Dataset(EmulatorConfig()), Dataset(EmulatorConfig())
    user = first.population.get(5)
    claim = first.claims(user)[3]
    assert [c.eob_id for c in first.claims(user)] == [c.eob_id for c in second.claims(user)]
    assert resources.eob(claim, user) == resources.eob(second.claims(user)[3], user)


def test_ten_thousand_beneficiaries_are_cheap_to_build() -> None:
    started = time.perf_counter()
    build_app(EmulatorConfig(beneficiaries=10_001))
    dataset = Dataset(EmulatorConfig(beneficiaries=10_001))
    last = dataset.population.by_username("BBUser10000")
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0
    assert last is not None
    # The sandbox's last user breaks the BENE_ID pattern; the published id is kept.
    assert last.patient_id == "-20000000000001"
    assert dataset.population.by_patient_id("-19990000010000") == dataset.population.get(9999)


def test_thousands_of_claims_per_beneficiary_with_unique_ids() -> None:
    dataset = Dataset(EmulatorConfig(beneficiaries=3, claims_per_beneficiary=5000))
    user = dataset.population.get(2)
    claims = dataset.claims(user)
    assert len(claims) == 5000
    assert len({claim.eob_id for claim in claims}) == 5000
    assert set(Counter(claim.claim_type for claim in claims)) == set(CLAIM_TYPES)
    assert [c.sort_key for c in claims] == sorted(c.sort_key for c in claims)


def test_rendered_eobs_have_realistic_sizes_and_substituted_ids() -> None:
    dataset = Dataset(EmulatorConfig())
    sizes = []
    for index in range(30):
        user = dataset.population.get(index)
        for claim in dataset.claims(user)[:5]:
            resource = resources.eob(claim, user)
            text = orjson.dumps(resource)
            sizes.append(len(text))
            assert resource["id"] == claim.eob_id
            assert b"IGNORED_FIELD" not in text
            assert b"567834" not in text
            assert b"19990000000001" not in text or index == 0
    assert min(sizes) > 12_000
    assert max(sizes) < 46_000


def test_patient_and_coverage_carry_the_beneficiary() -> None:
    dataset = Dataset(EmulatorConfig())
    user = dataset.population.get(12)
    patient = resources.patient(user)
    coverage = resources.coverage(user, "part-c")
    assert patient["id"] == user.patient_id == "-19990000000013"
    assert {identifier["value"] for identifier in patient["identifier"]} == {user.patient_id}
    assert patient["name"][0]["family"] == user.family_name
    assert "20140000008325" not in orjson.dumps([patient, coverage]).decode()
    assert coverage["id"] == "part-c--19990000000013"


def test_data_changes_touch_add_and_remove() -> None:
    dataset = Dataset(EmulatorConfig())
    user = dataset.population.get(1)
    before = {claim.eob_id: claim for claim in dataset.claims(user)}
    moment = datetime(2027, 1, 1, tzinfo=UTC)
    touched = dataset.touch(user, 3, moment)
    added = dataset.add_claim(user, "snf", moment)
    dataset.remove_claim(user, touched[0], moment)
    after = {claim.eob_id: claim for claim in dataset.claims(user)}
    assert set(after) == set(before) - {touched[0]} | {added}
    assert after[touched[1]].last_updated == moment
    assert resources.eob(after[touched[1]], user) != resources.eob(before[touched[1]], user)
    assert dataset.eob_count(user) == len(before)
    assert dataset.loaded_at == moment


@pytest.mark.parametrize(
    "arguments",
    [
        ["--beneficiaries", "0"],
        ["--beneficiaries", "10002"],
        ["--rate-limit", "0"],
        ["--token-lifetime", "0"],
        ["--claims-per-beneficiary", "-1"],
    ],
)
def test_invalid_settings_raise_value_error(arguments: list[str]) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    with pytest.raises(ValueError, match="must be"):
        config_from_args(parser.parse_args(arguments))


def test_arguments_build_a_config() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    namespace = parser.parse_args(
        ["--beneficiaries", "100", "--claims-per-beneficiary", "2000", "--rate-limit", "10"]
    )
    config = config_from_args(namespace)
    assert (config.beneficiaries, config.claims_per_beneficiary) == (100, 2000)
    assert (config.rate_limit, config.token_lifetime) == (10, 3600)
    assert config.clients[0].client_id == "emulator-client"
