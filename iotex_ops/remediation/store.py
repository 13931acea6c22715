"""The remediation service's state in SQLite (WAL, synchronous=FULL): alerts and their pages, remediations
and their runs, circuit breakers. Everything a restarted service needs to carry on without repeating a
remediation or leaving a page open. Not thread-safe by itself: the service serialises access."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iotex_ops import sqlitedb

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    fingerprint TEXT PRIMARY KEY,
    alertname TEXT NOT NULL,
    host TEXT NOT NULL,
    severity TEXT NOT NULL,
    labels TEXT NOT NULL,
    annotations TEXT NOT NULL,
    status TEXT NOT NULL,                  -- firing | resolved
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    resolved_seen REAL,                    -- when it was last seen resolved (the page waits resolve_after)
    incidents INTEGER NOT NULL DEFAULT 0,  -- incidents opened for this alert so far
    page_key TEXT NOT NULL,
    page TEXT NOT NULL DEFAULT 'none',     -- none | triggered | acknowledged | resolved
    escalated INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,   -- remediation attempts in the current incident
    last_start REAL,
    not_before REAL,                       -- no remediation start before this (deferred)
    flaps INTEGER NOT NULL DEFAULT 0,
    note TEXT NOT NULL DEFAULT '',         -- why automation is not acting now (said once per change)
    deferrals INTEGER NOT NULL DEFAULT 0,  -- starts refused in a row because the network was locked
    deferred_since REAL
);
CREATE TABLE IF NOT EXISTS remediations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint TEXT NOT NULL,
    alertname TEXT NOT NULL,
    host TEXT NOT NULL,
    incident INTEGER NOT NULL,
    runbook TEXT NOT NULL,
    params TEXT NOT NULL,
    run_id TEXT NOT NULL UNIQUE,
    attempt INTEGER NOT NULL,
    state TEXT NOT NULL,                   -- running | passed | failed | rollback_failed | deferred | refused
    created REAL NOT NULL,
    ended REAL,
    error TEXT,
    step TEXT NOT NULL DEFAULT '',
    counts_for_breaker INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS remediations_state ON remediations(state);
CREATE INDEX IF NOT EXISTS remediations_incident ON remediations(fingerprint, incident);
CREATE INDEX IF NOT EXISTS remediations_created ON remediations(created);
CREATE INDEX IF NOT EXISTS remediations_host ON remediations(host, state);
CREATE INDEX IF NOT EXISTS alerts_status ON alerts(status, page);
CREATE TABLE IF NOT EXISTS breakers (
    runbook TEXT PRIMARY KEY,
    failures INTEGER NOT NULL DEFAULT 0,   -- consecutive
    open_until REAL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass
class AlertRow:
    fingerprint: str
    alertname: str
    host: str
    severity: str
    labels: dict[str, str]
    annotations: dict[str, str]
    status: str
    first_seen: float
    last_seen: float
    resolved_seen: float | None
    incidents: int
    page_key: str
    page: str
    escalated: bool
    attempts: int
    last_start: float | None
    not_before: float | None
    flaps: int
    note: str
    deferrals: int = 0
    deferred_since: float | None = None

    @classmethod
    def of(cls, r: sqlite3.Row) -> AlertRow:
        d = dict(r)
        d["labels"] = json.loads(d["labels"])
        d["annotations"] = json.loads(d["annotations"])
        d["escalated"] = bool(d["escalated"])
        return cls(**d)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class RemediationRow:
    id: int
    fingerprint: str
    alertname: str
    host: str
    incident: int
    runbook: str
    params: dict[str, Any]
    run_id: str
    attempt: int
    state: str
    created: float
    ended: float | None
    error: str | None
    step: str
    counts_for_breaker: bool

    @classmethod
    def of(cls, r: sqlite3.Row) -> RemediationRow:
        d = dict(r)
        d["params"] = json.loads(d["params"])
        d["counts_for_breaker"] = bool(d["counts_for_breaker"])
        return cls(**d)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


_ALERT_COLS = set(AlertRow.__dataclass_fields__)
_REM_COLS = set(RemediationRow.__dataclass_fields__)


class Store:
    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self.db = sqlitedb.open_db(path, SCHEMA, readonly=readonly)

    def close(self) -> None:
        self.db.close()

    # -- alerts --

    def alert(self, fingerprint: str) -> AlertRow | None:
        r = self.db.execute("SELECT * FROM alerts WHERE fingerprint=?", (fingerprint,)).fetchone()
        return AlertRow.of(r) if r else None

    def alerts(self, where: str = "1", args: tuple[Any, ...] = ()) -> list[AlertRow]:
        rows = self.db.execute(f"SELECT * FROM alerts WHERE {where} ORDER BY first_seen, fingerprint", args)  # noqa: S608
        return [AlertRow.of(r) for r in rows]

    def insert_alert(self, row: AlertRow) -> None:
        d = row.to_json()
        d["labels"], d["annotations"] = json.dumps(d["labels"]), json.dumps(d["annotations"])
        cols = ",".join(d)
        self.db.execute(f"INSERT INTO alerts ({cols}) VALUES ({','.join('?' * len(d))})", tuple(d.values()))  # noqa: S608

    def update_alert(self, fingerprint: str, **fields: Any) -> None:
        bad = set(fields) - _ALERT_COLS
        assert not bad, bad
        for k in ("labels", "annotations"):
            if k in fields:
                fields[k] = json.dumps(fields[k])
        sets = ",".join(f"{k}=?" for k in fields)
        self.db.execute(f"UPDATE alerts SET {sets} WHERE fingerprint=?", (*fields.values(), fingerprint))  # noqa: S608

    # -- remediations --

    def add_remediation(self, **fields: Any) -> int:
        fields["params"] = json.dumps(fields["params"])
        cols = ",".join(fields)
        cur = self.db.execute(
            f"INSERT INTO remediations ({cols}) VALUES ({','.join('?' * len(fields))})",  # noqa: S608
            tuple(fields.values()),
        )
        return int(cur.lastrowid or 0)

    def update_remediation(self, rid: int, **fields: Any) -> None:
        bad = set(fields) - _REM_COLS
        assert not bad, bad
        sets = ",".join(f"{k}=?" for k in fields)
        self.db.execute(f"UPDATE remediations SET {sets} WHERE id=?", (*fields.values(), rid))  # noqa: S608

    def remediation(self, rid: int) -> RemediationRow:
        return RemediationRow.of(self.db.execute("SELECT * FROM remediations WHERE id=?", (rid,)).fetchone())

    def remediations(self, where: str = "1", args: tuple[Any, ...] = ()) -> list[RemediationRow]:
        rows = self.db.execute(f"SELECT * FROM remediations WHERE {where} ORDER BY id", args)  # noqa: S608
        return [RemediationRow.of(r) for r in rows]

    def starts_since(self, t: float) -> list[float]:
        """When remediations that count for the rate limit started: not the deferred ones (a drill held the
        network) nor the refused ones (nothing ran), so that a storm of alerts alertd cannot act on does not
        delay a real remediation."""
        rows = self.db.execute("SELECT created FROM remediations WHERE created>=? AND state NOT IN ('deferred','refused')", (t,))
        return [float(r[0]) for r in rows]

    def prune(self, before: float) -> int:
        """Forget incidents closed before `before` (their alerts and remediations); the run journals stay."""
        old = [r[0] for r in self.db.execute(
            "SELECT fingerprint FROM alerts WHERE status='resolved' AND page IN ('resolved','none') AND last_seen<?", (before,)
        )]  # fmt: skip
        for fp in old:
            self.db.execute("DELETE FROM remediations WHERE fingerprint=? AND state!='running'", (fp,))
            self.db.execute("DELETE FROM alerts WHERE fingerprint=?", (fp,))
        return len(old)

    def snapshot(self) -> dict[str, Any]:
        """Every alert, remediation and breaker as JSON-ready dicts (`alertd status`, /v1/state)."""
        return {
            "alerts": [a.to_json() for a in self.alerts()],
            "remediations": [r.to_json() for r in self.remediations()],
            "breakers": {k: {"failures": f, "open_until": u} for k, (f, u) in self.breakers().items()},
        }

    def counts(self) -> dict[str, Any]:
        """What /metrics shows, with counting queries (a scrape must not load every row)."""
        by_state = self.db.execute("SELECT runbook, state, count(*) FROM remediations GROUP BY runbook, state").fetchall()
        firing = self.db.execute("SELECT count(*) FROM alerts WHERE status='firing'").fetchone()[0]
        return {"remediations": {(r[0], r[1]): int(r[2]) for r in by_state}, "alerts_firing": int(firing)}

    # -- breakers and meta --

    def breaker(self, runbook: str) -> tuple[int, float | None]:
        r = self.db.execute("SELECT failures, open_until FROM breakers WHERE runbook=?", (runbook,)).fetchone()
        return (int(r[0]), r[1]) if r else (0, None)

    def set_breaker(self, runbook: str, failures: int, open_until: float | None) -> None:
        self.db.execute(
            "INSERT INTO breakers (runbook, failures, open_until) VALUES (?,?,?) "
            "ON CONFLICT(runbook) DO UPDATE SET failures=excluded.failures, open_until=excluded.open_until",
            (runbook, failures, open_until),
        )

    def breakers(self) -> dict[str, tuple[int, float | None]]:
        return {r[0]: (int(r[1]), r[2]) for r in self.db.execute("SELECT runbook, failures, open_until FROM breakers")}

    def meta(self, key: str) -> str | None:
        r = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return str(r[0]) if r else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES (?,?) ON CONFLICT(key) DO UPDATE SET value=excluded.value", (key, value)
        )

    def transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """One atomic, durable change (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on an exception)."""
        return sqlitedb.transaction(self.db)
