"""Token encryption at rest: AES-256-GCM with key ids, so keys can be rotated.

``TOKEN_ENCRYPTION_KEY`` holds one or more keys, ``kid:base64key`` separated by commas;
the first encrypts, all decrypt. A bare base64 key gets a key id derived from its hash.
A ciphertext reads ``v1.<kid>.<base64(nonce + ciphertext)>`` and is bound to its row and
column (associated data), so a token copied onto another connection does not decrypt.
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

from worker.errors import ConfigError

VERSION: Final = "v1"
NONCE_BYTES: Final = 12
KEY_BYTES: Final = 32


class DecryptionError(Exception):
    """A stored token cannot be decrypted: unknown key id, tampering, or another row."""


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

    @classmethod
    def from_setting(cls, value: str) -> TokenCipher:
        """Parse ``TOKEN_ENCRYPTION_KEY``; the first key listed is the active one."""
        if not value.strip():
            raise ConfigError("TOKEN_ENCRYPTION_KEY must be set (bbingest keygen makes one)")
        keys: dict[str, bytes] = {}
        for item in value.split(","):
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
        aead = self._keys.get(kid)
        if version != VERSION or aead is None:
            raise DecryptionError(f"no key for key id {kid!r}")
        try:
            raw = base64.urlsafe_b64decode(blob)
            return aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode()).decode()
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise DecryptionError("stored token failed authentication") from exc
