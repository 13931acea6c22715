"""Canonical encoding: sorted-key compact JSON (orjson) is what gets hashed and signed."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

_OPTS = orjson.OPT_SORT_KEYS


def canonical(obj: Any) -> bytes:
    return orjson.dumps(obj, option=_OPTS)


def digest(obj: Any) -> bytes:
    return hashlib.sha256(canonical(obj)).digest()


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)


def merkle_root(leaves: list[bytes]) -> bytes:
    """Binary sha256 Merkle root of the leaves (the last one paired with itself on odd levels)."""
    if not leaves:
        return b"\x00" * 32
    level = leaves
    while len(level) > 1:
        if len(level) % 2:
            level = [*level, level[-1]]
        level = [hashlib.sha256(level[i] + level[i + 1]).digest() for i in range(0, len(level), 2)]
    return level[0]
