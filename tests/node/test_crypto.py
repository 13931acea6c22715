"""Keys, `io1` bech32 addresses, recoverable signatures and encrypted keystores."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import pickle
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iotex_node.crypto import bech32, keystore
from iotex_node.crypto.keys import PrivateKey, recover_address, valid_address
from iotex_node.errors import KeystoreError

SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
FAST_N = 2**10  # scrypt cost for tests; production uses keystore.DEFAULT_N


def _key(i: int) -> PrivateKey:
    return PrivateKey(hashlib.sha256(f"crypto-test-{i}".encode()).digest())


KEY = _key(1)
DIGEST = hashlib.sha256(b"a message").digest()


# --- bech32 ----------------------------------------------------------------------------------------


@given(st.binary(min_size=0, max_size=40))
def test_bech32_round_trips_any_payload(payload: bytes) -> None:
    text = bech32.encode("io", payload)
    assert text.startswith("io1")
    assert bech32.decode("io", text) == payload


@pytest.mark.parametrize(
    ("hrp", "text", "payload"),
    [
        ("a", "a12uel5l", b""),  # BIP-173 valid vectors
        ("abcdef", "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw", bytes.fromhex("00443214c74254b635cf84653a56d7c675be77df")),
    ],
)
def test_bech32_decodes_the_bip173_vectors(hrp: str, text: str, payload: bytes) -> None:
    assert bech32.decode(hrp, text) == payload
    assert bech32.encode(hrp, payload) == text


@given(st.binary(min_size=1, max_size=32), st.data())
def test_bech32_rejects_any_single_character_change(payload: bytes, data: st.DataObject) -> None:
    text = bech32.encode("io", payload)
    pos = data.draw(st.integers(min_value=3, max_value=len(text) - 1))
    replacement = data.draw(st.sampled_from([c for c in bech32.CHARSET if c != text[pos]]))
    assert bech32.decode("io", text[:pos] + replacement + text[pos + 1 :]) is None


def _bip173_polymod(values: list[int]) -> int:
    """BIP-173's reference checksum loop, bit by bit."""
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if ((top >> i) & 1) else 0
    return chk


@given(st.lists(st.integers(0, 31), max_size=120))
def test_bech32_checksum_is_bip173s_for_any_values(values: list[int]) -> None:
    assert bech32._polymod(values) == _bip173_polymod(values)


def test_bech32_rejects_wrong_prefix_uppercase_mixed_case_and_junk() -> None:
    text = bech32.encode("io", bytes(range(20)))
    assert bech32.decode("io", bech32.encode("it", bytes(range(20)))) is None
    assert bech32.decode("io", text.upper()) is None
    assert bech32.decode("io", text[:10] + text[10:].upper()) is None
    assert bech32.decode("io", text[:-1]) is None
    assert bech32.decode("io", "io1" + "q" * 100) is None  # longer than 90 characters
    assert bech32.decode("io", "io1b" + text[4:]) is None  # "b" is not in the charset
    assert bech32.decode("io", "io1qqqqq") is None  # shorter than a checksum
    assert bech32.decode("io", None) is None  # type: ignore[arg-type]


# --- addresses and signatures ----------------------------------------------------------------------


def test_address_is_io1_bech32_of_sha3_of_the_public_key() -> None:
    raw_pub = KEY._key.public_key.format(compressed=False)[1:]
    expected = bech32.encode("io", hashlib.sha3_256(raw_pub).digest()[-20:])
    assert KEY.address == expected
    assert KEY.address.startswith("io1")
    assert len(KEY.address) == 41
    assert valid_address(KEY.address)


def test_valid_address_refuses_non_strings_other_lengths_case_and_checksum() -> None:
    assert not valid_address(None)
    assert not valid_address(123)
    assert not valid_address(KEY.address.encode())
    assert not valid_address(bech32.encode("io", b"\x01" * 19))
    assert not valid_address(bech32.encode("io", b"\x01" * 32))
    assert not valid_address(KEY.address.upper())
    assert not valid_address(KEY.address[:-1] + ("q" if KEY.address[-1] != "q" else "p"))


def test_a_key_is_reproducible_from_its_secret() -> None:
    again = PrivateKey.from_hex(KEY.secret().hex())
    assert again.address == KEY.address
    assert again.public_key == KEY.public_key
    assert len(KEY.public_key) == 33
    assert PrivateKey().address != PrivateKey().address


def test_signature_recovers_to_the_signer_and_only_for_its_digest() -> None:
    sig = KEY.sign(DIGEST)
    assert len(sig) == 65
    assert recover_address(sig, DIGEST) == KEY.address
    other_digest = hashlib.sha256(b"another message").digest()
    assert recover_address(sig, other_digest) != KEY.address
    assert recover_address(_key(2).sign(DIGEST), DIGEST) == _key(2).address


def test_signatures_are_low_s_and_the_high_s_twin_is_refused() -> None:
    for i in range(20):
        digest = hashlib.sha256(bytes([i])).digest()
        sig = KEY.sign(digest)
        s = int.from_bytes(sig[32:64], "big")
        assert s <= SECP256K1_ORDER // 2
        # (r, n - s) with the other recovery id is the same key's signature in its second form: refused,
        # so no one can re-shape a vote or action signature into a different valid byte string.
        high_s = sig[:32] + (SECP256K1_ORDER - s).to_bytes(32, "big") + bytes([sig[64] ^ 1])
        assert recover_address(high_s, digest) is None


@pytest.mark.parametrize(
    ("signature", "digest"),
    [
        (b"\x00" * 65, DIGEST),  # r = s = 0
        (KEY.sign(DIGEST)[:64], DIGEST),  # too short
        (KEY.sign(DIGEST) + b"\x00", DIGEST),  # too long
        (KEY.sign(DIGEST)[:64] + b"\x09", DIGEST),  # recovery id out of range
        (KEY.sign(DIGEST), DIGEST[:31]),  # digest not 32 bytes
    ],
)
def test_recover_address_returns_none_for_invalid_input(signature: bytes, digest: bytes) -> None:
    assert recover_address(signature, digest) is None


def test_sign_refuses_anything_but_a_32_byte_digest() -> None:
    with pytest.raises(ValueError, match="32-byte"):
        KEY.sign(b"not hashed")


def test_private_key_repr_and_str_never_show_the_secret() -> None:
    secret_hex = KEY.secret().hex()
    for text in (repr(KEY), str(KEY), f"{KEY}", f"{KEY!r}", repr([KEY]), repr({"k": KEY})):
        assert secret_hex not in text
        assert secret_hex.upper() not in text
        assert KEY.address in text
        assert "redacted" in text


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_private_key_refuses_to_be_pickled(protocol: int) -> None:
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(KEY, protocol=protocol)


def test_private_key_refuses_to_be_copied_through_reduce() -> None:
    with pytest.raises(TypeError, match="cannot be pickled"):
        copy.deepcopy(KEY)


# --- keystore --------------------------------------------------------------------------------------


def test_keystore_round_trip() -> None:
    doc = keystore.encrypt(KEY, "correct horse", n=FAST_N)
    assert doc["address"] == KEY.address
    assert KEY.secret().hex() not in json.dumps(doc)
    again = keystore.decrypt(doc, "correct horse")
    assert again.address == KEY.address
    assert again.secret() == KEY.secret()


def test_keystore_encryptions_of_one_key_differ() -> None:
    a = keystore.encrypt(KEY, "pw", n=FAST_N)
    b = keystore.encrypt(KEY, "pw", n=FAST_N)
    assert a["ciphertext"] != b["ciphertext"]  # fresh salt and nonce each time


def test_keystore_wrong_password_is_a_clear_keystore_error() -> None:
    doc = keystore.encrypt(KEY, "right", n=FAST_N)
    with pytest.raises(KeystoreError, match="wrong password") as err:
        keystore.decrypt(doc, "wrong")
    assert KEY.secret().hex() not in str(err.value)


def _flip_hex(text: str, pos: int = 0) -> str:
    return text[:pos] + ("0" if text[pos] != "0" else "1") + text[pos + 1 :]


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda d: d.update(ciphertext=_flip_hex(d["ciphertext"], 5)), id="ciphertext"),
        pytest.param(lambda d: d.update(ciphertext=_flip_hex(d["ciphertext"], len(d["ciphertext"]) - 1)), id="tag"),
        pytest.param(lambda d: d.update(address=_key(2).address), id="address"),
        pytest.param(lambda d: d.update(cipher={**d["cipher"], "nonce": _flip_hex(d["cipher"]["nonce"])}), id="nonce"),
        pytest.param(lambda d: d.update(kdf={**d["kdf"], "salt": _flip_hex(d["kdf"]["salt"])}), id="salt"),
    ],
)
def test_keystore_tampering_is_detected(tamper: object) -> None:
    doc = keystore.encrypt(KEY, "pw", n=FAST_N)
    tamper(doc)  # type: ignore[operator]
    with pytest.raises(KeystoreError, match=r"wrong password|altered"):
        keystore.decrypt(doc, "pw")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": "other/1"}, "version"),
        ({"kdf": None}, "malformed"),
        ({"kdf": {"name": "scrypt", "n": 1024, "r": 8, "p": 1}}, "malformed"),  # no salt
        ({"kdf": {"name": "scrypt", "n": 1000, "r": 8, "p": 1, "salt": "00" * 16}}, "malformed"),  # n not 2**k
        ({"kdf": {"name": "scrypt", "n": "x", "r": 8, "p": 1, "salt": "00" * 16}}, "malformed"),
        ({"kdf": {"name": "scrypt", "n": 2**70, "r": 8, "p": 1, "salt": "00" * 16}}, "out of range"),
        # p multiplies the work within scrypt's memory limit (p = 2**16 costs minutes, 2**17 at n = 2**15
        # hours): a tampered file must not make a node start spin
        ({"kdf": {"name": "scrypt", "n": 1024, "r": 8, "p": 2**16, "salt": "00" * 16}}, "out of range"),
        ({"ciphertext": "zz"}, "malformed"),
        ({"cipher": {}}, "malformed"),
    ],
)
def test_keystore_malformed_documents_are_keystore_errors(change: dict[str, object], message: str) -> None:
    doc = {**keystore.encrypt(KEY, "pw", n=FAST_N), **change}
    with pytest.raises(KeystoreError, match=message):
        keystore.decrypt(doc, "pw")


def test_keystore_document_without_fields_is_malformed() -> None:
    with pytest.raises(KeystoreError, match="malformed"):
        keystore.decrypt({"version": keystore.VERSION}, "pw")


def test_keystore_file_round_trip_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    keystore.write(path, KEY, "pw", n=FAST_N)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert KEY.secret().hex() not in path.read_text()
    assert keystore.read(path, "pw").address == KEY.address


def test_keystore_overwriting_a_readable_file_makes_it_0600(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    path.write_text("{}")
    os.chmod(path, 0o644)
    keystore.write(path, KEY, "pw", n=FAST_N)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_keystore_file_with_wrong_password_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    keystore.write(path, KEY, "pw", n=FAST_N)
    with pytest.raises(KeystoreError, match="wrong password") as err:
        keystore.read(path, "nope")
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "does not exist"), ("not json", "cannot be read"), ("[1, 2]", "not a JSON object")],
)
def test_keystore_unreadable_files_are_keystore_errors(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "key.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(KeystoreError, match=message):
        keystore.read(path, "pw")


@settings(max_examples=25, deadline=None)
@given(st.text(max_size=20))
def test_keystore_round_trips_any_password(password: str) -> None:
    assert keystore.decrypt(keystore.encrypt(KEY, password, n=FAST_N), password).address == KEY.address
