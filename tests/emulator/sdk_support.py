"""CMS's own Python SDK (cms-bluebutton-sdk) pointed at a running emulator, and the
authorization it starts, driven through the emulator's login and consent pages.

`sdk_authorization` returns what an upstream built on the SDK holds after the callback:
the code, the SDK's `=`-ending verifier (unchanged) and the redirect URI, ready to hand to
a connect job or to the SDK's own token exchange.
"""

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
from cms_bluebutton import BlueButton

from tests.emulator.support import CLIENT, REDIRECT_URI
from worker.emulator.useragent import authorize


@dataclass(frozen=True)
class SdkAuthorization:
    """The result of an SDK-started authorization: what the app's callback received, and
    the SDK's auth data (state, padded code challenge, verifier) it was started with."""

    code: str
    verifier: str
    redirect_uri: str
    state: str
    auth_data: dict[str, Any]


def sdk_client(
    base_url: str,
    client_id: str = CLIENT[0],
    client_secret: str = CLIENT[1],
    callback_url: str = REDIRECT_URI,
) -> BlueButton:
    """A BlueButton SDK client for the emulator at `base_url`, with its retries off.

    The SDK only knows CMS's hosts and localhost:8000, so the URLs it derives from its
    environment are replaced the way set_configuration builds them.
    """
    config = {
        "environment": "LOCAL",
        "client_id": client_id,
        "client_secret": client_secret,
        "callback_url": callback_url,
        "retry_settings": {"total": 0},
    }
    sdk = BlueButton(config)
    sdk.base_url = base_url
    sdk.auth_base_url = f"{base_url}/v{sdk.version}/o/authorize"
    sdk.auth_token_url = f"{base_url}/v{sdk.version}/o/token/"
    return sdk


async def sdk_authorization(
    sdk: BlueButton, username: str = "BBUser00000", *, share: bool = True
) -> SdkAuthorization:
    """Start an authorization with the SDK's own generate_auth_data and authorize URL, log
    the beneficiary in (password `PW<digits>!`) and consent; returns (code, verifier,
    redirect_uri, ...) as the SDK app's callback receives them."""
    auth_data = sdk.generate_auth_data()
    password = f"PW{username.removeprefix('BBUser')}!"
    async with httpx.AsyncClient(base_url=sdk.base_url) as http:
        # The SDK's URL has no trailing slash: BB2 (Django's APPEND_SLASH) and the
        # emulator redirect it to /v2/o/authorize/ first.
        first = await http.get(sdk.generate_authorize_url(auth_data), follow_redirects=False)
        authorize_url = str(first.next_request.url) if first.next_request else str(first.url)
        location = await authorize(
            http, authorize_url, username, password, share_personal_info=share
        )
    query = parse_qs(urlparse(location).query)
    return SdkAuthorization(
        code=query["code"][0],
        verifier=auth_data["verifier"],
        redirect_uri=sdk.callback_url,
        state=query["state"][0],
        auth_data=auth_data,
    )
