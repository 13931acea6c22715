"""The scheduler service's real sides (the edge): the engine on the inventory's network, and the signals the
gates and stop conditions read (Prometheus' ALERTS, alertd's store). The service itself is service.py."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from iotex_ops import network as network_mod
from iotex_ops.errors import OpsError
from iotex_ops.prom import Prometheus
from iotex_ops.runbook import loader
from iotex_ops.runbook.engine import Engine
from iotex_ops.runbook.events import Gate, Result, SteadyState
from iotex_ops.runbook.lock import NetworkLocked
from iotex_ops.runbook.model import Check, CheckResult, Runbook
from iotex_ops.runbook.store import RunStore
from iotex_ops.schedule import edge
from iotex_ops.schedule.model import ScheduleError
from iotex_ops.schedule.service import POLL_S, Alert, Outcome
from iotex_ops.schedule.timing import ChainTime

STOP_CHECK = "stop conditions: no alert or incident the drill does not expect"


def with_stop(rb: Runbook, stop: Callable[[], str | None], poll_s: float = POLL_S) -> Runbook:
    """The runbook with the stop conditions as one more continuous check, polled every `poll_s` at most: the
    engine journals its failure (continuous_failed), aborts the step in progress and rolls back, as for a
    lost steady state."""

    def probe(ctx: Any) -> CheckResult:
        why = stop()
        return CheckResult(why is None, why, why or "")

    check = Check(STOP_CHECK, probe)
    return dataclasses.replace(rb, continuous=(*rb.continuous, check), continuous_interval=min(rb.continuous_interval, poll_s))


class EngineDriver:
    """Drills on one inventory's network through the engine, into `store` (the state dir's run store)."""

    def __init__(self, inventory: Path, store: RunStore, *, runbook_dirs: tuple[Path, ...] = (), known_hosts: Path | None = None):
        self.network = network_mod.load(inventory, known_hosts)
        self.store = store
        self.runbook_dirs = runbook_dirs
        self._chain: tuple[float, ChainTime] | None = None

    def close(self) -> None:
        self.network.close()

    @property
    def locks_dir(self) -> Path:
        return Path(str(self.network.var("iotex_ops_lock_dir") or self.store.locks_dir)).expanduser()

    def runbook(self, name: str) -> Runbook:
        return loader.find(name, list(self.runbook_dirs))

    def hosts(self, runbook: Runbook, params: Mapping[str, Any]) -> set[str]:
        """The delegates the drill touches: its steps' hosts; a runbook whose steps name none touches all."""
        out: set[str] = set()
        for s in runbook.steps:
            pattern = params.get(s.param_hosts) if s.param_hosts else s.hosts
            if pattern:
                with contextlib.suppress(OpsError):
                    out |= {d.name for d in self.network.select(str(pattern))}
        return out or {d.name for d in self.network.delegates}

    def steady_state(self, runbook: Runbook, params: Mapping[str, Any]) -> SteadyState:
        return Engine(self.store, yes=True, report=False).check_steady_state(runbook, self.network, params)

    def lock_holder(self) -> str | None:
        """Who holds the network's lock (a drill, or a remediation on one of its hosts), or None if it is free:
        tried, not read (a holder killed with -9 leaves its name in the file, not its lock)."""
        path = self.locks_dir / f"{self.network.id}.lock"
        if not path.exists():
            return None
        fd = os.open(path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                try:
                    import json

                    h = json.loads(path.read_text() or "null")
                except (OSError, ValueError):
                    h = None
                if isinstance(h, dict) and h.get("run_id"):
                    return f"run {h.get('run_id')} ({h.get('runbook')}, pid {h.get('pid')})"
                return "a remediation on one of its hosts (alertd)"
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def expire_dead_windows(self) -> list[str]:
        """The silences left by drill runs that no process runs, expired (their ids)."""
        from iotex_ops.schedule.maintenance import expire_dead_runs

        return expire_dead_runs(self.network, self.store)

    def journal(self, run_id: str) -> tuple[str, Result | None]:
        if not self.store.started(run_id):
            return "none", None
        state = self.store.state(run_id)
        return ("ended", state.result) if state.end is not None else ("unfinished", None)

    def chain(self, now: datetime) -> ChainTime:
        """The chain's calendar (halt heights, activations), read from the nodes at most every 30 s; raises
        ScheduleError naming what the nodes said when none answered."""
        if self._chain is None or time.monotonic() - self._chain[0] > 30:
            got, errors = edge.read_chain([d.api for d in self.network.delegates], now)
            if got is None:
                raise ScheduleError("no delegate answered: " + "; ".join(errors)[:300])
            self._chain = (time.monotonic(), got)
        return self._chain[1]

    def run(
        self,
        runbook: Runbook,
        params: Mapping[str, Any],
        run_id: str,
        preamble: tuple[Gate, ...],
        steady_state: SteadyState | None,
        stop: Callable[[], str | None],
    ) -> Outcome:
        self.store.discard(run_id)  # a start that died before its first event left an empty directory
        engine = Engine(self.store, yes=True)
        try:
            res = engine.run(with_stop(runbook, stop), self.network, params, run_id=run_id, preamble=preamble,
                             steady_state=steady_state)  # fmt: skip
        except NetworkLocked as exc:
            return Outcome(Result.DEFERRED, str(exc))
        except OpsError as exc:
            if self.store.started(run_id):
                raise
            return Outcome(Result.REFUSED, str(exc))
        return Outcome(res.result, res.error)

    def resume(self, run_id: str, stop: Callable[[], str | None]) -> Outcome:
        engine = Engine(self.store, yes=True)
        res = engine.resume(run_id, lambda name: with_stop(self.runbook(name), stop), self.network)
        return Outcome(res.result, res.error)


class LiveSignals:
    """Firing alerts from Prometheus (`ALERTS{alertstate="firing"}`) and open incidents from alertd's store
    (an alert it holds as firing, a page not resolved, a remediation running). Either missing raises: the gate
    that reads it fails closed. `alertd_state_dir=None` with `without_alertd`: the network has no alertd."""

    def __init__(self, prometheus_url: str | None, alertd_state_dir: Path | None, *, without_alertd: bool = False) -> None:
        self.prom = Prometheus(prometheus_url, timeout=3.0, retries=0) if prometheus_url else None
        self.alertd_db = alertd_state_dir / "alertd.db" if alertd_state_dir else None
        self.without_alertd = without_alertd

    def firing_alerts(self) -> list[Alert]:
        if self.prom is None:
            raise OpsError("no Prometheus to ask (the inventory's iotex_prometheus_url is not set)")
        rows = self.prom.query('ALERTS{alertstate="firing"}')
        out = []
        for r in rows:
            m = r.get("metric", {})
            out.append(Alert(str(m.get("alertname", "?")), str(m.get("host", "")), str(m.get("severity", ""))))
        return out

    def open_incidents(self) -> list[Alert]:
        if self.without_alertd:
            return []
        if self.alertd_db is None:
            raise OpsError("no alertd store to read (--alertd-state-dir; --without-alertd if the network has none)")
        if not self.alertd_db.is_file():
            raise OpsError(f"{self.alertd_db}: alertd's store does not exist (is alertd running with this state dir?)")
        from iotex_ops.remediation.store import Store

        store = Store(self.alertd_db, readonly=True)
        try:
            out = [
                Alert(a.alertname, a.host, a.severity, "alertd")
                for a in store.alerts()
                if a.status == "firing" or a.page in ("triggered", "acknowledged")
            ]
            running = store.remediations("state='running'")
            out += [Alert(r.alertname, r.host, "", f"alertd remediation {r.runbook}") for r in running]
        finally:
            store.close()
        return out

    def close(self) -> None:
        if self.prom is not None:
            self.prom.close()
