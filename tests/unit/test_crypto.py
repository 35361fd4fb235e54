import base64

import pytest

from worker.crypto import TokenCipher, generate_key, key_id_of, uncovered
from worker.errors import ConfigError, DecryptionError, KeyMissing


def test_round_trip_bound_to_context() -> None:
    cipher = TokenCipher.from_setting(generate_key())
    sealed = cipher.encrypt("secret-token", context="c1/access")
    assert "secret-token" not in sealed
    assert cipher.decrypt(sealed, context="c1/access") == "secret-token"
    with pytest.raises(DecryptionError):
        cipher.decrypt(sealed, context="c2/access")


def test_each_encryption_uses_a_fresh_nonce() -> None:
    cipher = TokenCipher.from_setting(generate_key())
    assert cipher.encrypt("t", context="c") != cipher.encrypt("t", context="c")


def test_rotation_old_key_still_decrypts_new_key_encrypts() -> None:
    old, new = generate_key(), generate_key()
    sealed_old = TokenCipher.from_setting(f"k1:{old}").encrypt("t", context="c")
    rotated = TokenCipher.from_setting(f"k2:{new},k1:{old}")
    assert rotated.decrypt(sealed_old, context="c") == "t"
    assert rotated.encrypt("t", context="c").startswith("v1.k2.")


def test_unknown_key_and_tampering_are_refused() -> None:
    sealed = TokenCipher.from_setting(generate_key()).encrypt("t", context="c")
    with pytest.raises(DecryptionError):
        TokenCipher.from_setting(generate_key()).decrypt(sealed, context="c")
    cipher = TokenCipher.from_setting(generate_key())
    sealed = cipher.encrypt("t", context="c")
    prefix, blob = sealed.rsplit(".", 1)
    raw = bytearray(base64.urlsafe_b64decode(blob))
    raw[-1] ^= 0x01
    flipped = f"{prefix}.{base64.urlsafe_b64encode(bytes(raw)).decode()}"
    with pytest.raises(DecryptionError):
        cipher.decrypt(flipped, context="c")


@pytest.mark.parametrize("value", ["", "not-base64!!", "c2hvcnQ=", "a:x,a:y"])
def test_bad_key_settings_are_config_errors(value: str) -> None:
    with pytest.raises(ConfigError, match="TOKEN_ENCRYPTION_KEY"):
        TokenCipher.from_setting(value)


def test_reseal_moves_a_value_to_the_active_key_once() -> None:
    old_key, new_key = generate_key(), generate_key()
    old = TokenCipher.from_setting(f"k1:{old_key}")
    both = TokenCipher.from_setting(f"k2:{new_key},k1:{old_key}")
    sealed = old.encrypt("RT", context="c1/refresh")
    moved = both.reseal(sealed, context="c1/refresh")
    assert moved is not None
    assert moved.startswith("v1.k2.")
    assert TokenCipher.from_setting(f"k2:{new_key}").decrypt(moved, context="c1/refresh") == "RT"
    assert both.reseal(moved, context="c1/refresh") is None  # already under the active key
    assert both.reseal(None, context="c1/refresh") is None


def test_a_decrypt_only_key_decrypts_but_never_encrypts() -> None:
    old, new = "k1:" + generate_key(), "k2:" + generate_key()
    rolled_out = TokenCipher.from_setting(old, decrypt_only=new)
    active_new = TokenCipher.from_setting(f"{new},{old}")

    assert rolled_out.active_key_id == "k1"
    assert rolled_out.key_ids == {"k1", "k2"}
    sealed = active_new.encrypt("refresh", context="c/refresh")
    assert key_id_of(sealed) == "k2"
    assert rolled_out.decrypt(sealed, context="c/refresh") == "refresh"
    assert key_id_of(rolled_out.encrypt("x", context="c")) == "k1"


def test_a_missing_key_is_its_own_error() -> None:
    sealed = TokenCipher.from_setting("k2:" + generate_key()).encrypt("t", context="c")
    lacking = TokenCipher.from_setting("k1:" + generate_key())

    with pytest.raises(KeyMissing) as missing:
        lacking.decrypt(sealed, context="c")
    assert missing.value.key_id == "k2"
    assert "k2" in (uncovered({"k1", "k2"}, lacking) or "")
    assert uncovered({"k1"}, lacking) is None
