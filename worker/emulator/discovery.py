"""Discovery documents: OpenID configuration, SMART configuration, CapabilityStatement."""

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from worker.emulator import resources
from worker.emulator.context import Emulator, base_url, metered
from worker.emulator.oauth import ALL_SCOPES
from worker.emulator.responses import FHIR_JSON, json_response

_GRANT_TYPES = ["authorization_code", "refresh_token"]


def discovery_routes(emulator: Emulator) -> list[Route]:
    """The three public discovery endpoints, with URLs on the emulator's own host."""

    async def nobody(request: Request) -> str | None:
        return None

    @metered(emulator, "openid_configuration", nobody)
    async def openid_configuration(request: Request) -> Response:
        base = base_url(request)
        return json_response(
            {
                "issuer": base,
                "authorization_endpoint": f"{base}/v2/o/authorize/",
                "revocation_endpoint": f"{base}/v2/o/revoke_token/",
                "token_endpoint": f"{base}/v2/o/token/",
                "userinfo_endpoint": f"{base}/v2/connect/userinfo",
                "ui_locales_supported": ["en-US"],
                "service_documentation": "https://bluebutton.cms.gov/developers",
                "op_tos_uri": "https://bluebutton.cms.gov/terms",
                "grant_types_supported": _GRANT_TYPES,
                "response_types_supported": ["code", "token"],
                "fhir_metadata_uri": f"{base}/v2/fhir/metadata",
            }
        )

    @metered(emulator, "smart_configuration", nobody)
    async def smart_configuration(request: Request) -> Response:
        base = base_url(request)
        return json_response(
            {
                "authorization_endpoint": f"{base}/v2/o/authorize/",
                "token_endpoint": f"{base}/v2/o/token/",
                "revocation_endpoint": f"{base}/v2/o/revoke_token/",
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                "grant_types_supported": _GRANT_TYPES,
                "response_types_supported": ["code"],
                "code_challenge_methods_supported": ["S256"],
                "scopes_supported": list(ALL_SCOPES),
                "capabilities": [
                    "client-confidential-symmetric",
                    "context-standalone-patient",
                    "launch-standalone",
                    "permission-offline",
                    "permission-patient",
                ],
            }
        )

    @metered(emulator, "metadata", nobody, fhir=True)
    async def metadata(request: Request) -> Response:
        return json_response(
            resources.capability_statement(base_url(request)), media_type=FHIR_JSON
        )

    return [
        Route("/v2/connect/.well-known/openid-configuration", openid_configuration),
        Route("/v2/fhir/.well-known/smart-configuration", smart_configuration),
        Route("/v2/fhir/metadata", metadata),
        Route("/v2/fhir/metadata/", metadata),
    ]
