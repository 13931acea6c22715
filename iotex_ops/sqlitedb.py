"""The toolkit's SQLite state files (alertd's store, the scheduler's records): one way to open them and one
transaction, so that every service gets the same durability and the same handling of a failed COMMIT."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path


def open_db(path: Path, schema: str, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit, see `transaction`), WAL and synchronous=FULL
    (a committed change survives a power cut), the schema applied; readonly: a reader beside the service
    (status commands), which never creates the file. Rows are sqlite3.Row. Raises sqlite3.Error."""
    if readonly:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False, timeout=10)
    else:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        db = sqlite3.connect(path, check_same_thread=False, timeout=10, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(schema)
    db.row_factory = sqlite3.Row
    return db


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One atomic, durable change (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on an exception)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    try:
        db.execute("COMMIT")
    except sqlite3.Error:
        # a COMMIT that failed (disk full, I/O error) would leave the connection inside the transaction and
        # refuse every later BEGIN: undo it, and let the caller see the error
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
