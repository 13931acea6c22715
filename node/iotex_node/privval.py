"""What this delegate has signed: the guard against double signing, and the messages themselves.

A delegate must never sign two different messages for one height, round and step, not even across a
crash: that is equivocation, and enough of it breaks finality. Remembering only *that* it signed is not
enough, though. A delegate that restarts after prevoting, and remembers only the record, can neither
re-send its prevote (it no longer has the signed message) nor vote otherwise (that would contradict
the record), so its round never gathers two-thirds once every delegate restarted: the chain stalls for
good. Tendermint's privval keeps the signature in its last-sign state for this reason.

So this log keeps, for the height being decided, every message this delegate signed, exactly as it was
sent (`orjson.dumps(msg)` gives back the same bytes), written before the message leaves the process.
After a restart the node takes up the round and step it had reached, feeds its own votes back to the
consensus machine and re-sends them; a repeated request to sign the same thing gets the stored message.

Persistence is two callables (load and save a JSON document), so the node keeps the log in its
database's meta table (key `privval`, which maintenance treats as a local signing record) and tests
keep it in memory. Older nodes wrote only the last-sign state (`h`, `r`, `s`, `hash`); such a record is
still honoured as the floor below which nothing is signed.

Hot standby (two nodes holding one delegate key, one signing): the log also keeps a *fence*, the lowest
height this node may sign at, and the highest height and round it has *seen* signed with its key by
another holder (gossip, or a block's certificate that it did not sign). Promotion raises the fence above
everything the other holder can have signed (Node.activate; docs/node.md, "Hot standby"), and nothing below
the fence is ever signed, whatever the operator does. The fence is persisted with the log, so a restart
cannot lower it. `on_record` (optional) receives each document together with the entry just signed, in
place of `save`, so that the node can write the log and its signing history in one transaction.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

STEPS = {"proposal": 0, "prevote": 1, "precommit": 2}
KINDS = {v: k for k, v in STEPS.items()}
# Messages kept per height: three per round, so the last ten rounds. A height that takes more rounds than
# that has lost its early rounds' messages for good anyway (their proposals were re-proposed or replaced).
KEEP = 30


class Verdict(enum.Enum):
    NEW = "new"  # nothing signed here yet: sign, record, send
    SIGNED = "signed"  # exactly this was signed already: send the stored message again
    CONFLICT = "conflict"  # something else was signed for this height, round and step (or later): refuse


@dataclass(frozen=True, slots=True)
class Signed:
    kind: str  # "proposal" | "prevote" | "precommit"
    height: int
    round: int
    value: str  # the block hash in hex, "" for nil
    msg: dict[str, Any] | None  # the message as sent; None for a record written by an older node

    @property
    def step(self) -> int:
        return STEPS[self.kind]

    @property
    def position(self) -> tuple[int, int, int]:
        return (self.height, self.round, self.step)


class SignLog:
    def __init__(
        self,
        load: Callable[[], Any],
        save: Callable[[dict[str, Any]], None],
        keep: int = KEEP,
        on_record: Callable[[dict[str, Any], Signed], None] | None = None,
    ) -> None:
        self._save = save
        self._on_record = on_record
        self._keep = keep
        self._last: Signed | None = None
        self._msgs: list[Signed] = []
        self._floor = 0  # nothing is signed below this height (the fence a promotion sets)
        self._seen: tuple[int, int] | None = None  # highest (height, round) another holder of the key signed
        self._read(load())

    @classmethod
    def in_memory(cls, disk: dict[str, Any], key: str = "privval") -> SignLog:
        """A log kept in `disk` (a dict that outlives the node that uses it): for simulations and tests."""
        return cls(lambda: disk.get(key), lambda doc: disk.__setitem__(key, doc))

    def _read(self, doc: Any) -> None:
        if not isinstance(doc, dict):
            return
        try:
            self._floor = int(doc.get("floor") or 0)
            seen = doc.get("seen")
            self._seen = (int(seen[0]), int(seen[1])) if seen else None
        except (TypeError, ValueError, IndexError):
            raise ValueError("the signing record (meta 'privval') has an unreadable fence: refusing to guess") from None
        if "h" not in doc:
            return  # a fence set before anything was signed
        try:
            h, r, s, value = int(doc["h"]), int(doc["r"]), int(doc["s"]), str(doc.get("hash") or "")
            self._last = Signed(KINDS[s], h, r, value, None)
            for m in doc.get("msgs") or ():
                self._msgs.append(Signed(str(m["kind"]), h, int(m["r"]), str(m["value"]), dict(m["msg"])))
        except (KeyError, TypeError, ValueError):
            # A damaged record must not be read as "nothing signed": keep what could be read as the floor.
            self._msgs = []
            if self._last is None:
                raise ValueError("the signing record (meta 'privval') is unreadable: refusing to guess what was signed") from None

    # --- queries -----------------------------------------------------------------------------------

    @property
    def last(self) -> Signed | None:
        """The furthest (height, round, step) this delegate signed."""
        return self._last

    @property
    def floor(self) -> int:
        """The lowest height this node may sign at (0: no fence)."""
        return self._floor

    @property
    def seen(self) -> tuple[int, int] | None:
        """The highest (height, round) seen signed with this key by another holder."""
        return self._seen

    def at(self, height: int) -> list[Signed]:
        """The messages signed at `height`, in the order they were signed."""
        return [m for m in self._msgs if m.height == height and m.msg is not None]

    def find(self, kind: str, height: int, round_: int) -> Signed | None:
        for m in reversed(self._msgs):
            if (m.kind, m.height, m.round) == (kind, height, round_):
                return m
        last = self._last
        if last is not None and (last.kind, last.height, last.round) == (kind, height, round_):
            return last
        return None

    def check(self, kind: str, height: int, round_: int, block_hash: bytes | None) -> tuple[Verdict, Signed | None]:
        value = block_hash.hex() if block_hash else ""
        if height < self._floor:
            return Verdict.CONFLICT, None  # below the fence: another holder of the key may have signed here
        found = self.find(kind, height, round_)
        if found is not None:
            if found.value != value:
                return Verdict.CONFLICT, found
            # The same thing again: its stored message, or (an older node's record) sign it again, which
            # gives the same bytes since signatures are deterministic (RFC 6979).
            return (Verdict.SIGNED, found) if found.msg is not None else (Verdict.NEW, None)
        last = self._last
        if last is not None and (height, round_, STEPS[kind]) < last.position:
            return Verdict.CONFLICT, last  # never sign behind what was signed: a restart must not reopen it
        return Verdict.NEW, None

    def signed_value(self, kind: str, height: int, round_: int) -> str | None:
        found = self.find(kind, height, round_)
        return None if found is None else found.value

    def own(self, kind: str, height: int, round_: int) -> bool | None:
        """Whether this node signed `kind` at height/round: True, False, or None when it cannot tell (the
        height is below the last one it signed, whose messages are no longer kept)."""
        if self.find(kind, height, round_) is not None:
            return True
        last = self._last
        if last is None or height > last.height or (height == last.height and round_ > last.round):
            return False
        if height == last.height:
            return False if any(m.height == height for m in self._msgs) else None
        return None

    # --- recording ---------------------------------------------------------------------------------

    def note_seen(self, height: int, round_: int) -> bool:
        """Another holder of the key signed at height/round; kept (persisted with the next write or fence).
        True when it is higher than anything seen before."""
        if self._seen is not None and (height, round_) <= self._seen:
            return False
        self._seen = (height, round_)
        return True

    def fence(self, height: int) -> int:
        """Raise the fence to `height` (never lowers it) and persist it; returns the fence in force."""
        self._floor = max(self._floor, height)
        self._save(self._doc(self._last, self._msgs))
        return self._floor

    def _doc(self, last: Signed | None, msgs: list[Signed]) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        if last is not None:
            doc = {
                "h": last.height,
                "r": last.round,
                "s": last.step,
                "hash": last.value,
                "msgs": [{"kind": m.kind, "r": m.round, "value": m.value, "msg": m.msg} for m in msgs if m.height == last.height],
            }
        if self._floor:
            doc["floor"] = self._floor
        if self._seen is not None:
            doc["seen"] = list(self._seen)
        return doc

    def record(self, kind: str, height: int, round_: int, block_hash: bytes | None, msg: dict[str, Any]) -> Signed:
        """Persist a message about to be sent; raises whatever `save` raises (the caller must not send then)."""
        entry = Signed(kind, height, round_, block_hash.hex() if block_hash else "", msg)
        msgs = _trim([m for m in self._msgs if m.height == height] + [entry], self._keep)
        last = entry if self._last is None or entry.position >= self._last.position else self._last
        doc = self._doc(last, msgs)
        if self._on_record is not None:
            self._on_record(doc, entry)
        else:
            self._save(doc)
        self._last, self._msgs = last, [m for m in msgs if m.height == last.height]
        return entry

    def resume_point(self, height: int) -> tuple[int, str] | None:
        """The round and step this delegate had reached at `height` by what it signed, or None."""
        last = self._last
        if last is None or last.height != height:
            return None
        return last.round, last.kind


def _trim(msgs: list[Signed], keep: int) -> list[Signed]:
    """At most `keep` messages, dropping the oldest nil votes first: a prevote for a block may be the
    vote that proves a polka others need to unlock, however many rounds ago it was signed."""
    msgs = list(msgs)
    while len(msgs) > keep:
        nil = next((i for i, m in enumerate(msgs) if m.value == "" and m is not msgs[-1]), None)
        del msgs[0 if nil is None else nil]
    return msgs
