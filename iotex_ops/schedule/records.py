"""The scheduler service's own state: what it claimed, decided and was told, in SQLite (WAL, synchronous=FULL).

`<state>/scheduler/<network>.db`, one per network (the name the runs' locks use):

- `cursors`: per schedule, the newest occurrence handled (the next decision starts after it);
- `runs`: every occurrence the service claimed, by run id (`timing.run_id`: UTC time + schedule name), with
  its status: `due` (claimed, gates not passed yet), `waiting` (for an approval, or queued behind another
  drill), `running` (handed to the engine), `ended`, `not_started`. A run is claimed, and its cursor moved,
  in one transaction BEFORE anything acts: a restarted service finds it and never starts it twice;
- `records`: every decision that did not start a run (missed, skipped, a gate that failed), with its reason
  and the gates' verdicts; `iotex-ops drill history` shows them beside the runs of the run store;
- `approvals`: `iotex-ops schedule approve RUN`: who approved which run, and when.

Any process may write an approval while the service runs (SQLite's own locking); the service alone writes
the rest. Not thread-safe by itself: the service serialises access.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iotex_ops import sqlitedb
from iotex_ops.schedule.model import ScheduleError

SCHEMA = """
CREATE TABLE IF NOT EXISTS cursors (schedule TEXT PRIMARY KEY, handled_until REAL NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    schedule TEXT NOT NULL,
    drill TEXT NOT NULL,
    scheduled_at REAL NOT NULL,
    status TEXT NOT NULL,            -- due | waiting | running | ended | not_started
    reason TEXT NOT NULL DEFAULT '',
    result TEXT,
    claimed REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status);
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    schedule TEXT NOT NULL,
    drill TEXT NOT NULL,
    kind TEXT NOT NULL,              -- missed | skipped
    reason TEXT NOT NULL,
    first REAL NOT NULL,             -- the first and last scheduled time it covers (consecutive ones merged)
    last REAL NOT NULL,
    count INTEGER NOT NULL DEFAULT 1,
    run_id TEXT,                     -- the claimed run it ended, if any
    gates TEXT NOT NULL DEFAULT '[]',
    at REAL NOT NULL                 -- when it was decided
);
CREATE TABLE IF NOT EXISTS approvals (run_id TEXT PRIMARY KEY, by TEXT NOT NULL, at REAL NOT NULL, note TEXT NOT NULL DEFAULT '');
"""

ACTIVE = ("due", "waiting", "running")


@dataclass(frozen=True)
class RunRow:
    run_id: str
    schedule: str
    drill: str
    scheduled_at: float
    status: str
    reason: str
    result: str | None
    claimed: float
    updated: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class DecisionRow:
    """A decision that did not start a run, as `drill history` shows it."""

    id: int
    schedule: str
    drill: str
    kind: str
    reason: str
    first: float
    last: float
    count: int
    run_id: str | None
    gates: tuple[dict[str, Any], ...]
    at: float

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "gates": list(self.gates)}


@dataclass(frozen=True)
class ApprovalRow:
    run_id: str
    by: str
    at: float
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def db_path(state_dir: Path, network: str) -> Path:
    return Path(state_dir).expanduser() / "scheduler" / f"{network}.db"


class SchedulerDB:
    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        try:
            self.db = sqlitedb.open_db(path, SCHEMA, readonly=readonly)
        except sqlite3.Error as exc:
            raise ScheduleError(f"{path}: the scheduler's state cannot be opened: {exc}") from None

    def close(self) -> None:
        self.db.close()

    def transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return sqlitedb.transaction(self.db)

    # -- cursors --

    def cursor(self, schedule: str) -> float | None:
        r = self.db.execute("SELECT handled_until FROM cursors WHERE schedule=?", (schedule,)).fetchone()
        return None if r is None else float(r[0])

    def set_cursor(self, schedule: str, t: float) -> None:
        self.db.execute("INSERT INTO cursors(schedule, handled_until) VALUES(?, ?) "
                        "ON CONFLICT(schedule) DO UPDATE SET handled_until=excluded.handled_until", (schedule, t))  # fmt: skip

    # -- runs --

    def claim(self, run_id: str, schedule: str, drill: str, scheduled_at: float, now: float) -> bool:
        """Record a run as due; False if it was claimed before (a restart, or a second decision)."""
        cur = self.db.execute(
            "INSERT OR IGNORE INTO runs(run_id, schedule, drill, scheduled_at, status, claimed, updated) VALUES(?,?,?,?,?,?,?)",
            (run_id, schedule, drill, scheduled_at, "due", now, now),
        )
        return cur.rowcount == 1

    def run(self, run_id: str) -> RunRow | None:
        r = self.db.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return RunRow(**dict(r)) if r else None

    def runs(self, statuses: Sequence[str] = ()) -> list[RunRow]:
        if statuses:
            marks = ",".join("?" * len(statuses))
            q = f"SELECT * FROM runs WHERE status IN ({marks}) ORDER BY scheduled_at, run_id"  # noqa: S608 - only ? marks
            rows = self.db.execute(q, tuple(statuses)).fetchall()
        else:
            rows = self.db.execute("SELECT * FROM runs ORDER BY scheduled_at, run_id").fetchall()
        return [RunRow(**dict(r)) for r in rows]

    def set_run(self, run_id: str, now: float, **fields: Any) -> None:
        bad = set(fields) - {"status", "reason", "result"}
        assert not bad, bad
        cols = ", ".join(f"{k}=?" for k in fields)
        self.db.execute(f"UPDATE runs SET {cols}, updated=? WHERE run_id=?", (*fields.values(), now, run_id))  # noqa: S608

    # -- records --

    def record(
        self,
        schedule: str,
        drill: str,
        kind: str,
        reason: str,
        first: float,
        last: float,
        now: float,
        *,
        count: int = 1,
        run_id: str | None = None,
        gates: Sequence[dict[str, Any]] = (),
    ) -> None:
        """A decision that started no run. Consecutive ones of a schedule with one kind and reason (and no run
        id) are one record with a count: a month of downtime is one line."""
        prev = self.db.execute("SELECT * FROM records WHERE schedule=? ORDER BY id DESC LIMIT 1", (schedule,)).fetchone()
        if prev and run_id is None and prev["run_id"] is None and prev["kind"] == kind and prev["reason"] == reason:
            self.db.execute("UPDATE records SET last=?, count=count+?, at=? WHERE id=?", (last, count, now, prev["id"]))
            return
        self.db.execute(
            "INSERT INTO records(schedule, drill, kind, reason, first, last, count, run_id, gates, at) "
            "VALUES(?,?,?,?,?,?,?,?,?,?)",
            (schedule, drill, kind, reason, first, last, count, run_id, json.dumps(list(gates)), now),
        )

    def records(self, schedule: str | None = None, drill: str | None = None, since: float | None = None) -> list[DecisionRow]:
        q, args = "SELECT * FROM records WHERE 1", list[Any]()
        if schedule is not None:
            q, args = q + " AND schedule=?", [*args, schedule]
        if drill is not None:
            q, args = q + " AND drill=?", [*args, drill]
        if since is not None:
            q, args = q + " AND last>=?", [*args, since]
        rows = self.db.execute(q + " ORDER BY first, id", tuple(args)).fetchall()
        return [DecisionRow(**{**dict(r), "gates": tuple(json.loads(r["gates"] or "[]"))}) for r in rows]

    # -- approvals --

    def approve(self, run_id: str, by: str, now: float, note: str = "") -> ApprovalRow:
        """Record an approval (again: the first one is kept, and returned)."""
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO approvals(run_id, by, at, note) VALUES(?,?,?,?)", (run_id, by, now, note))
        got = self.approval(run_id)
        assert got is not None
        return got

    def approval(self, run_id: str) -> ApprovalRow | None:
        r = self.db.execute("SELECT * FROM approvals WHERE run_id=?", (run_id,)).fetchone()
        return ApprovalRow(**dict(r)) if r else None


def all_records(state_dir: Path, drill: str | None = None, since: float | None = None) -> list[DecisionRow]:
    """The decisions of every network's scheduler under a state dir (for `drill history`); unreadable ones are
    left out."""
    out: list[DecisionRow] = []
    for p in sorted((Path(state_dir).expanduser() / "scheduler").glob("*.db")):
        try:
            db = SchedulerDB(p, readonly=True)
        except ScheduleError:
            continue
        try:
            out += db.records(drill=drill, since=since)
        except sqlite3.Error:
            continue
        finally:
            db.close()
    return sorted(out, key=lambda r: (r.first, r.id))
