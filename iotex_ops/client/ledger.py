"""The distributor's ledger: every payout it signs, in SQLite, written before the action is sent and after.

One row per signed transfer (its hash is the key): memo, voter, amount, nonce, the signed wire action
(public: it carries a signature, not a key) and its state: signed (written before sending), sent (the node
admitted it), final (success on chain), failed (final, but failed), void (its nonce was used by another
action: it can never be final). A kill -9 between any two steps leaves rows that the next run settles by
re-sending the identical signed action (same nonce, so at most one of them can ever be final) and reading
the chain. The chain, not the ledger, decides whether a voter was paid; the ledger makes a re-run resume
the very actions it signed, instead of signing new ones that could pay twice.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iotex_ops.client.errors import ClientError
from iotex_ops.sqlitedb import open_db, transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS payouts (
    hash TEXT PRIMARY KEY, memo TEXT NOT NULL, voter TEXT NOT NULL, amount TEXT NOT NULL, sender TEXT NOT NULL,
    nonce INTEGER NOT NULL, wire TEXT NOT NULL, state TEXT NOT NULL, height INTEGER, updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS payouts_by_memo ON payouts(memo, voter);
"""
STATES = ("signed", "sent", "final", "failed", "void")


@dataclass(frozen=True)
class Entry:
    hash: str
    memo: str
    voter: str
    amount: int
    sender: str
    nonce: int
    wire: dict[str, Any]
    state: str
    height: int | None


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            # WAL, synchronous=FULL: a row said `signed` is there after a power cut, before its action is sent
            self._db = open_db(path, _SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ClientError(f"ledger {path} cannot be opened: {exc}", "bad_ledger") from None

    def close(self) -> None:
        self._db.close()

    def record_signed(self, entries: list[Entry]) -> None:
        """Before sending: all of a batch in one transaction."""
        now = time.time()
        with transaction(self._db):
            self._db.executemany(
                "INSERT INTO payouts(hash, memo, voter, amount, sender, nonce, wire, state, height, updated) "
                "VALUES(?,?,?,?,?,?,?,?,?,?)",
                [
                    (e.hash, e.memo, e.voter, str(e.amount), e.sender, e.nonce, json.dumps(e.wire), "signed", None, now)
                    for e in entries
                ],
            )

    def mark(self, hashes: list[str], state: str, heights: dict[str, int] | None = None) -> None:
        assert state in STATES
        now = time.time()
        heights = heights or {}
        with transaction(self._db):
            self._db.executemany(
                "UPDATE payouts SET state=?, height=COALESCE(?, height), updated=? WHERE hash=?",
                [(state, heights.get(h), now, h) for h in hashes],
            )

    def entries(self, *, sender: str | None = None, memo: str | None = None, states: tuple[str, ...] = STATES) -> list[Entry]:
        marks = ",".join("?" * len(states))  # placeholders only: the values are bound
        q = f"SELECT hash, memo, voter, amount, sender, nonce, wire, state, height FROM payouts WHERE state IN ({marks})"  # noqa: S608
        args: list[Any] = list(states)
        if sender is not None:
            q += " AND sender=?"
            args.append(sender)
        if memo is not None:
            q += " AND memo=?"
            args.append(memo)
        rows = self._db.execute(q + " ORDER BY nonce", args).fetchall()
        return [Entry(h, m, v, int(a), s, int(n), json.loads(w), st, ht) for h, m, v, a, s, n, w, st, ht in rows]
