"""The scheduler service on the shared local lab (`iotex-ops scheduler serve`, started by `lab up`): a schedule
due in a few seconds runs first-aid by itself; killed with -9 mid-drill and restarted, the run is resumed, not
started twice; a gate (an unrelated delegate down) keeps a due drill from starting, saying why; a stop
condition (a delegate killed during the drill) aborts it and rolls it back.

Each test writes the lab's inventory/drills.yml (the service reads it again when it changes) with one
schedule: the first test waits for cron's next minute at least ~4 s away (cron has minutes) and checks
the run starts on time; the others put the service's cursor before this minute's occurrence, which it then
starts at once (a catch-up within the start deadline). Each puts the lab's own (disabled) file back after
and leaves the lab healthy (alertd restarts a killed node)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from iotex_ops import inventory as inv_mod
from iotex_ops import network as network_mod
from iotex_ops.alerting.silences import Silences
from iotex_ops.cli import main
from iotex_ops.errors import OpsError
from iotex_ops.lab import lab as lab_mod
from iotex_ops.lab import ops_services
from iotex_ops.paging.receiver import LabClient, read_state
from iotex_ops.prom import Prometheus
from iotex_ops.runbook.events import ContinuousFailed, Gate, MaintenanceOpen, Resumed, RollbackStart, RunStart, StepStart
from iotex_ops.runbook.store import RunStore
from iotex_ops.schedule.driver import STOP_CHECK, LiveSignals
from iotex_ops.schedule.records import RunRow, SchedulerDB, db_path
from iotex_ops.schedule.service import GATES, counts
from tests.ops.conftest import SharedLab

pytestmark = pytest.mark.slow


class Lab:
    def __init__(self, state: lab_mod.LabState) -> None:
        self.state = state
        self.root = Path(state.root)
        self.drills = Path(state.inventory).parent / "drills.yml"
        self.state_dir = Path(state.scheduler_state_dir)
        self.network = network_mod.network_id(inv_mod.load(state.inventory))
        self.store = RunStore(self.state_dir)

    def schedule(self, name: str, min_lead_s: float = 4.0, at: datetime | None = None, **over: Any) -> tuple[str, datetime]:
        """Write a drills file with one first-aid schedule due at the next minute >= min_lead_s away (or `at`)."""
        at = at or (datetime.now(UTC) + timedelta(seconds=min_lead_s + 59)).replace(second=0, microsecond=0)
        s = {"name": name, "drill": "first-aid", "params": {"hold_s": 3, "blocks": 5, "single_check": False},
             "cron": f"{at.minute} {at.hour} * * *", "timeout": "5m", **over}  # fmt: skip
        self.drills.write_text(yaml.safe_dump({"defaults": {"timezone": "UTC", "start_deadline": "1m"}, "schedules": [s]}))
        return f"{at:%Y%m%dT%H%M%SZ}-{name}", at

    def schedule_now(self, name: str, **over: Any) -> tuple[str, datetime]:
        """A schedule whose occurrence this minute has just passed, and the service's cursor for it put before
        that occurrence: the service starts it at its next tick, within its start deadline (a catch-up, as
        after a restart), instead of the test waiting up to a minute for cron's next one."""
        at = datetime.now(UTC).replace(second=0, microsecond=0)
        db = SchedulerDB(db_path(self.state_dir, self.network))
        try:
            db.set_cursor(name, at.timestamp() - 1)
        finally:
            db.close()
        return self.schedule(name, at=at, start_deadline="5m", **over)

    def run_row(self, rid: str) -> RunRow | None:
        path = db_path(self.state_dir, self.network)
        if not path.exists():
            return None
        db = SchedulerDB(path, readonly=True)
        try:
            return db.run(rid)
        finally:
            db.close()

    def wait_decided(self, rid: str, timeout: float) -> RunRow:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.run_row(rid)
            if r is not None and r.status in ("ended", "not_started"):
                return r
            time.sleep(0.5)
        log = (self.root / "scheduler" / "scheduler.log").read_text()[-3000:]
        raise AssertionError(f"{rid} not decided within {timeout}s: {self.run_row(rid)}\n{log}")

    def wait_event(self, rid: str, what: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.store.started(rid) and any(what(e) for e in self.store.events(rid)):
                return
            time.sleep(0.2)
        raise AssertionError(f"{rid}: the event did not come within {timeout}s")

    def firing(self) -> list[str]:
        with Prometheus(self.state.prometheus_url, timeout=3) as p:
            rows = p.query('ALERTS{alertstate="firing"}')
        return [r["metric"]["alertname"] + "@" + r["metric"].get("host", "") for r in rows
                if r["metric"].get("severity") != "info"]  # fmt: skip

    def open_incidents(self) -> list[str]:
        """What the scheduler's incidents gate reads: alertd's open incidents that count."""
        signals = LiveSignals(self.state.prometheus_url, Path(self.state.alertd_state_dir))
        return [a.describe() for a in signals.open_incidents() if counts(a)]

    def resume_paused(self) -> None:
        """Resume a delegate a drill left paused (killed while the drill paused them all, it missed the rollback's
        resume): what the on-call person would do, rather than wait out DelegatePausedUnexpectedly's 30 s."""
        with network_mod.load(self.state.inventory) as net:
            for d in net.delegates:
                with contextlib.suppress(Exception):  # not answering: wait_quiet says so
                    if d.api.get_json("/v1/chain", timeout=2).get("paused"):
                        d.admin("resume")

    def wait_quiet(self, timeout: float = 120.0) -> None:
        """Every node up, no alert firing (but the heartbeat) and no incident open at alertd (a page waits for
        its resolve hold): the next test starts on a healthy lab, and a run started at once passes the gates."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.resume_paused()  # a node alertd restarted after the drill comes back paused: resumed at once
            with contextlib.suppress(Exception):  # Prometheus or alertd's store busy: asked again
                f, i = self.firing(), self.open_incidents()
                down = [n.name for n in self.state.nodes if not self.state.node_pid(n.name)]
                if not f and not i and not down:
                    return
            time.sleep(1)
        raise AssertionError(f"the lab is not quiet after {timeout}s: {self.firing()} {self.open_incidents()}")


def _holding(e: Any) -> bool:
    return isinstance(e, StepStart) and e.step == "hold"


@pytest.fixture
def lab(shared_lab: SharedLab) -> Iterator[Lab]:
    lab = Lab(shared_lab.get())
    assert ops_services.scheduler_pid(lab.root), "lab up starts the scheduler"
    lab.wait_quiet()
    try:
        yield lab
    finally:
        lab.drills.write_text(lab_mod.lab_drills())
        if ops_services.scheduler_pid(lab.root) is None:
            ops_services.restart_scheduler(lab.state)
        lab.wait_quiet()


def test_the_lab_starts_the_scheduler_and_its_drills_stay_disabled(lab: Lab) -> None:
    res = CliRunner().invoke(main, ["lab", "status", "--json"], env={"IOTEX_OPS_LAB_DIR": str(lab.root)})
    assert res.exit_code == 0, res.output
    assert '"service": "scheduler"' in res.output
    assert all(s["enabled"] is False for s in yaml.safe_load(lab_mod.lab_drills())["schedules"])


def test_a_due_schedule_runs_first_aid_by_itself_and_the_history_shows_it(lab: Lab) -> None:
    """...in a maintenance window: its silences listed in Alertmanager while it runs and expired after, no
    incident at the receiver, a change event at its start and one at its end; history and scorecard show it."""
    sil = Silences(lab.state.alertmanager_url)
    seen: dict[str, Any] = {}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            with contextlib.suppress(OpsError):
                seen.update({x.id: x for x in sil.ours()})
            stop.wait(0.5)

    incidents_before = {i["id"] for i in LabClient.for_dir(lab.state.pager_dir).incidents()}
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    rid, at = lab.schedule("lab-due")
    try:
        r = lab.wait_decided(rid, timeout=(at - datetime.now(UTC)).total_seconds() + 120)
    finally:
        stop.set()
        watcher.join(timeout=10)
    assert r.status == "ended" and r.result == "passed", r
    opened = [e for e in lab.store.events(rid) if isinstance(e, MaintenanceOpen)]
    assert len(opened) == 1 and opened[0].silences, opened
    assert set(opened[0].silences) <= set(seen)  # listed while the drill ran
    assert all(rid in x.comment and x.created_by == "iotex-ops" for x in seen.values() if x.id in opened[0].silences)
    assert not [x for x in sil.ours() if x.id in opened[0].silences]  # expired after
    assert {i["id"] for i in LabClient.for_dir(lab.state.pager_dir).incidents()} <= incidents_before
    store = read_state(Path(lab.state.pager_dir))
    try:
        changes = [c for c in store.changes() if c["event"]["payload"].get("custom_details", {}).get("run_id") == rid]
    finally:
        store.close()
    assert len(changes) == 2, changes
    card = CliRunner().invoke(main, ["drill", "scorecard", "--state-dir", str(lab.state_dir), "--json"])
    assert card.exit_code == 0 and "first-aid" in card.output, card.output
    events = lab.store.events(rid)
    gates = [e for e in events if isinstance(e, Gate)]
    assert [g.gate for g in gates] == list(GATES) and all(g.ok for g in gates)
    first = next(e for e in events if isinstance(e, StepStart))
    latency = first.ts - at.timestamp()
    assert latency < 5.0, f"first step {latency:.2f}s after its time"
    res = CliRunner().invoke(main, ["drill", "history", "first-aid", "--state-dir", str(lab.state_dir), "--json"])
    assert res.exit_code == 0 and rid in res.output


def test_killed_mid_drill_the_restarted_service_resumes_the_run_not_starting_it_twice(lab: Lab) -> None:
    rid, _ = lab.schedule_now("lab-kill", params={"hold_s": 12, "blocks": 5, "single_check": False})
    lab.wait_event(rid, lambda e: isinstance(e, StepStart) and e.step == "hold", timeout=60)
    pid = ops_services.stop_scheduler(lab.root, kill=True)
    assert pid is not None
    time.sleep(1)
    ops_services.restart_scheduler(lab.state)
    r = lab.wait_decided(rid, timeout=120)
    assert r.status == "ended" and r.result == "passed", r
    events = lab.store.events(rid)
    assert sum(isinstance(e, RunStart) for e in events) == 1  # started once
    assert sum(isinstance(e, Resumed) for e in events) == 1  # and resumed by the new service
    assert len([x for x in lab.store.ids() if x == rid]) == 1
    # the killed service's silences were expired on resume, the resumed run's at its end: none left
    opened = {i for e in events if isinstance(e, MaintenanceOpen) for i in e.silences}
    assert opened and not [x for x in Silences(lab.state.alertmanager_url).ours() if x.id in opened or rid in x.comment]


def test_a_gate_keeps_a_due_drill_from_starting_with_a_delegate_down_and_says_why(lab: Lab) -> None:
    victim = lab.state.nodes[-1].name
    # down a few seconds before the run is due: the alert fires, alertd opens an incident and restarts the node
    node = lab.state.node_pid(victim)
    assert node
    os.kill(node, signal.SIGKILL)
    time.sleep(7)
    rid, _ = lab.schedule_now("lab-gate")
    r = lab.wait_decided(rid, timeout=90)
    assert r.status == "not_started", r
    assert "DelegateDown on " + victim in r.reason, r.reason
    assert not lab.store.exists(rid)  # nothing ran
    res = CliRunner().invoke(main, ["drill", "history", "first-aid", "--state-dir", str(lab.state_dir)])
    assert res.exit_code == 0 and "DelegateDown" in res.output, res.output


def test_a_stop_condition_aborts_a_scheduled_drill_and_rolls_it_back(lab: Lab) -> None:
    victim = lab.state.nodes[-1].name
    rid, _ = lab.schedule_now("lab-stop", params={"hold_s": 25, "blocks": 5, "single_check": False})
    lab.wait_event(rid, lambda e: isinstance(e, StepStart) and e.step == "hold", timeout=60)
    node = lab.state.node_pid(victim)
    assert node
    os.kill(node, signal.SIGKILL)
    r = lab.wait_decided(rid, timeout=120)
    assert r.status == "ended" and r.result in ("failed", "rollback_failed"), r
    events = lab.store.events(rid)
    stops = [e for e in events if isinstance(e, ContinuousFailed)]
    assert stops and stops[0].check == STOP_CHECK and f"DelegateDown on {victim}" in stops[0].detail, stops
    assert any(isinstance(e, RollbackStart) and e.step == "pause-all" for e in events)
    # the unexpected alert was not silenced by the drill's window: it paged for that delegate as always
    pager = LabClient.for_dir(lab.state.pager_dir)
    deadline = time.monotonic() + 60
    while not any(f"DelegateDown/{victim}" in i["dedup_key"] or victim in i.get("summary", "") for i in pager.incidents()):
        assert time.monotonic() < deadline, pager.incidents()
        time.sleep(1)
