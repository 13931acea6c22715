"""Bech32 (BIP-173) encoding, as IoTeX uses for `io1...` addresses."""

from __future__ import annotations

CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_VALUE = {c: i for i, c in enumerate(CHARSET)}
_GEN = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


# For each value of the 5 bits shifted out of the checksum, the XOR of the generators those bits select:
# one lookup per character instead of five conditional XORs (BIP-173's loop, about 4x faster in Python;
# a node validates every address of its genesis at each start, thousands of them on a real network).
_GEN_XOR = tuple(
    _GEN[0] * (b & 1) ^ _GEN[1] * (b >> 1 & 1) ^ _GEN[2] * (b >> 2 & 1) ^ _GEN[3] * (b >> 3 & 1) ^ _GEN[4] * (b >> 4 & 1)
    for b in range(32)
)


def _polymod(values: list[int]) -> int:
    chk = 1
    for v in values:
        chk = ((chk & 0x1FFFFFF) << 5 ^ v) ^ _GEN_XOR[chk >> 25]
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(x) >> 5 for x in hrp] + [0] + [ord(x) & 31 for x in hrp]


def _convertbits(data: bytes | list[int], frombits: int, tobits: int, pad: bool) -> list[int] | None:
    acc = 0
    bits = 0
    ret: list[int] = []
    maxv = (1 << tobits) - 1
    for value in data:
        if value < 0 or (value >> frombits):
            return None
        acc = (acc << frombits) | value
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            ret.append((acc >> bits) & maxv)
    if pad:
        if bits:
            ret.append((acc << (tobits - bits)) & maxv)
    elif bits >= frombits or ((acc << (tobits - bits)) & maxv):
        return None
    return ret


def encode(hrp: str, payload: bytes) -> str:
    data = _convertbits(payload, 8, 5, True)
    assert data is not None
    values = _hrp_expand(hrp) + data
    polymod = _polymod(values + [0] * 6) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(CHARSET[d] for d in data + checksum)


def decode(hrp: str, text: str) -> bytes | None:
    """The payload of a bech32 string with the given prefix, or None when it is not one."""
    if not isinstance(text, str) or len(text) > 90 or text.lower() != text:
        return None
    pos = text.rfind("1")
    if pos < 1 or pos + 7 > len(text) or text[:pos] != hrp:
        return None
    try:
        data = [_VALUE[c] for c in text[pos + 1 :]]
    except KeyError:
        return None
    if _polymod(_hrp_expand(hrp) + data) != 1:
        return None
    out = _convertbits(data[:-6], 5, 8, False)
    return bytes(out) if out is not None else None
