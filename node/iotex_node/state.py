"""The world state: a key-value map with an incrementally maintained state root.

Keys are short strings with a prefix per kind ("a/" accounts, "b/" buckets, "c/" candidates, ...);
values are canonical JSON bytes. The state root is a multiset hash (sum modulo 2**256 of
sha256(key, value) over every entry), so a block costs O(changed keys) to re-root instead of O(state).
It commits to the whole state and lets any two nodes compare state cheaply; it does not give Merkle
inclusion proofs, which nothing in this project needs.

`Overlay` is a copy-on-write view used to execute a block without touching the base state until the
block is final; `changes()` is what gets committed, and what it replaced is the undo record.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import orjson

_MOD = 2**256
_OPTS = orjson.OPT_SORT_KEYS


def encode(value: Any) -> bytes:
    return orjson.dumps(value, option=_OPTS)


def entry_hash(key: str, value: bytes) -> int:
    return int.from_bytes(hashlib.sha256(key.encode() + b"\x00" + value).digest(), "big")


class State:
    """The committed state in memory, mirrored in the database."""

    def __init__(self, data: dict[str, bytes] | None = None) -> None:
        self.data: dict[str, bytes] = dict(data or {})
        self._acc = sum(entry_hash(k, v) for k, v in self.data.items()) % _MOD

    def root(self) -> bytes:
        return self._acc.to_bytes(32, "big")

    def get_raw(self, key: str) -> bytes | None:
        return self.data.get(key)

    def get(self, key: str) -> Any:
        raw = self.data.get(key)
        return None if raw is None else orjson.loads(raw)

    def keys_with_prefix(self, prefix: str) -> Iterator[str]:
        return (k for k in self.data if k.startswith(prefix))

    def root_after(self, changes: dict[str, bytes | None]) -> bytes:
        acc = self._acc
        for key, new in changes.items():
            old = self.data.get(key)
            if old is not None:
                acc -= entry_hash(key, old)
            if new is not None:
                acc += entry_hash(key, new)
        return (acc % _MOD).to_bytes(32, "big")

    def apply(self, changes: dict[str, bytes | None]) -> dict[str, bytes | None]:
        """Apply changes; return the undo record (each key's previous value, None if it was absent)."""
        undo: dict[str, bytes | None] = {}
        acc = self._acc
        for key, new in changes.items():
            old = self.data.get(key)
            undo[key] = old
            if old is not None:
                acc -= entry_hash(key, old)
            if new is None:
                self.data.pop(key, None)
            else:
                self.data[key] = new
                acc += entry_hash(key, new)
        self._acc = acc % _MOD
        return undo


_DELETED = object()


class Overlay:
    """Copy-on-write view over a State (or over another Overlay, for per-action scratch space)."""

    def __init__(self, base: State | Overlay) -> None:
        self.base = base
        self._writes: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        if key in self._writes:
            v = self._writes[key]
            return None if v is _DELETED else v
        return self.base.get(key)

    def put(self, key: str, value: Any) -> None:
        self._writes[key] = value

    def delete(self, key: str) -> None:
        self._writes[key] = _DELETED

    def keys_with_prefix(self, prefix: str) -> Iterator[str]:
        seen = set()
        for k in self.base.keys_with_prefix(prefix):
            seen.add(k)
            if self._writes.get(k, None) is not _DELETED:
                yield k
        for k, v in self._writes.items():
            if k.startswith(prefix) and k not in seen and v is not _DELETED:
                yield k

    def merge_into_parent(self) -> None:
        assert isinstance(self.base, Overlay)
        self.base._writes.update(self._writes)

    def changes(self) -> dict[str, bytes | None]:
        """Encoded changes against the root State, dropping writes that restore the original value."""
        assert isinstance(self.base, State)
        out: dict[str, bytes | None] = {}
        for key, v in self._writes.items():
            new = None if v is _DELETED else encode(v)
            if new != self.base.data.get(key):
                out[key] = new
        return out
