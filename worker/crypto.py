"""Token encryption at rest: AES-256-GCM with key ids, so keys can be rotated.

``TOKEN_ENCRYPTION_KEY`` holds one or more keys, ``kid:base64key`` separated by commas;
the first encrypts, all decrypt. ``TOKEN_DECRYPT_ONLY_KEYS`` (same format) adds keys that
only decrypt: a new key is rolled out there first, so that every replica can read what any
other writes once it becomes the active key (README, "Rotating the token key"). A bare
base64 key gets a key id derived from its hash. A ciphertext reads
``v1.<kid>.<base64(nonce + ciphertext)>`` and is bound to its row and column (associated
data), so a token copied onto another connection does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Mapping
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from worker.errors import ConfigError, DecryptionError, KeyMissing
from worker.settings import Settings

VERSION: Final = "v1"
NONCE_BYTES: Final = 12
KEY_BYTES: Final = 32


def key_id_of(token: str) -> str:
    """The key id a stored value is sealed under (``v1.<kid>.<blob>``)."""
    return token.split(".", 2)[1] if token.count(".") >= 2 else ""


def cipher_for(settings: Settings) -> TokenCipher:
    """The cipher the settings configure (TOKEN_ENCRYPTION_KEY, TOKEN_DECRYPT_ONLY_KEYS)."""
    return TokenCipher.from_setting(
        settings.token_encryption_key.get_secret_value(),
        settings.token_decrypt_only_keys.get_secret_value(),
    )


def uncovered(stored: set[str], cipher: TokenCipher) -> str | None:
    """Why start-up must stop: stored values sealed under key ids the cipher lacks."""
    missing = sorted(stored - cipher.key_ids)
    if not missing:
        return None
    return (
        f"TOKEN_ENCRYPTION_KEY: stored tokens or secrets are sealed under key ids {missing} that "
        "neither TOKEN_ENCRYPTION_KEY nor TOKEN_DECRYPT_ONLY_KEYS holds"
    )


def generate_key() -> str:
    """A new random key in the format ``TOKEN_ENCRYPTION_KEY`` takes."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode()


def _decode_key(text: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ConfigError("TOKEN_ENCRYPTION_KEY: a key is not valid base64") from exc
    if len(key) != KEY_BYTES:
        raise ConfigError(f"TOKEN_ENCRYPTION_KEY: each key must be {KEY_BYTES} bytes")
    return key


def _key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


class TokenCipher:
    """Encrypts with the active key and decrypts with any configured key."""

    def __init__(self, keys: Mapping[str, bytes], active: str) -> None:
        if active not in keys:
            raise ConfigError("TOKEN_ENCRYPTION_KEY: the active key id is not among the keys")
        self._keys = {kid: AESGCM(key) for kid, key in keys.items()}
        self.active_key_id = active

    @property
    def key_ids(self) -> frozenset[str]:
        """Every key id this cipher decrypts."""
        return frozenset(self._keys)

    @classmethod
    def from_setting(cls, value: str, decrypt_only: str = "") -> TokenCipher:
        """Parse ``TOKEN_ENCRYPTION_KEY`` (the first key listed is the active one) and
        ``TOKEN_DECRYPT_ONLY_KEYS``."""
        if not value.strip():
            raise ConfigError("TOKEN_ENCRYPTION_KEY must be set (bbingest keygen makes one)")
        keys: dict[str, bytes] = {}
        items = [*value.split(","), *(decrypt_only.split(",") if decrypt_only.strip() else [])]
        for item in items:
            kid, _, encoded = item.strip().rpartition(":")
            key = _decode_key(encoded)
            kid = kid or _key_id(key)
            if kid in keys or "." in kid:
                raise ConfigError(f"TOKEN_ENCRYPTION_KEY: key id {kid!r} is repeated or has a dot")
            keys[kid] = key
        return cls(keys, active=next(iter(keys)))

    def encrypt(self, plaintext: str, *, context: str) -> str:
        """Encrypt ``plaintext`` bound to ``context`` (e.g. ``connection-id/refresh_token``)."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._keys[self.active_key_id].encrypt(nonce, plaintext.encode(), context.encode())
        blob = base64.urlsafe_b64encode(nonce + sealed).decode()
        return f"{VERSION}.{self.active_key_id}.{blob}"

    def is_current(self, token: str) -> bool:
        """True when ``token`` is already sealed under the active key."""
        return token.startswith(f"{VERSION}.{self.active_key_id}.")

    def reseal(self, token: str | None, *, context: str) -> str | None:
        """``token`` encrypted again under the active key, or None when there is nothing
        to do (no token, or already under the active key)."""
        if token is None or self.is_current(token):
            return None
        return self.encrypt(self.decrypt(token, context=context), context=context)

    def decrypt(self, token: str, *, context: str) -> str:
        """Decrypt a value made by :meth:`encrypt` with the same ``context``."""
        version, _, rest = token.partition(".")
        kid, _, blob = rest.partition(".")
        if version != VERSION:
            raise DecryptionError(f"unknown format {version!r}")
        aead = self._keys.get(kid)
        if aead is None:
            raise KeyMissing(kid)
        try:
            raw = base64.urlsafe_b64decode(blob)
            return aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode()).decode()
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise DecryptionError("stored token failed authentication") from exc
