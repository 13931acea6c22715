"""The node's database: SQLite in WAL mode, one transaction per block.

Why SQLite: each block, its state changes, its undo record and its receipts go in one ACID transaction,
so a kill -9 or power loss at any instant leaves either the previous block or the new one, never half;
it ships with Python (nothing to install on delegate hosts), is among the most tested storage engines in
existence, and has an online backup API that snapshots will use. With synchronous=FULL a committed
block survives power loss; WAL keeps readers (the API) from blocking the writer. LMDB would be a little
faster at this size, RocksDB faster at much larger sizes; neither is needed at a block a second.

Tables: blocks (height -> block), actions (hash -> where and how it ended), state (key -> value),
undo (height -> previous values of the keys that block changed), meta (small named values).

The books (what rewards bookkeeping reads; derived from blocks, not part of the state root, written in the
block's transaction and removed by a rollback with it): granted (the rewards each block granted, by
epoch and owner), epoch_votes (every candidate's votes and bucket at an epoch's end), account_actions
(each address's actions: those it sent and the transfers it received). A database from before the books
has them from its next block on.
"""

from __future__ import annotations

import contextlib
import errno
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from iotex_node.errors import DiskFull, StorageError

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (height INTEGER PRIMARY KEY, hash BLOB NOT NULL UNIQUE, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS actions (
    hash BLOB PRIMARY KEY, height INTEGER NOT NULL, idx INTEGER NOT NULL, receipt BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS undo (height INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS granted (
    height INTEGER NOT NULL, epoch INTEGER NOT NULL, owner TEXT NOT NULL, kind TEXT NOT NULL, amount TEXT NOT NULL,
    PRIMARY KEY (height, owner, kind)
);
CREATE INDEX IF NOT EXISTS granted_by_epoch ON granted(epoch, owner);
CREATE TABLE IF NOT EXISTS epoch_votes (epoch INTEGER PRIMARY KEY, height INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS account_actions (
    address TEXT NOT NULL, height INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL,
    PRIMARY KEY (address, height, idx)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS account_actions_by_height ON account_actions(height);
CREATE TABLE IF NOT EXISTS signed (
    height INTEGER NOT NULL, round INTEGER NOT NULL, step INTEGER NOT NULL, value TEXT NOT NULL, at_ms INTEGER NOT NULL,
    PRIMARY KEY (height, round, step)
) WITHOUT ROWID;
"""
# The signing history (table `signed`): every (height, round, step, value) this node signed, newest
# SIGNED_KEEP heights, written with the sign log in one transaction. Not part of the chain: a local record,
# read by `iotex-node admin signed` (the failover drill proves from it who signed which height).
SIGNED_KEEP = 100_000


@dataclass
class BlockBooks:
    """What a block adds to the books: rewards granted (owner, kind, amount), the epoch's votes snapshot when
    it ends an epoch, and (address, action index, action hash) for each address an action concerns."""

    epoch: int
    granted: list[tuple[str, str, int]] = field(default_factory=list)
    votes: bytes | None = None
    accounts: list[tuple[str, int, bytes]] = field(default_factory=list)


def is_disk_full(exc: BaseException) -> bool:
    """Whether a SQLite or OS error says the volume is full (SQLITE_FULL; ENOSPC or EDQUOT)."""
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _write_error(exc: BaseException, what: str) -> StorageError:
    return (DiskFull if is_disk_full(exc) else StorageError)(f"{what}: {exc}")


def integrity_problems(conn: sqlite3.Connection, quick: bool = False) -> list[str]:
    """SQLite's own check of every page, index and constraint (`quick`: without comparing indexes to their
    tables, several times faster): the problems it names, [] when the database is whole."""
    try:
        rows = [str(r[0]) for r in conn.execute("PRAGMA quick_check" if quick else "PRAGMA integrity_check")]
    except sqlite3.DatabaseError as exc:
        return [f"unreadable: {exc}"]
    if rows == ["ok"]:
        return []
    # one problem a line: SQLite may put many in one row, under a "*** in database main ***" heading
    lines = [ln.strip() for r in rows for ln in r.splitlines()]
    return [ln for ln in lines if ln and not (ln.startswith("***") and ln.endswith("***"))] or ["damaged"]


class Store:
    def __init__(self, path: Path, *, create: bool = False, durable: bool = True) -> None:
        """Open (or with `create`, create) the database. `durable=False` skips fsync (synchronous=OFF): only
        for building throwaway databases fast (benchmarks, tests); a node always runs durable."""
        self.path = Path(path)
        if not create and not self.path.exists():
            raise StorageError(f"no database at {self.path}: run `iotex-node init` first")
        try:
            # check_same_thread=False: the API reads through the same connection from the event loop
            # thread only; the lock guards the rare use from executor threads.
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL" if durable else "PRAGMA synchronous=OFF")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"database {self.path} cannot be opened: {exc}") from None
        self._lock = threading.RLock()

    def check(self, quick: bool = False) -> list[str]:
        """The database's integrity problems ([] when whole); see `integrity_problems`."""
        with self._lock:
            return integrity_problems(self._db, quick)

    def close(self) -> None:
        self._db.close()

    # --- meta --------------------------------------------------------------------------------------

    def get_meta(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else orjson.loads(row[0])

    def set_meta(self, key: str, value: Any) -> None:
        with self._lock:
            try:
                self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", (key, orjson.dumps(value)))
            except sqlite3.Error as exc:
                raise _write_error(exc, f"writing {key} to {self.path} failed") from None

    def record_signed(self, doc: Any, height: int, round_: int, step: int, value: str, at_ms: int) -> None:
        """The sign log (meta 'privval') and one row of the signing history, in one transaction."""
        with self._lock:
            cur = self._db.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE")
                cur.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('privval', ?)", (orjson.dumps(doc),))
                cur.execute(
                    "INSERT OR REPLACE INTO signed(height, round, step, value, at_ms) VALUES(?, ?, ?, ?, ?)",
                    (height, round_, step, value, at_ms),
                )
                if height % 1000 == 0 and round_ == 0 and step == 0:
                    cur.execute("DELETE FROM signed WHERE height < ?", (height - SIGNED_KEEP,))
                cur.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StorageError(f"writing the sign log to {self.path} failed: {exc}") from None

    def signed_between(self, first: int, last: int, limit: int = 10_000) -> list[tuple[int, int, int, str, int]]:
        """(height, round, step, value, at_ms) signed at heights first..last, oldest first."""
        rows = self._db.execute(
            "SELECT height, round, step, value, at_ms FROM signed WHERE height BETWEEN ? AND ? "
            "ORDER BY height, round, step LIMIT ?",
            (first, last, limit),
        ).fetchall()
        return [(int(h), int(r), int(s), str(v), int(t)) for h, r, s, v, t in rows]

    # --- genesis -----------------------------------------------------------------------------------

    def initialize(self, genesis_hash: bytes, state: dict[str, bytes]) -> None:
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                if cur.execute("SELECT 1 FROM meta WHERE key='genesis_hash'").fetchone():
                    raise StorageError(f"database {self.path} is already initialized")
                cur.executemany("INSERT INTO state(key, value) VALUES(?, ?)", state.items())
                for k, v in (
                    ("genesis_hash", genesis_hash.hex()),
                    ("tip", {"height": 0, "hash": genesis_hash.hex()}),
                    ("schema", SCHEMA_VERSION),
                ):
                    cur.execute("INSERT INTO meta(key, value) VALUES(?, ?)", (k, orjson.dumps(v)))
                cur.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    cur.execute("ROLLBACK")
                raise

    # --- blocks ------------------------------------------------------------------------------------

    def commit_block(
        self,
        height: int,
        block_hash: bytes,
        block_data: bytes,
        receipts: list[tuple[bytes, int, bytes]],
        changes: dict[str, bytes | None],
        undo: dict[str, bytes | None],
        prune_undo_below: int = 0,
        books: BlockBooks | None = None,
    ) -> None:
        """Everything a block changes, in one transaction: a crash leaves all of it or none of it."""
        undo_blob = orjson.dumps({k: (None if v is None else v.decode()) for k, v in undo.items()})
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                cur.execute("INSERT INTO blocks(height, hash, data) VALUES(?, ?, ?)", (height, block_hash, block_data))
                cur.executemany(
                    "INSERT OR REPLACE INTO actions(hash, height, idx, receipt) VALUES(?, ?, ?, ?)",
                    ((h, height, i, r) for h, i, r in receipts),
                )
                cur.executemany(
                    "INSERT OR REPLACE INTO state(key, value) VALUES(?, ?)",
                    ((k, v) for k, v in changes.items() if v is not None),
                )
                cur.executemany("DELETE FROM state WHERE key=?", ((k,) for k, v in changes.items() if v is None))
                cur.execute("INSERT INTO undo(height, data) VALUES(?, ?)", (height, undo_blob))
                if prune_undo_below > 0:
                    cur.execute("DELETE FROM undo WHERE height < ?", (prune_undo_below,))
                if books is not None:
                    _write_books(cur, height, books)
                cur.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES('tip', ?)",
                    (orjson.dumps({"height": height, "hash": block_hash.hex()}),),
                )
                cur.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:  # SQLITE_FULL/IOERR/NOMEM may already have rolled it back
                    with contextlib.suppress(sqlite3.Error):
                        cur.execute("ROLLBACK")
                raise _write_error(exc, f"commit of block {height} to {self.path} failed") from None

    def tip(self) -> tuple[int, bytes]:
        t = self.get_meta("tip")
        if t is None:
            raise StorageError(f"database {self.path} is not initialized")
        return int(t["height"]), bytes.fromhex(t["hash"])

    def block_data(self, height: int) -> bytes | None:
        row = self._db.execute("SELECT data FROM blocks WHERE height=?", (height,)).fetchone()
        return None if row is None else bytes(row[0])

    def block_height_by_hash(self, h: bytes) -> int | None:
        row = self._db.execute("SELECT height FROM blocks WHERE hash=?", (h,)).fetchone()
        return None if row is None else int(row[0])

    def blocks_data(self, start: int, count: int) -> list[bytes]:
        rows = self._db.execute("SELECT data FROM blocks WHERE height>=? ORDER BY height LIMIT ?", (start, count)).fetchall()
        return [bytes(r[0]) for r in rows]

    def iter_blocks(self, start: int, end: int) -> Iterator[tuple[int, bytes, bytes]]:
        """(height, hash, stored block) for the blocks start..end, lowest first, read lazily (stop any time)."""
        cur = self._db.execute("SELECT height, hash, data FROM blocks WHERE height BETWEEN ? AND ? ORDER BY height", (start, end))
        try:
            for h, bh, d in cur:
                yield int(h), bytes(bh), bytes(d)
        finally:
            cur.close()  # a reader that stops early must not keep the statement (and its snapshot) open

    def receipt(self, h: bytes) -> tuple[int, int, dict[str, Any]] | None:
        row = self._db.execute("SELECT height, idx, receipt FROM actions WHERE hash=?", (h,)).fetchone()
        return None if row is None else (int(row[0]), int(row[1]), orjson.loads(row[2]))

    def load_state(self) -> dict[str, bytes]:
        return {k: bytes(v) for k, v in self._db.execute("SELECT key, value FROM state")}

    def iter_state(self) -> Iterator[tuple[str, bytes]]:
        return ((k, bytes(v)) for k, v in self._db.execute("SELECT key, value FROM state ORDER BY key"))

    def lowest_undo_height(self) -> int | None:
        row = self._db.execute("SELECT MIN(height) FROM undo").fetchone()
        return None if row is None or row[0] is None else int(row[0])

    # --- maintenance (offline: the caller holds the node lock) ---------------------------------------

    def block_hash(self, height: int) -> bytes | None:
        row = self._db.execute("SELECT hash FROM blocks WHERE height=?", (height,)).fetchone()
        return None if row is None else bytes(row[0])

    def block_count_above(self, height: int) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM blocks WHERE height>?", (height,)).fetchone()[0])

    def undo_record(self, height: int) -> dict[str, bytes | None] | None:
        """The previous value of every key block `height` changed (None: the key did not exist)."""
        row = self._db.execute("SELECT data FROM undo WHERE height=?", (height,)).fetchone()
        if row is None:
            return None
        return {k: (None if v is None else v.encode()) for k, v in orjson.loads(row[0]).items()}

    def rollback_to(
        self,
        height: int,
        block_hash: bytes,
        expected_tip: tuple[int, bytes],
        state_restore: dict[str, bytes | None],
        action_hashes: list[bytes],
        drop_meta: list[str],
    ) -> None:
        """Revert every block above `height` in one transaction: a crash leaves all of it or none of it.

        `state_restore` is the value each changed key had at `height` (None: absent), `action_hashes` the
        actions of the removed blocks (their receipts go), `drop_meta` meta keys to delete. Refuses if the
        tip is no longer `expected_tip` (the database changed since the caller read it).
        """
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                row = cur.execute("SELECT value FROM meta WHERE key='tip'").fetchone()
                tip = orjson.loads(row[0]) if row else None
                if tip is None or (int(tip["height"]), bytes.fromhex(tip["hash"])) != expected_tip:
                    raise StorageError(f"the tip of {self.path} changed during the rollback: nothing was changed")
                cur.executemany(
                    "INSERT OR REPLACE INTO state(key, value) VALUES(?, ?)",
                    ((k, v) for k, v in state_restore.items() if v is not None),
                )
                cur.executemany("DELETE FROM state WHERE key=?", ((k,) for k, v in state_restore.items() if v is None))
                cur.executemany("DELETE FROM actions WHERE hash=? AND height>?", ((h, height) for h in action_hashes))
                cur.execute("DELETE FROM blocks WHERE height>?", (height,))
                cur.execute("DELETE FROM undo WHERE height>?", (height,))
                for table in ("granted", "epoch_votes", "account_actions"):
                    cur.execute(f"DELETE FROM {table} WHERE height>?", (height,))  # noqa: S608 - fixed names
                cur.executemany("DELETE FROM meta WHERE key=?", ((k,) for k in drop_meta))
                cur.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES('tip', ?)",
                    (orjson.dumps({"height": height, "hash": block_hash.hex()}),),
                )
                cur.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    cur.execute("ROLLBACK")
                raise StorageError(f"rollback of {self.path} to height {height} failed, nothing was changed: {exc}") from None
            except BaseException:
                if self._db.in_transaction:
                    cur.execute("ROLLBACK")
                raise

    # --- books -------------------------------------------------------------------------------------

    def granted(self, epoch: int) -> list[tuple[int, str, str, int]]:
        """(height, owner, kind, amount) of every reward granted in `epoch`, in block order."""
        rows = self._db.execute(
            "SELECT height, owner, kind, amount FROM granted WHERE epoch=? ORDER BY height, kind, owner", (epoch,)
        ).fetchall()
        return [(int(h), str(o), str(k), int(a)) for h, o, k, a in rows]

    def epoch_votes(self, epoch: int) -> tuple[int, dict[str, Any]] | None:
        """(height, snapshot) of the votes recorded at the end of `epoch`, None when not recorded."""
        row = self._db.execute("SELECT height, data FROM epoch_votes WHERE epoch=?", (epoch,)).fetchone()
        return None if row is None else (int(row[0]), orjson.loads(row[1]))

    def books_start(self) -> int | None:
        """The lowest height whose rewards the books hold (None: none yet)."""
        row = self._db.execute("SELECT MIN(height) FROM granted").fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def account_actions(self, address: str, start: int, limit: int) -> list[tuple[int, int, bytes]]:
        """(height, index, hash) of `address`'s actions, oldest first, from the `start`-th on."""
        rows = self._db.execute(
            "SELECT height, idx, hash FROM account_actions WHERE address=? ORDER BY height, idx LIMIT ? OFFSET ?",
            (address, limit, start),
        ).fetchall()
        return [(int(h), int(i), bytes(x)) for h, i, x in rows]

    def backup_to(self, dest: Path) -> None:
        """A consistent copy of the whole database into `dest` (a new file) with SQLite's backup API, in
        one step (one read transaction, so one point in time), as a self-contained file (rollback journal
        mode, no -wal beside it). The caller makes it durable and gives it its final name."""
        copy_database(self._db, dest)


def _write_books(cur: sqlite3.Cursor, height: int, books: BlockBooks) -> None:
    # Rows left at this height by a release that rolled back without knowing the books are replaced, not added to.
    cur.execute("DELETE FROM granted WHERE height=?", (height,))
    cur.execute("DELETE FROM account_actions WHERE height=?", (height,))
    cur.executemany(
        "INSERT INTO granted(height, epoch, owner, kind, amount) VALUES(?, ?, ?, ?, ?)",
        ((height, books.epoch, o, k, str(a)) for o, k, a in books.granted if a),
    )
    if books.votes is not None:
        cur.execute("INSERT OR REPLACE INTO epoch_votes(epoch, height, data) VALUES(?, ?, ?)", (books.epoch, height, books.votes))
    cur.executemany(
        "INSERT OR REPLACE INTO account_actions(address, height, idx, hash) VALUES(?, ?, ?, ?)",
        ((a, height, i, h) for a, i, h in books.accounts),
    )


def copy_database(src: sqlite3.Connection, dest: Path, drop_meta: tuple[str, ...] = ()) -> None:
    """Copy the database open on `src` into the new file `dest` (see Store.backup_to), deleting the meta
    keys `drop_meta` from the copy with secure_delete on, so their bytes do not linger in free pages. A copy
    without local records (a snapshot: `drop_meta` given) leaves out the signing history (table `signed`) too:
    it is what *this* node signed, not the node the copy will be restored on."""
    dst = sqlite3.connect(dest, isolation_level=None)
    try:
        src.backup(dst, pages=-1)
        dst.execute("PRAGMA journal_mode=DELETE")
        if drop_meta:
            dst.execute("PRAGMA secure_delete=ON")
            dst.executemany("DELETE FROM meta WHERE key=?", ((k,) for k in drop_meta))
            if dst.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='signed'").fetchone():
                dst.execute("DELETE FROM signed")
    finally:
        dst.close()
