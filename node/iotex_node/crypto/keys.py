"""secp256k1 keys (libsecp256k1 through coincurve) and `io` bech32 addresses.

An address is bech32("io", last 20 bytes of sha3-256(uncompressed public key without its prefix)),
the IoTeX construction with sha3-256 in place of keccak-256 (same security, in the standard library).
Signatures are 65-byte recoverable ECDSA over a 32-byte digest; libsecp256k1 produces low-S signatures
only, and recover_address refuses high-S ones (which libsecp256k1's recovery would accept), so a signature
cannot be re-shaped into a second valid one (no malleability).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import coincurve

from iotex_node.crypto import bech32

HRP = "io"
# Order of the secp256k1 group; a signature's s must be at most half of it (BIP-62 low-S rule).
_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_ORDER = _ORDER // 2


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def address_from_pubkey(pub: coincurve.PublicKey) -> str:
    raw = pub.format(compressed=False)[1:]
    return bech32.encode(HRP, hashlib.sha3_256(raw).digest()[-20:])


@lru_cache(maxsize=65536)
def _addr_from_uncompressed(raw: bytes) -> str:
    return bech32.encode(HRP, hashlib.sha3_256(raw[1:]).digest()[-20:])


def recover_address(signature: bytes, digest: bytes) -> str | None:
    """The address that made `signature` over `digest`, or None when the signature is not valid."""
    if len(signature) != 65 or len(digest) != 32:
        return None
    if int.from_bytes(signature[32:64], "big") > _HALF_ORDER:
        return None  # (r, n - s) with the other recovery id recovers the same key: refuse the second form
    try:
        pub = coincurve.PublicKey.from_signature_and_message(signature, digest, hasher=None)
    except Exception:  # coincurve raises plain Exception/ValueError for any invalid signature
        return None
    return _addr_from_uncompressed(pub.format(compressed=False))


def valid_address(text: object) -> bool:
    return isinstance(text, str) and _valid_address_str(text)


# Addresses repeat across actions (senders, recipients); checking a bech32 checksum in pure Python
# costs ~20 us, which at a thousand actions a second was the node's largest single cost.
@lru_cache(maxsize=65536)
def _valid_address_str(text: str) -> bool:
    payload = bech32.decode(HRP, text)
    return payload is not None and len(payload) == 20


class PrivateKey:
    """A secp256k1 private key. Its secret never appears in repr/str, logs or errors."""

    __slots__ = ("_key", "address")

    def __init__(self, secret: bytes | None = None) -> None:
        self._key = coincurve.PrivateKey(secret) if secret is not None else coincurve.PrivateKey()
        self.address = address_from_pubkey(self._key.public_key)

    @classmethod
    def from_hex(cls, text: str) -> PrivateKey:
        return cls(bytes.fromhex(text))

    def secret(self) -> bytes:
        """The raw 32 secret bytes, for a keystore only."""
        return bytes(self._key.secret)

    @property
    def public_key(self) -> bytes:
        return bytes(self._key.public_key.format(compressed=True))

    def sign(self, digest: bytes) -> bytes:
        if len(digest) != 32:
            raise ValueError("sign takes a 32-byte digest")
        return bytes(self._key.sign_recoverable(digest, hasher=None))

    def __repr__(self) -> str:
        return f"PrivateKey(address={self.address}, secret=<redacted>)"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[object, ...]:  # never pickled by accident into a log, cache or artifact
        raise TypeError("PrivateKey cannot be pickled")
