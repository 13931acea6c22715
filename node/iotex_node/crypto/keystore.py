"""Encrypted keystore files: scrypt key derivation and AES-256-GCM (authenticated) encryption.

The file carries the address in clear so an operator can tell keystores apart without the password.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from iotex_node.crypto.keys import PrivateKey
from iotex_node.errors import KeystoreError

VERSION = "iotex-node-keystore/1"
# scrypt n=2**15 costs ~32 MiB and ~0.1 s: slow enough against guessing, fast enough for a node start.
DEFAULT_N = 2**15
# Bounds on the cost parameters a keystore file may ask for: an altered file must not make a node start
# spin for hours (p multiplies the work without raising memory, so maxmem alone does not bound it).
MAX_N = 2**20
MAX_R = 32
MAX_P = 16


def encrypt(key: PrivateKey, password: str, n: int = DEFAULT_N) -> dict[str, object]:
    salt = os.urandom(16)
    nonce = os.urandom(12)
    dk = hashlib.scrypt(password.encode(), salt=salt, n=n, r=8, p=1, dklen=32, maxmem=256 * 1024 * 1024)
    ct = AESGCM(dk).encrypt(nonce, key.secret(), key.address.encode())
    return {
        "version": VERSION,
        "address": key.address,
        "kdf": {"name": "scrypt", "n": n, "r": 8, "p": 1, "salt": salt.hex()},
        "cipher": {"name": "aes-256-gcm", "nonce": nonce.hex()},
        "ciphertext": ct.hex(),
    }


def decrypt(doc: dict[str, object], password: str) -> PrivateKey:
    try:
        if doc.get("version") != VERSION:
            raise KeystoreError(f"keystore version {doc.get('version')!r} is not {VERSION}")
        kdf = doc["kdf"]
        cipher = doc["cipher"]
        assert isinstance(kdf, dict) and isinstance(cipher, dict)
        address = str(doc["address"])
        n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
        if not (1 < n <= MAX_N and 1 <= r <= MAX_R and 1 <= p <= MAX_P):
            raise KeystoreError(f"keystore scrypt parameters n={n} r={r} p={p} are out of range")
        dk = hashlib.scrypt(
            password.encode(),
            salt=bytes.fromhex(kdf["salt"]),
            n=n,
            r=r,
            p=p,
            dklen=32,
            maxmem=256 * 1024 * 1024,
        )
        secret = AESGCM(dk).decrypt(bytes.fromhex(cipher["nonce"]), bytes.fromhex(str(doc["ciphertext"])), address.encode())
    except InvalidTag:
        raise KeystoreError("wrong password for keystore (or the file was altered)") from None
    except KeystoreError:
        raise
    except (KeyError, ValueError, TypeError, AssertionError) as exc:
        raise KeystoreError(f"keystore is malformed: {type(exc).__name__}") from None
    key = PrivateKey(secret)
    if key.address != address:
        raise KeystoreError(f"keystore decrypts to {key.address}, not the {address} it names")
    return key


def write(path: Path, key: PrivateKey, password: str, n: int = DEFAULT_N) -> None:
    data = json.dumps(encrypt(key, password, n), indent=2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        # The mode given to os.open applies only when it creates the file: an existing one keeps its mode.
        os.fchmod(fh.fileno(), 0o600)
        fh.write(data)


def read(path: Path, password: str) -> PrivateKey:
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise KeystoreError(f"keystore {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise KeystoreError(f"keystore {path} cannot be read: {exc}") from None
    if not isinstance(doc, dict):
        raise KeystoreError(f"keystore {path} is not a JSON object")
    try:
        return decrypt(doc, password)
    except KeystoreError as exc:
        raise KeystoreError(f"{path}: {exc}") from None
