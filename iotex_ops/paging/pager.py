"""The Pager: a durable, strictly ordered outbox of Events API v2 events, with one sender thread.

Why it is shaped like this:

- `enqueue` returns as soon as the event's row is committed to sqlite (WAL, synchronous=FULL), so a page
  survives a crash of the process that raised it; a Pager opened on the same db delivers what is left.
- One sender delivers in FIFO order and holds the head of the line until it is settled: the trigger,
  acknowledge and resolve of one incident must reach PagerDuty in that order, or an ack could arrive before
  its trigger and be ignored, leaving a person paged for an incident a runbook already handled.
- Retries are the queue's, not the client library's (see client.py): 429, 5xx and network errors retry the
  head with exponential backoff and jitter (Retry-After honoured, within a cap); 400 is a bug in the event
  and is never retried: it is moved to the dead letters with the receiver's message, and the line moves on.
- Every event has a bound: once it has waited `give_up_after_s` since it was enqueued (or failed
  `max_attempts` times) and an attempt fails, it is dead-lettered and logged as an error. An endpoint that
  is down for good therefore drains the queue into dead letters at the backoff's pace instead of growing
  it without end or spinning; an event found after a long downtime still gets one attempt.
- The routing key lives in memory only: rows hold the event without it, and what servers say is redacted.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from iotex_ops.paging.client import DEFAULT_TIMEOUT_S, DEFAULT_URL, Outcome, deliver, make_client, redact
from iotex_ops.paging.errors import InvalidEvent, PagingError
from iotex_ops.paging.events import validate_queued
from iotex_ops.paging.secret import RoutingKey

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: ids are never reused, they are the FIFO order
    enqueued_at REAL NOT NULL,
    event_action TEXT NOT NULL,
    dedup_key TEXT,
    event TEXT NOT NULL,                   -- JSON, without routing_key
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE TABLE IF NOT EXISTS delivered (
    id INTEGER PRIMARY KEY,
    enqueued_at REAL NOT NULL,
    delivered_at REAL NOT NULL,
    attempts INTEGER NOT NULL,
    event_action TEXT NOT NULL,
    dedup_key TEXT
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    enqueued_at REAL NOT NULL,
    died_at REAL NOT NULL,
    attempts INTEGER NOT NULL,
    status INTEGER,
    reason TEXT NOT NULL,
    event_action TEXT NOT NULL,
    dedup_key TEXT,
    event TEXT NOT NULL
);
"""
_PRUNE_EVERY = 100


@dataclass(frozen=True)
class _Row:
    id: int
    enqueued_at: float
    event: dict[str, Any]
    attempts: int

    @property
    def label(self) -> str:
        return f"event {self.id} ({self.event.get('event_action')} {self.event.get('dedup_key')})"


class Pager:
    """Queue Events API v2 events durably and deliver them in order. Thread-safe; use as a context manager
    or call `close()`. Delivery starts at once, also of rows a previous process left in `db_path`."""

    def __init__(
        self,
        db_path: str | os.PathLike[str],
        routing_key: RoutingKey | str,
        url: str = DEFAULT_URL,
        ca_file: str | os.PathLike[str] | None = None,
        *,
        request_timeout_s: float = DEFAULT_TIMEOUT_S,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        give_up_after_s: float = 3600.0,
        max_attempts: int | None = None,
        max_retry_after_s: float = 300.0,
        keep_delivered: int = 10_000,
        keep_delivered_s: float = 7 * 86_400.0,
        keep_dead: int = 10_000,
    ) -> None:
        if backoff_initial_s <= 0 or backoff_max_s < backoff_initial_s:
            raise PagingError("backoff must satisfy 0 < backoff_initial_s <= backoff_max_s")
        if max_attempts is not None and max_attempts < 1:
            raise PagingError("max_attempts must be at least 1")
        self.db_path = Path(db_path)
        self.url = url
        self._key = routing_key if isinstance(routing_key, RoutingKey) else RoutingKey(routing_key)
        self.request_timeout_s = request_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.give_up_after_s = give_up_after_s
        self.max_attempts = max_attempts
        self.max_retry_after_s = max_retry_after_s
        self.keep_delivered = keep_delivered
        self.keep_delivered_s = keep_delivered_s
        self.keep_dead = keep_dead

        self._client = make_client(self._key, url, None if ca_file is None else str(ca_file), request_timeout_s)
        self._lock_file: IO[str] | None = None
        self._db: sqlite3.Connection | None = None
        self._cv = threading.Condition()
        self._closing = False
        self._closed = False
        self._delay = backoff_initial_s
        self._not_before = 0.0  # time.monotonic() before which the head is not tried again
        self._settled = 0
        self._counts = {"sent": 0, "attempts": 0, "retries": 0, "dead": 0}
        self._last_error: str | None = None
        try:
            self._lock_file = self._take_lock()
            self._db = self._open_db()
            self._prune()
            left = self._count()
        except BaseException:
            self._release()
            raise
        if left:
            log.info("pager %s: %d event(s) left by a previous run will be delivered first", self.db_path, left)
        self._thread = threading.Thread(target=self._run, name=f"pager-sender:{self.db_path.name}", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"Pager(db={str(self.db_path)!r}, url={self.url!r}, routing_key={self._key!r})"

    def __enter__(self) -> Pager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- opening -----------------------------------------------------------------------------------------

    def _take_lock(self) -> IO[str]:
        # Two Pagers on one db would both send its head: duplicates, and order lost between them.
        self.db_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock_path = Path(f"{self.db_path}.lock")
        f = open(lock_path, "a", encoding="utf-8")  # noqa: SIM115 - held open for the Pager's life
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise PagingError(f"another Pager is using {self.db_path} (lock {lock_path} is held)") from None
        return f

    def _open_db(self) -> sqlite3.Connection:
        if not self.db_path.exists():
            # the queue holds incident details: readable by its owner only, from the start
            os.close(os.open(self.db_path, os.O_WRONLY | os.O_CREAT, 0o600))
        try:
            db = sqlite3.connect(self.db_path, check_same_thread=False, timeout=10.0)
        except sqlite3.Error as exc:
            raise PagingError(f"pager queue {self.db_path}: {exc}") from None
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed enqueue is on disk (WAL synced) before enqueue() returns
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            db.close()
            raise PagingError(f"pager queue {self.db_path}: {exc}") from None
        return db

    # --- public API --------------------------------------------------------------------------------------

    def enqueue(self, event: Mapping[str, Any]) -> int:
        """Queue `event` (an Events API v2 event without routing_key); return its id once it is on disk.

        A bad event raises InvalidEvent here, naming every bad field, rather than dying in the queue later.
        """
        doc = dict(event)
        if "routing_key" in doc:
            # refused rather than stripped: a key must never be written to the queue, and a caller passing
            # one probably expects it to be used
            raise InvalidEvent(["'routing_key' must not be in a queued event: the Pager adds its own key when it sends"])
        errors = validate_queued(doc)  # a page, or a change event
        if errors:
            raise InvalidEvent(errors)
        text = json.dumps(doc, separators=(",", ":"))
        with self._cv:
            if self._closing:
                raise PagingError(f"pager {self.db_path} is closed")
            db = self._conn()
            with db:
                cur = db.execute(
                    "INSERT INTO outbox (enqueued_at, event_action, dedup_key, event) VALUES (?, ?, ?, ?)",
                    (time.time(), doc["event_action"], doc.get("dedup_key"), text),
                )
            self._cv.notify_all()
        assert cur.lastrowid is not None
        return cur.lastrowid

    def flush(self, timeout: float) -> bool:
        """Wait until nothing is pending (delivered or dead-lettered); False if `timeout` s passed first."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._count() > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closing:
                    return False
                self._cv.wait(remaining)
            return True

    def pending(self) -> int:
        with self._cv:
            return self._count()

    def stats(self) -> dict[str, Any]:
        """Counters since this Pager opened (sent, attempts, retries, dead) and the queue's state now:
        pending, oldest_pending_age_s (0.0 when empty), dead_letters (rows kept), last_error."""
        with self._cv:
            if self._closed:
                raise PagingError(f"pager {self.db_path} is closed")
            db = self._conn()
            pending, oldest = db.execute("SELECT count(*), min(enqueued_at) FROM outbox").fetchone()
            dead_rows = db.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
            return {
                **self._counts,
                "pending": pending,
                "oldest_pending_age_s": max(0.0, time.time() - oldest) if oldest is not None else 0.0,
                "dead_letters": dead_rows,
                "last_error": self._last_error,
            }

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """The latest dead letters, newest first: id, enqueued_at, died_at, attempts, status, reason, event."""
        with self._cv:
            rows = (
                self._conn()
                .execute(
                    "SELECT id, enqueued_at, died_at, attempts, status, reason, event FROM dead_letters ORDER BY id DESC LIMIT ?",
                    (limit,),
                )
                .fetchall()
            )
        keys = ("id", "enqueued_at", "died_at", "attempts", "status", "reason", "event")
        return [{**dict(zip(keys, r, strict=True)), "event": json.loads(r[6])} for r in rows]

    def close(self) -> None:
        """Stop the sender (an attempt under way is finished and settled) and close the queue. Undelivered
        events stay in the db for the next Pager; call `flush()` first to wait for them."""
        with self._cv:
            if self._closing:
                return
            self._closing = True
            self._cv.notify_all()
        # an attempt in flight is bounded by the client's timeouts (connect, write, read, pool)
        self._thread.join(timeout=4 * self.request_timeout_s + 1)
        if self._thread.is_alive():
            log.warning("pager %s: the sender did not stop in time; its queue stays locked until exit", self.db_path)
            return
        self._release()

    def _release(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close()
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock_file is not None:
            self._lock_file.close()  # releases the flock
            self._lock_file = None
        with self._cv:
            self._closed = True

    # --- the sender --------------------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise PagingError(f"pager {self.db_path} is closed")
        return self._db

    def _count(self) -> int:
        return int(self._conn().execute("SELECT count(*) FROM outbox").fetchone()[0])

    def _head(self) -> _Row | None:
        r = self._conn().execute("SELECT id, enqueued_at, event, attempts FROM outbox ORDER BY id LIMIT 1").fetchone()
        return None if r is None else _Row(r[0], r[1], json.loads(r[2]), r[3])

    def _next(self) -> _Row | None:
        """Block until the head may be tried (or we are closing: None)."""
        with self._cv:
            while not self._closing:
                head = self._head()
                if head is None:
                    self._cv.wait()
                    continue
                wait = self._not_before - time.monotonic()
                if wait > 0:
                    self._cv.wait(wait)
                    continue
                return head
            return None

    def _run(self) -> None:
        while True:
            try:
                head = self._next()
                if head is None:
                    return
                outcome = deliver(self._client, head.event)
                with self._cv:
                    self._settle(head, outcome)
                    self._cv.notify_all()
            except Exception:
                # e.g. a full disk: log, back off and keep the thread alive; the row is still queued
                log.exception("pager %s: sender error", self.db_path)
                with self._cv:
                    if self._closing:
                        return
                    self._backoff(None)
                    self._cv.wait(max(0.0, self._not_before - time.monotonic()))

    def _settle(self, row: _Row, outcome: Outcome) -> None:
        self._counts["attempts"] += 1
        attempts = row.attempts + 1
        db = self._conn()
        if outcome.accepted:
            with db:
                db.execute(
                    "INSERT INTO delivered (id, enqueued_at, delivered_at, attempts, event_action, dedup_key) "
                    "SELECT id, enqueued_at, ?, ?, event_action, dedup_key FROM outbox WHERE id = ?",
                    (time.time(), attempts, row.id),
                )
                db.execute("DELETE FROM outbox WHERE id = ?", (row.id,))
            self._counts["sent"] += 1
            if attempts > 1:
                log.info("pager: delivered %s after %d attempts", row.label, attempts)
            self._delay, self._not_before = self.backoff_initial_s, 0.0
        else:
            message = redact(outcome.message, self._key)
            self._last_error = message
            if outcome.kind == "rejected":
                # the receiver is up and said no: a bug in the event or the configuration, not an outage
                self._dead_letter(row, attempts, outcome.status, message)
                log.error("pager: %s was rejected and moved to the dead letters: %s", row.label, message)
                self._delay, self._not_before = self.backoff_initial_s, 0.0
            else:
                waited = time.time() - row.enqueued_at
                exhausted = self.max_attempts is not None and attempts >= self.max_attempts
                if waited >= self.give_up_after_s or exhausted:
                    self._dead_letter(row, attempts, outcome.status, f"gave up after {attempts} attempts: {message}")
                    log.error(
                        "pager: gave up on %s after %d attempts over %.0f s; moved to the dead letters: %s",
                        row.label, attempts, waited, message,
                    )  # fmt: skip
                else:
                    with db:
                        db.execute("UPDATE outbox SET attempts = ?, last_error = ? WHERE id = ?", (attempts, message, row.id))
                    self._counts["retries"] += 1
                    # loud at the first failures of an event, then at powers of two: an outage is visible
                    # without one log line per backoff step
                    level = logging.WARNING if attempts & (attempts - 1) == 0 else logging.DEBUG
                    log.log(level, "pager: %s failed (attempt %d), will retry: %s", row.label, attempts, message)
                # the endpoint is failing: the next head (this one, or the next after a give-up) waits too
                self._backoff(outcome.retry_after_s)
        self._settled += 1
        if self._settled % _PRUNE_EVERY == 0:
            self._prune()

    def _backoff(self, retry_after_s: float | None) -> None:
        delay = self._delay
        if retry_after_s is not None:
            wait = min(retry_after_s, self.max_retry_after_s)
        else:
            # "equal jitter": at least half the delay, so senders that failed together spread out but none
            # comes back at once
            wait = delay / 2 + random.uniform(0, delay / 2)
        self._not_before = time.monotonic() + wait
        self._delay = min(delay * 2, self.backoff_max_s)

    def _dead_letter(self, row: _Row, attempts: int, status: int | None, reason: str) -> None:
        db = self._conn()
        with db:
            db.execute(
                "INSERT INTO dead_letters (id, enqueued_at, died_at, attempts, status, reason, event_action, dedup_key, event) "
                "SELECT id, enqueued_at, ?, ?, ?, ?, event_action, dedup_key, event FROM outbox WHERE id = ?",
                (time.time(), attempts, status, reason, row.id),
            )
            db.execute("DELETE FROM outbox WHERE id = ?", (row.id,))
        self._counts["dead"] += 1

    def _prune(self) -> None:
        """Bound the history tables: delivered rows by age and count, dead letters by count."""
        db = self._conn()
        with db:
            db.execute(
                "DELETE FROM delivered WHERE delivered_at < ? OR id <= "
                "(SELECT id FROM delivered ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (time.time() - self.keep_delivered_s, self.keep_delivered),
            )
            db.execute(
                "DELETE FROM dead_letters WHERE id <= (SELECT id FROM dead_letters ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (self.keep_dead,),
            )
