"""The mempool's journal: what the mempool holds, on disk, so that an accepted action survives a restart.

A sidecar SQLite database in the node's home (`mempool.journal`, default `mempool.db`), apart from the
chain's database: its writes never wait for a block commit nor make one wait, and a damaged journal can be
set aside without touching the chain. Tables:

- `pending (id, hash, sender, nonce, wire)`: every action the mempool holds (admitted through the API or by
  gossip, or put back by an offline rollback); a row goes when its action leaves the mempool (final,
  replaced, displaced). So the journal holds at most what the mempool may hold. Rows are keyed by `id`, in the
  order they were written (the journal keeps hash -> id in memory): a commit appends its rows to the table's
  last pages, and a block's removals free pages written together, where a table keyed by the (random) hash
  touched one page per row; about half the time per commit at 1,000 TPS (docs/performance.md). Schema 1 (keyed
  by hash, the first release of the journal) is converted on open.
- `dropped (hash, code, reason)`: actions that were accepted once and will never be final, with the reason
  (`nonce_taken`, `expired`...), so that `GET /v1/actions/{hash}` can tell their sender why, also after a
  restart. The newest `MAX_DROPPED` are kept.

Writes go through one writer thread with its own connection, in group commits: each transaction carries
whatever was queued until an answer waits for it (or `FLUSH_EVERY`, for writes no answer waits for: actions
from gossip, removals), so one fsync covers a whole batch, or many clients' single actions.
Writes no answer waits for never get a commit of their own while answers are waiting: under load they ride
with the next answer's commit, and on a quiet node they are committed after FLUSH_EVERY (1 s). They need no
sooner: an action from gossip was made durable by the node that answered its sender (and comes back by gossip
after a restart), and a removal that is lost is redone at the start (an action found final is removed then).
Committing them every 20 ms cost a node at 1,000 TPS about 7 commits (7 fsyncs) for each one an answer waited
for, on a disk the delegates share, and the answers queued behind them (docs/performance.md).
`barrier()` gives a future that completes once everything queued before it is committed: the API answers
2xx only then (durability `fsync`: committed with synchronous=FULL, survives power loss; `write`:
synchronous=NORMAL in WAL mode, survives a kill -9 of the node but not an OS crash; `off`: no journal).

A journal that cannot be opened or read (a damaged file, a schema from an unknown release) never stops the
node: it is moved aside (`mempool.db.corrupt-<UTC stamp>`), the error is logged, and a fresh one is made.
"""

from __future__ import annotations

import concurrent.futures
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from iotex_node.errors import ConfigError

log = logging.getLogger("iotex_node.mempool_store")

SCHEMA_VERSION = 2
MAX_DROPPED = 100_000
FLUSH_EVERY = 1.0  # seconds: how late a write that no answer waits for (gossip, removals) may be
# Seconds from one commit's start to the next's, at least: at most 25 fsyncs a second from one journal, however
# many answers wait (they wait at most this much longer, and ride in one commit). Without it a flooded node's
# journal kept the disk busy with back-to-back fsyncs, and the block commits of every delegate sharing that disk
# queued behind them: a chain stalled 11 s with its write IOPS capped at 100 (docs/performance.md).
MIN_COMMIT_INTERVAL = 0.04
DURABILITY = ("fsync", "write", "off")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    id INTEGER PRIMARY KEY, hash BLOB NOT NULL, sender TEXT NOT NULL, nonce INTEGER NOT NULL, wire BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS dropped (
    id INTEGER PRIMARY KEY, hash BLOB NOT NULL UNIQUE, code TEXT NOT NULL, reason TEXT NOT NULL
);
"""


def check_durability(value: object, where: str) -> str:
    if value not in DURABILITY:
        raise ConfigError(f"{where} must be one of {', '.join(DURABILITY)}, got {value!r}")
    return str(value)


@dataclass
class Loaded:
    """What a journal held when the node started: pending rows (sender, nonce order) and dropped ones."""

    pending: list[tuple[bytes, bytes]] = field(default_factory=list)  # (stored hash, wire JSON)
    dropped: list[tuple[bytes, str, str]] = field(default_factory=list)  # (hash, code, reason), oldest first
    problem: str | None = None  # why the journal was set aside, if it was


def _open(path: Path, durability: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL" if durability == "fsync" else "PRAGMA synchronous=NORMAL")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, 1, SCHEMA_VERSION):
            raise sqlite3.DatabaseError(f"schema version {version}, this release reads {SCHEMA_VERSION}")
        if version == 1:
            _from_schema_1(db)
        db.executescript(_SCHEMA)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        return db
    except BaseException:
        db.close()
        raise


def _from_schema_1(db: sqlite3.Connection) -> None:
    """Schema 1 kept `pending` keyed by hash: copy its rows into the append-ordered table, in one transaction."""
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("ALTER TABLE pending RENAME TO pending_v1")
        for statement in _SCHEMA.split(";"):  # not executescript: it would commit the transaction first
            if statement.strip():
                db.execute(statement)
        db.execute(
            "INSERT INTO pending(hash, sender, nonce, wire) "
            "SELECT hash, sender, nonce, wire FROM pending_v1 ORDER BY sender, nonce"
        )
        db.execute("DROP TABLE pending_v1")
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def set_aside(path: Path) -> Path:
    """Move a damaged journal (and its -wal, -shm) out of the way; return where it went."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    dest = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while dest.exists():
        dest = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(path) + suffix)
        if src.exists():
            src.rename(Path(str(dest) + suffix))
    return dest


def append_offline(path: Path, rows: Iterable[tuple[bytes, str, int, bytes]]) -> int:
    """Add (hash, sender, nonce, wire) rows to the journal of a stopped node (the rollback puts the actions of
    the blocks it removes back this way); the node re-admits them at its next start. Returns the count."""
    db = _open(path, "fsync")
    try:
        cur = db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        have = {bytes(h) for (h,) in cur.execute("SELECT hash FROM pending")}
        fresh = []
        for row in rows:
            if row[0] not in have:
                have.add(row[0])
                fresh.append(row)
        cur.executemany("INSERT INTO pending(hash, sender, nonce, wire) VALUES(?, ?, ?, ?)", fresh)
        n = len(fresh)
        cur.execute("DELETE FROM dropped WHERE hash IN (SELECT hash FROM pending)")
        cur.execute("COMMIT")
        return max(n, 0)
    finally:
        db.close()


class MempoolJournal:
    """The write-ahead journal of one node's mempool (see the module docstring)."""

    def __init__(self, path: Path, durability: str = "fsync") -> None:
        self.path = Path(path)
        self.durability = check_durability(durability, "mempool.durability")
        self.problem: str | None = None
        try:
            self._db = _open(self.path, self.durability)
            ids = self._read_ids()
        except sqlite3.DatabaseError as exc:
            self._db = self._replace(f"cannot be opened: {exc}")
            ids = {}
        self._dbl = threading.Lock()  # the connection: the writer thread, and reads at start
        self._cond = threading.Condition()
        self._ops: list[tuple[str, tuple[object, ...]]] = []
        # hash -> id of each pending row (ids in the order written), kept under _cond
        self._ids: dict[bytes, int] = ids
        self._next_id = max(ids.values(), default=0) + 1
        self._queued = 0  # ops queued so far (a sequence number)
        self._done = 0  # ops committed so far
        self._waiters: list[tuple[int, concurrent.futures.Future[None]]] = []
        self._closing = False
        self.failed: str | None = None  # the last write error, while writes fail
        self.commits = 0  # transactions committed
        self.rows = 0  # writes (adds, removals, drops) committed
        self.commit_seconds = 0.0  # time spent in transactions, fsync included
        self._thread = threading.Thread(target=self._writer, name="mempool-journal", daemon=True)
        self._thread.start()

    def _read_ids(self) -> dict[bytes, int]:
        return {bytes(h): int(i) for i, h in self._db.execute("SELECT id, hash FROM pending")}

    def _replace(self, why: str) -> sqlite3.Connection:
        moved = set_aside(self.path) if self.path.exists() else None
        self.problem = f"mempool journal {self.path} {why}" + (f"; moved to {moved}" if moved else "")
        log.error("%s; starting with an empty journal (the node goes on)", self.problem)
        return _open(self.path, self.durability)

    # --- start -------------------------------------------------------------------------------------

    def load(self) -> Loaded:
        """Everything the journal holds (read before the node admits anything). A damaged journal is set aside."""
        try:
            with self._dbl:
                rows = self._db.execute("SELECT hash, wire FROM pending ORDER BY sender, nonce")
                pending = [(bytes(h), bytes(w)) for h, w in rows]
                rows = self._db.execute("SELECT hash, code, reason FROM dropped ORDER BY id")
                dropped = [(bytes(h), str(c), str(r)) for h, c, r in rows]
        except sqlite3.DatabaseError as exc:
            with self._dbl:
                self._db.close()
                self._db = self._replace(f"cannot be read: {exc}")
            with self._cond:
                self._ids, self._next_id = {}, 1
            return Loaded(problem=self.problem)
        return Loaded(pending, dropped, self.problem)

    # --- writes (any thread; committed by the writer thread in order) ------------------------------

    def add(self, h: bytes, sender: str, nonce: int, wire: bytes) -> None:
        with self._cond:
            old = self._ids.get(h)
            if old is not None:  # the same action again (put back): its new row replaces the old one
                self._queue("remove", ([old],))
            i = self._ids[h] = self._next_id
            self._next_id += 1
            self._queue("add", (i, h, sender, nonce, wire))

    def remove(self, hashes: list[bytes]) -> None:
        with self._cond:
            ids = [i for i in (self._ids.pop(h, None) for h in hashes) if i is not None]
            if ids:
                self._queue("remove", (ids,))

    def drop(self, h: bytes, code: str, reason: str) -> None:
        with self._cond:
            self._queue("drop", (self._ids.pop(h, None), h, code, reason))

    def _queue(self, kind: str, args: tuple[object, ...]) -> None:
        # Called with _cond held. No wake-up here: a batch's actions go in one transaction when its barrier asks
        # for them, and writes nobody waits for (gossip, removals) go with the next one, or after FLUSH_EVERY.
        self._ops.append((kind, args))
        self._queued += 1

    def barrier(self) -> concurrent.futures.Future[None]:
        """A future done once every write queued before it is committed (an exception if it failed)."""
        fut: concurrent.futures.Future[None] = concurrent.futures.Future()
        with self._cond:
            if self._done >= self._queued:
                fut.set_result(None)
            else:
                self._waiters.append((self._queued, fut))
                self._cond.notify()
        return fut

    def flush(self, timeout: float = 10.0) -> None:
        self.barrier().result(timeout)

    def stop(self) -> None:
        """Write what is queued and stop the writer, leaving the file open: for a process about to end. Closing
        it would checkpoint the WAL into the file first (about 15 ms of a node's stop, for nothing: the next
        open reads the WAL as it is)."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout=10.0)

    def close(self) -> None:
        """Write what is queued, then stop the writer and close the file."""
        self.stop()
        with self._dbl:
            self._db.close()

    def pending_count(self) -> int:
        with self._dbl:
            return int(self._db.execute("SELECT COUNT(*) FROM pending").fetchone()[0])

    # --- the writer --------------------------------------------------------------------------------

    def _writer(self) -> None:
        last = -MIN_COMMIT_INTERVAL
        while True:
            rest = MIN_COMMIT_INTERVAL - (time.monotonic() - last)
            if rest > 0 and not self._closing:
                time.sleep(rest)  # what is queued meanwhile joins the next commit
            with self._cond:
                while not self._closing and not (self._ops and self._waiters):
                    if not self._cond.wait(FLUSH_EVERY) and self._ops:
                        break  # writes nobody waits for: at most FLUSH_EVERY late
                if not self._ops and self._closing:
                    return
                # No wait for more to join: the node asks for one barrier per turn of its event loop already,
                # and a pause here measured slower (bench/mempool_journal.py).
                ops, self._ops = self._ops, []
                upto = self._queued
            last = time.monotonic()
            error: Exception | None = None
            try:
                with self._dbl:
                    self._write(ops)
            except sqlite3.Error as exc:
                error = exc
                if self.failed is None:
                    log.error("mempool journal %s: write failed: %s (accepted actions are not durable meanwhile)", self.path, exc)
                self.failed = str(exc)
            else:
                if self.failed is not None:
                    log.warning("mempool journal %s: writes succeed again", self.path)
                self.failed = None
            with self._cond:
                self._done = upto
                self.rows += len(ops)
                ready = [f for seq, f in self._waiters if seq <= upto]
                self._waiters = [(seq, f) for seq, f in self._waiters if seq > upto]
            for f in ready:
                if error is None:
                    f.set_result(None)
                else:
                    f.set_exception(error)

    def _write(self, ops: list[tuple[str, tuple[object, ...]]]) -> None:
        t0 = time.perf_counter()
        db = self._db
        cur = db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            dropped = False
            adds: list[tuple[object, ...]] = []
            for kind, args in ops:
                if kind == "add":
                    adds.append(args)  # consecutive adds go in one executemany
                    continue
                if adds:
                    cur.executemany("INSERT INTO pending(id, hash, sender, nonce, wire) VALUES(?, ?, ?, ?, ?)", adds)
                    adds = []
                if kind == "remove":
                    (ids,) = args
                    cur.executemany("DELETE FROM pending WHERE id=?", ((i,) for i in ids))  # type: ignore[attr-defined]
                else:
                    i, h, code, reason = args
                    if i is not None:
                        cur.execute("DELETE FROM pending WHERE id=?", (i,))
                    cur.execute("INSERT OR REPLACE INTO dropped(hash, code, reason) VALUES(?, ?, ?)", (h, code, reason))
                    dropped = True
            if adds:
                cur.executemany("INSERT INTO pending(id, hash, sender, nonce, wire) VALUES(?, ?, ?, ?, ?)", adds)
            if dropped:
                cur.execute("DELETE FROM dropped WHERE id <= (SELECT MAX(id) FROM dropped) - ?", (MAX_DROPPED,))
            cur.execute("COMMIT")
            self.commits += 1
            self.commit_seconds += time.perf_counter() - t0
        except BaseException:
            if db.in_transaction:
                cur.execute("ROLLBACK")
            raise
