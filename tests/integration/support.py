"""Helpers for integration tests: beneficiaries authorized through the emulator, and the
resources the emulator serves, to compare with what the worker stored."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx

from worker.bluebutton import oauth
from worker.emulator import resources as emulated
from worker.emulator.config import EmulatorConfig
from worker.emulator.data import Dataset
from worker.emulator.useragent import authorize
from worker.jobs.payloads import ConnectJob

CLIENT_ID, CLIENT_SECRET = "emulator-client", "emulator-secret"
REDIRECT_URI = "http://localhost:3000/api/auth/smart/callback"
Key = tuple[str, str]


def username(index: int) -> str:
    return f"BBUser{index:05d}"


def patient_id(index: int) -> str:
    return f"-{19990000000001 + index}"


async def authorized_job(
    base_url: str,
    index: int,
    *,
    connection_id: str | None = None,
    share_personal_info: bool = True,
    redirect_uri: str = REDIRECT_URI,
) -> ConnectJob:
    """Walk BBUser<index> through authorize, login and consent; the connect job that follows."""
    pkce, state = oauth.make_pkce(), oauth.make_state()
    url = oauth.authorize_url(
        base_url,
        client_id=CLIENT_ID,
        redirect_uri=REDIRECT_URI,
        state=state,
        challenge=pkce.challenge,
    )
    async with httpx.AsyncClient() as http:
        location = await authorize(
            http, url, username(index), f"PW{index:05d}!", share_personal_info=share_personal_info
        )
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == [state]
    return ConnectJob(
        connection_id=connection_id or f"conn-{index}",
        code=query["code"][0],
        code_verifier=pkce.verifier,
        redirect_uri=redirect_uri,
    )


def served_resources(
    config: EmulatorConfig, index: int, *, personal: bool = True
) -> dict[Key, Any]:
    """Every resource the emulator serves BBUser<index>, keyed by (type, id)."""
    dataset = Dataset(config)
    beneficiary = dataset.population.get(index)
    served: dict[Key, Any] = {
        ("ExplanationOfBenefit", claim.eob_id): emulated.eob(claim, beneficiary)
        for claim in dataset.claims(beneficiary)
    }
    for part in emulated.COVERAGE_PARTS:
        coverage = emulated.coverage(beneficiary, part)
        served["Coverage", coverage["id"]] = coverage
    if personal:
        served["Patient", beneficiary.patient_id] = emulated.patient(beneficiary)
    return served


async def stored_resources(pool: asyncpg.Pool, connection_id: str) -> dict[Key, Any]:
    """Every resource stored for the connection, keyed by (type, id)."""
    rows = await pool.fetch(
        "SELECT resource_type, resource_id, resource FROM fhir_resources WHERE connection_id = $1",
        connection_id,
    )
    return {(r["resource_type"], r["resource_id"]): r["resource"] for r in rows}


async def emulator_stats(base_url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base_url) as http:
        return (await http.get("/_emulator/stats")).json()  # type: ignore[no-any-return]


async def emulator_post(base_url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    async with httpx.AsyncClient(base_url=base_url) as http:
        response = await http.post(path, json=body or {})
        response.raise_for_status()
        return response.json()
