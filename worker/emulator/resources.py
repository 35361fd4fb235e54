"""FHIR resources of a beneficiary, rendered from the real templates."""

import functools
from datetime import date, datetime, timedelta
from typing import Any

from worker.emulator.claims import FIRST_LOAD, LOAD_WEEKS, Claim, digest
from worker.emulator.population import Beneficiary
from worker.emulator.templates import JsonObject, Template, load_json, load_template

COVERAGE_PARTS = ("part-a", "part-b", "part-c", "part-d")
_CLAIM_ID_SYSTEMS = frozenset(
    {
        "https://bluebutton.cms.gov/resources/variables/clm_id",
        "https://bluebutton.cms.gov/resources/variables/pde_id",
    }
)
_CLAIM_GROUP_SYSTEM = "https://bluebutton.cms.gov/resources/identifier/claim-group"
_FIRST_BIRTHDAY = date(1935, 1, 1)
_BIRTH_DAYS = 25 * 365


def instant(moment: datetime) -> str:
    """FHIR instant with milliseconds and offset, as in the samples."""
    return moment.isoformat(timespec="milliseconds")


def eob(claim: Claim, beneficiary: Beneficiary) -> JsonObject:
    """The ExplanationOfBenefit of one claim."""
    template, anchor = _eob_template(claim.claim_type)
    resource = template.body.render(claim.service_start - anchor, claim.amount_factor)
    resource["item"] = _items(template, claim)
    resource["id"] = claim.eob_id
    resource["meta"]["lastUpdated"] = instant(claim.last_updated)
    resource["created"] = claim.last_updated.isoformat(timespec="seconds")
    resource["patient"] = {"reference": f"Patient/{beneficiary.patient_id}"}
    resource["billablePeriod"] = {
        "start": claim.service_start.isoformat(),
        "end": claim.service_end.isoformat(),
    }
    for identifier in resource["identifier"]:
        if identifier.get("system") in _CLAIM_ID_SYSTEMS:
            identifier["value"] = claim.claim_id
        elif identifier.get("system") == _CLAIM_GROUP_SYSTEM:
            identifier["value"] = f"-{10**10 + digest(beneficiary.index, 'group') % 10**10}"
    for insurance in resource.get("insurance", []):
        part = insurance["coverage"]["reference"].split("/")[1][: len("part-a")]
        insurance["coverage"]["reference"] = f"Coverage/{part}-{beneficiary.patient_id}"
    return resource


def patient(beneficiary: Beneficiary) -> JsonObject:
    """The Patient resource of a beneficiary, with a synthetic name."""
    template, anchor = _patient_template()
    resource = template.body.render(_birth_date(beneficiary) - anchor, 1.0)
    resource["id"] = beneficiary.patient_id
    resource["meta"]["lastUpdated"] = instant(demographics_updated(beneficiary))
    for identifier in resource["identifier"]:
        identifier["value"] = beneficiary.patient_id
    resource["name"] = [
        {"use": "usual", "family": beneficiary.family_name, "given": [beneficiary.given_name]}
    ]
    resource["gender"] = beneficiary.gender
    return resource


def coverage(beneficiary: Beneficiary, part: str) -> JsonObject:
    """One Coverage (part-a, part-b, part-c or part-d) of a beneficiary."""
    template, anchor = _coverage_template(part)
    entitled = _birth_date(beneficiary).replace(month=1, day=1) + timedelta(days=65 * 365)
    resource = template.body.render(entitled - anchor if anchor else timedelta(0), 1.0)
    resource["id"] = f"{part}-{beneficiary.patient_id}"
    resource["meta"]["lastUpdated"] = instant(demographics_updated(beneficiary))
    resource["beneficiary"] = {"reference": f"Patient/{beneficiary.patient_id}"}
    return resource


def userinfo(beneficiary: Beneficiary, issued_at: datetime) -> JsonObject:
    """The /v2/connect/userinfo body, shaped like the web server's fixture."""
    given, family = beneficiary.given_name, beneficiary.family_name
    return {
        "sub": beneficiary.patient_id,
        "name": f"{given} {family}",
        "given_name": given,
        "family_name": family,
        "email": f"{given}.{family}{beneficiary.index}@example.com".lower(),
        "iat": issued_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "patient": beneficiary.patient_id,
    }


def demographics_updated(beneficiary: Beneficiary) -> datetime:
    """meta.lastUpdated of the Patient and its Coverage resources."""
    return FIRST_LOAD + timedelta(weeks=digest(beneficiary.index, "bene") % LOAD_WEEKS)


def capability_statement(base_url: str) -> JsonObject:
    """The sample CapabilityStatement with its URLs moved onto this host."""
    statement = load_json("capability_statement")
    statement["implementation"]["url"] = f"{base_url}/v2/fhir"
    for rest in statement["rest"]:
        for extension in rest["security"].get("extension", []):
            _point_oauth_uris(extension, base_url)
    return statement


def _point_oauth_uris(extension: dict[str, Any], base_url: str) -> None:
    paths = {"token": "/v2/o/token/", "authorize": "/v2/o/authorize/"}
    for inner in extension.get("extension", []):
        if inner.get("url") in paths:
            inner["valueUri"] = base_url + paths[inner["url"]]


def _items(template: Template, claim: Claim) -> list[JsonObject]:
    shift = claim.service_start - _eob_template(claim.claim_type)[1]
    items = []
    for number in range(claim.lines):
        item = template.items[number % len(template.items)].render(shift, claim.amount_factor)
        item["sequence"] = number + 1
        items.append(item)
    return items


def _birth_date(beneficiary: Beneficiary) -> date:
    return _FIRST_BIRTHDAY + timedelta(days=digest(beneficiary.index, "birth") % _BIRTH_DAYS)


@functools.cache
def _eob_template(claim_type: str) -> tuple[Template, date]:
    raw = load_json(f"eob_{claim_type}")
    return load_template(f"eob_{claim_type}"), date.fromisoformat(raw["billablePeriod"]["start"])


@functools.cache
def _patient_template() -> tuple[Template, date]:
    raw = load_json("patient")
    return load_template("patient"), date.fromisoformat(raw["birthDate"])


@functools.cache
def _coverage_template(part: str) -> tuple[Template, date | None]:
    name = f"coverage_{part.replace('-', '_')}"
    start = load_json(name).get("period", {}).get("start")
    return load_template(name), date.fromisoformat(start) if start else None
