"""The scheduler service's decisions (iotex_ops/schedule/service.py) with FakeClock and fakes of its two sides
(the engine driver, the signals): due, missed, catch-up, overlap, approval, each gate failing closed, stop
conditions, restart safety. No process, no server: the state is a SQLite file under tmp_path."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from iotex_ops.cli import main
from iotex_ops.runbook.events import CheckRow, Gate, Result, SteadyState
from iotex_ops.runbook.model import Runbook, Step
from iotex_ops.schedule import parse
from iotex_ops.schedule.driver import STOP_CHECK, with_stop
from iotex_ops.schedule.model import Drills, ScheduleError
from iotex_ops.schedule.records import SchedulerDB, all_records, db_path
from iotex_ops.schedule.service import GATES, Alert, Outcome, Scheduler, StopConditions, approve, parse_run_id
from iotex_ops.testing import FakeClock

T0 = datetime(2026, 12, 8, 3, 59, 0, tzinfo=UTC).timestamp()  # one minute before the 04:00 runs
RUN = "20261208T040000Z-fa"


def drills(**over: Any) -> Drills:
    s = {"name": "fa", "drill": "first-aid", "cron": "0 4 * * *", "timezone": "UTC", "start_deadline": "5m", **over}
    d, problems = parse({"schedules": [s]})
    assert problems == []
    return d


class FakeSignals:
    def __init__(self) -> None:
        self.alerts: list[Alert] = []
        self.incidents: list[Alert] = []
        self.alerts_error: Exception | None = None
        self.incidents_error: Exception | None = None

    def firing_alerts(self) -> list[Alert]:
        if self.alerts_error:
            raise self.alerts_error
        return list(self.alerts)

    def open_incidents(self) -> list[Alert]:
        if self.incidents_error:
            raise self.incidents_error
        return list(self.incidents)


class FakeDriver:
    def __init__(self) -> None:
        self.started: list[tuple[str, tuple[Gate, ...], SteadyState | None]] = []
        self.resumed: list[str] = []
        self.journals: dict[str, tuple[str, Result | None]] = {}
        self.holder: str | None = None
        self.holder_error: Exception | None = None
        self.steady_ok = True
        self.steady_error: Exception | None = None
        self.steady_calls = 0
        self.during: Callable[[Callable[[], str | None]], Result] | None = None
        self.expired_calls = 0
        self.expire_error: Exception | None = None

    def runbook(self, name: str) -> Runbook:
        return Runbook(name=name, summary="a drill", steps=(), expected_alerts=("ChainStalled", "DelegatePausedUnexpectedly"))

    def hosts(self, runbook: Runbook, params: Mapping[str, Any]) -> set[str]:
        return {"d0", "d1"}

    def steady_state(self, runbook: Runbook, params: Mapping[str, Any]) -> SteadyState:
        self.steady_calls += 1
        if self.steady_error:
            raise self.steady_error
        row = CheckRow("the chain finalizes", self.steady_ok, 3, "" if self.steady_ok else "no block in 15s")
        return SteadyState(phase="before", ok=self.steady_ok, checks=(row,))

    def lock_holder(self) -> str | None:
        if self.holder_error:
            raise self.holder_error
        return self.holder

    def journal(self, run_id: str) -> tuple[str, Result | None]:
        return self.journals.get(run_id, ("none", None))

    def expire_dead_windows(self) -> list[str]:
        self.expired_calls += 1
        if self.expire_error:
            raise self.expire_error
        return ["s-dead"]

    def run(self, runbook: Runbook, params: Mapping[str, Any], run_id: str, preamble: tuple[Gate, ...],
            steady_state: SteadyState | None, stop: Callable[[], str | None]) -> Outcome:  # fmt: skip
        self.started.append((run_id, preamble, steady_state))
        self.journals[run_id] = ("unfinished", None)
        result = self.during(stop) if self.during else Result.PASSED
        self.journals[run_id] = ("ended", result)
        return Outcome(result)

    def resume(self, run_id: str, stop: Callable[[], str | None]) -> Outcome:
        self.resumed.append(run_id)
        self.journals[run_id] = ("ended", Result.PASSED)
        return Outcome(Result.PASSED)


class Rig:
    def __init__(self, tmp_path: Path, d: Drills | None = None, *, background: bool = False, lead_s: float = 0.0) -> None:
        self.clock = FakeClock(T0)
        self.driver = FakeDriver()
        self.signals = FakeSignals()
        self.path = db_path(tmp_path, "net")
        self.d = d or drills()
        self.suspended: set[str] = set()
        self.said: list[str] = []
        self.background, self.lead_s = background, lead_s
        self.db = SchedulerDB(self.path)
        self.svc = self.new()

    def new(self) -> Scheduler:
        """A (re)started service on the same state."""
        return Scheduler(drills=lambda: self.d, suspended=lambda: set(self.suspended), driver=self.driver, signals=self.signals,
                         db=self.db, clock=self.clock, lead_s=self.lead_s, background=self.background,
                         say=self.said.append)  # fmt: skip

    def at(self, seconds_after_four: float) -> None:
        self.clock.t = T0 + 60 + seconds_after_four
        self.svc.tick()

    def records(self) -> list[tuple[str, str]]:
        return [(r.kind, r.reason) for r in self.db.records()]


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    r = Rig(tmp_path)
    r.svc.start()
    r.svc.tick()  # first seen at 03:59: the cursor
    return r


# -- due, missed, catch-up ------------------------------------------------------------------------------------


def test_a_due_run_starts_with_the_schedules_run_id_and_every_gate_journaled_in_order(rig: Rig) -> None:
    rig.at(-1)
    assert rig.driver.started == []
    rig.at(0.3)
    [(rid, gates, steady)] = rig.driver.started
    assert rid == RUN == f"{parse_run_id(RUN)[0]:%Y%m%dT%H%M%SZ}-fa"
    assert [g.gate for g in gates] == list(GATES)
    assert all(g.ok for g in gates)
    assert steady is not None and steady.ok
    assert rig.db.run(RUN).status == "ended" and rig.db.run(RUN).result == "passed"  # type: ignore[union-attr]
    rig.at(30)
    assert len(rig.driver.started) == 1  # claimed once: never started twice
    assert rig.records() == []


def test_service_down_past_the_deadline_is_journaled_missed_never_silent(rig: Rig, tmp_path: Path) -> None:
    rig.clock.t = T0 + 60 + 3600  # back an hour later (deadline 5m)
    rig.svc = rig.new()
    rig.svc.start()
    rig.svc.tick()
    assert rig.driver.started == []
    [(kind, reason)] = rig.records()
    assert kind == "missed" and "start deadline (5m)" in reason
    # and `drill history` reads it
    [rec] = all_records(tmp_path, drill="first-aid")
    assert rec.kind == "missed" and rec.schedule == "fa"


def test_at_most_one_catch_up_within_the_deadline(tmp_path: Path) -> None:
    r = Rig(tmp_path, drills(cron="*/2 * * * *", start_deadline="5m"))
    r.svc.tick()
    r.at(4 * 60 + 30)  # 04:00, 04:02 and 04:04 passed while the service slept: only 04:04 runs
    [(rid, _, _)] = r.driver.started
    assert rid == "20261208T040400Z-fa"
    assert [k for k, _ in r.records()] == ["missed"]
    assert r.db.records()[0].count == 2 and "superseded" in r.db.records()[0].reason


# -- overlap --------------------------------------------------------------------------------------------------


def test_overlap_forbid_with_the_network_locked_is_skipped_overlap(rig: Rig) -> None:
    rig.driver.holder = "run 20261208T035500Z-first-aid-abc (first-aid, pid 42)"
    rig.at(0.5)
    assert rig.driver.started == []
    [rec] = rig.db.records()
    assert rec.kind == "skipped" and rec.reason.startswith("overlap:") and "forbid" in rec.reason
    assert [g["gate"] for g in rec.gates] == list(GATES)  # every gate's verdict, the lock's last and failed
    assert rec.gates[-1]["ok"] is False


def test_overlap_queue_waits_for_the_lock_then_is_missed_at_its_deadline(tmp_path: Path) -> None:
    r = Rig(tmp_path, drills(overlap="queue"))
    r.svc.tick()
    r.driver.holder = "run X"
    r.at(1)
    assert r.db.run(RUN).status == "waiting"  # type: ignore[union-attr]
    r.at(60)
    assert r.driver.started == [] and r.records() == []
    r.driver.holder = None
    r.at(90)
    assert [s[0] for s in r.driver.started] == [RUN]  # the lock freed within the deadline: it runs

    r2 = Rig(tmp_path / "b", drills(overlap="queue"))
    r2.svc.tick()
    r2.driver.holder = "run X"
    r2.at(1)
    r2.at(301)
    assert r2.driver.started == []
    [(kind, reason)] = r2.records()
    assert kind == "missed" and "overlap" in reason


def test_overlap_with_the_services_own_running_drill_is_skipped(tmp_path: Path) -> None:
    doc = {"defaults": {"timezone": "UTC", "start_deadline": "5m"}, "schedules": [
        {"name": "fa", "drill": "first-aid", "cron": "0 4 * * *"},
        {"name": "hc", "drill": "hotfix-compatible", "cron": "1 4 * * *"},
    ]}  # fmt: skip
    d, problems = parse(doc)
    assert problems == []
    r = Rig(tmp_path, d, background=True)
    release = threading.Event()
    r.driver.during = lambda stop: (release.wait(10), Result.PASSED)[1]
    r.svc.tick()
    r.at(0.5)
    assert r.svc.active == RUN
    r.at(60.5)  # hc is due while fa runs
    release.set()
    r.svc.wait(10)
    assert [s[0] for s in r.driver.started] == [RUN]
    [rec] = r.db.records()
    assert rec.schedule == "hc" and rec.kind == "skipped" and "overlap" in rec.reason and RUN in rec.reason


# -- approval -------------------------------------------------------------------------------------------------


def test_a_run_requiring_approval_waits_and_starts_once_approved_with_who(tmp_path: Path) -> None:
    r = Rig(tmp_path, drills(approval=True))
    r.svc.tick()
    r.at(1)
    assert r.driver.started == [] and r.db.run(RUN).status == "waiting"  # type: ignore[union-attr]
    assert "schedule approve " + RUN in r.db.run(RUN).reason  # type: ignore[union-attr]
    a = approve(r.d, SchedulerDB(r.path), RUN, by="alice@ops", now=r.clock())
    assert a.by == "alice@ops"
    r.at(20)
    [(_, gates, _)] = r.driver.started
    assert gates[1].gate == "approval" and "approved by alice@ops" in gates[1].detail


def test_an_unapproved_run_past_its_deadline_is_missed_not_approved(tmp_path: Path) -> None:
    r = Rig(tmp_path, drills(approval=True))
    r.svc.tick()
    r.at(1)
    r.at(301)
    assert r.driver.started == []
    assert r.records() == [("missed", "not approved")]
    with pytest.raises(ScheduleError, match="too late"):
        approve(r.d, r.db, RUN, by="bob", now=r.clock())


def test_approve_refuses_what_is_not_a_run_of_a_schedule_needing_approval(tmp_path: Path) -> None:
    db = SchedulerDB(tmp_path / "s.db")
    now = T0
    with pytest.raises(ScheduleError, match="not a scheduled run's id"):
        approve(drills(approval=True), db, "tomorrow-fa", by="a", now=now)
    with pytest.raises(ScheduleError, match="has no run at 2026-12-08 04:30:00 UTC; its next is 20261208T040000Z-fa"):
        approve(drills(approval=True), db, "20261208T043000Z-fa", by="a", now=now)
    with pytest.raises(ScheduleError, match="does not require approval"):
        approve(drills(), db, RUN, by="a", now=now)
    with pytest.raises(ScheduleError, match="no schedule 'nope'"):
        approve(drills(approval=True), db, "20261208T040000Z-nope", by="a", now=now)
    # ahead of time is fine, and the first approval is kept
    assert approve(drills(approval=True), db, RUN, by="a", now=now).by == "a"
    assert approve(drills(approval=True), db, RUN, by="b", now=now).by == "a"


# -- the gates, in order, failing closed ----------------------------------------------------------------------


def _gate_case(rig: Rig, setup: Callable[[Rig], None], gate: str, words: str) -> None:
    setup(rig)
    rig.at(0.5)
    assert rig.driver.started == []
    [rec] = rig.db.records()
    assert rec.kind == "skipped" and rec.run_id == RUN
    assert words in rec.reason, rec.reason
    assert rec.gates[-1]["gate"] == gate and rec.gates[-1]["ok"] is False
    assert [g["gate"] for g in rec.gates] == list(GATES[: GATES.index(gate) + 1])  # the ones after it never ran
    assert rig.db.run(RUN).status == "not_started"  # type: ignore[union-attr]


GATE_CASES: dict[str, tuple[Callable[[Rig], None], str, str]] = {
    "incident open": (lambda r: r.signals.incidents.append(Alert("DelegateDown", "d3", "error", "alertd")), "incidents",
                      "open incident: DelegateDown on d3 (alertd)"),
    "alertd unreadable": (lambda r: setattr(r.signals, "incidents_error", OSError("alertd.db: no such file")), "incidents",
                          "cannot be evaluated: alertd.db"),
    "alert firing": (lambda r: r.signals.alerts.append(Alert("DelegateDown", "d3", "error")), "alerts",
                     "firing: DelegateDown on d3"),
    "prometheus down": (lambda r: setattr(r.signals, "alerts_error", OSError("connection refused")), "alerts",
                        "cannot be evaluated: connection refused"),
    "steady state lost": (lambda r: setattr(r.driver, "steady_ok", False), "steady_state", "lost: the chain finalizes: no block"),
    "steady state unreadable": (lambda r: setattr(r.driver, "steady_error", OSError("no delegate answers")), "steady_state",
                                "cannot be evaluated: no delegate answers"),
    "lock unreadable": (lambda r: setattr(r.driver, "holder_error", PermissionError("locks dir")), "lock", "cannot be evaluated"),
}  # fmt: skip


@pytest.mark.parametrize("case", GATE_CASES)
def test_each_gate_fails_closed_saying_why(rig: Rig, case: str) -> None:
    setup, gate, words = GATE_CASES[case]
    _gate_case(rig, setup, gate, words)


def test_gates_run_in_order_and_stop_at_the_first_failing(rig: Rig) -> None:
    rig.signals.alerts.append(Alert("DelegateDown", "d3", "error"))
    rig.driver.steady_ok = False
    rig.at(0.5)
    assert rig.driver.steady_calls == 0  # the alert gate failed first: the steady state was not even checked
    assert rig.db.records()[0].gates[-1]["gate"] == "alerts"


def test_the_info_heartbeat_does_not_hold_a_drill(rig: Rig) -> None:
    rig.signals.alerts.append(Alert("Watchdog", "", "info"))
    rig.signals.incidents.append(Alert("Watchdog", "", "info", "alertd"))
    rig.at(0.5)
    assert len(rig.driver.started) == 1


def test_a_suspension_while_waiting_fails_the_schedule_gate(tmp_path: Path) -> None:
    r = Rig(tmp_path, drills(approval=True))
    r.svc.tick()
    r.at(1)
    r.suspended.add("fa")
    r.at(2)
    [rec] = r.db.records()
    assert rec.kind == "skipped" and "suspended" in rec.reason and rec.gates[0]["gate"] == "schedule"


def test_the_steady_state_is_checked_ahead_so_the_run_starts_on_time(tmp_path: Path) -> None:
    r = Rig(tmp_path, lead_s=10)
    r.svc.tick()
    r.at(-5)
    assert r.driver.steady_calls == 1 and r.driver.started == []
    r.at(0.2)
    assert r.driver.steady_calls == 1  # not again at its time
    [(_, gates, _)] = r.driver.started
    assert "checked 5.2s before the run" in gates[4].detail


# -- stop conditions ------------------------------------------------------------------------------------------


def test_stop_conditions_allow_only_the_expected_alerts_on_touched_hosts() -> None:
    sig = FakeSignals()
    stop = StopConditions(sig, {"ChainStalled", "DelegatePausedUnexpectedly"}, {"d0", "d1"})
    sig.alerts = [Alert("ChainStalled", "", "critical"), Alert("DelegatePausedUnexpectedly", "d1", "warning"),
                  Alert("Watchdog", "", "info")]  # fmt: skip
    assert stop() is None
    sig.alerts.append(Alert("DelegatePausedUnexpectedly", "d3", "warning"))  # expected name, a host it does not touch
    assert stop() == "unexpected alert: DelegatePausedUnexpectedly on d3"
    sig.alerts.pop()
    sig.incidents = [Alert("DelegateDown", "d1", "error", "alertd")]  # another alert name, an incident
    assert stop() == "unexpected alert: DelegateDown on d1 (alertd)"


def test_stop_conditions_fail_closed_when_the_signals_cannot_be_read() -> None:
    sig = FakeSignals()
    sig.alerts_error = OSError("connection refused")
    stop = StopConditions(sig, set(), {"d0"})
    assert stop() is None and stop() is None  # a blip is tolerated
    why = stop()
    assert why is not None and "cannot be evaluated (3 times in a row): connection refused" in why


def test_a_stop_condition_reaches_the_run(rig: Rig) -> None:
    seen: list[str | None] = []

    def during(stop: Callable[[], str | None]) -> Result:
        seen.append(stop())
        rig.signals.alerts.append(Alert("DelegateDown", "d1", "error"))
        seen.append(stop())
        return Result.FAILED

    rig.driver.during = during
    rig.at(0.5)
    assert seen == [None, "unexpected alert: DelegateDown on d1"]
    assert rig.db.run(RUN).result == "failed"  # type: ignore[union-attr]


def test_with_stop_adds_a_continuous_check_polled_every_second() -> None:
    rb = Runbook(name="x", summary="s", steps=(Step("a", lambda c: None, "a"),), continuous_interval=2.0)
    why: list[str | None] = [None]
    got = with_stop(rb, lambda: why[0])
    assert got.continuous_interval == 1.0 and [c.description for c in got.continuous] == [STOP_CHECK]
    assert got.continuous[0].probe(None).ok  # type: ignore[arg-type]
    why[0] = "unexpected alert: DelegateDown on d1"
    res = got.continuous[0].probe(None)  # type: ignore[arg-type]
    assert not res.ok and res.detail == "unexpected alert: DelegateDown on d1"


# -- restart safety -------------------------------------------------------------------------------------------


def test_a_run_interrupted_by_a_restart_is_resumed_not_started_again(rig: Rig) -> None:
    def die(stop: Callable[[], str | None]) -> Result:
        raise KeyboardInterrupt  # the service dies mid-drill (kill -9): the journal has no end

    rig.driver.during = die
    with pytest.raises(KeyboardInterrupt):
        rig.at(0.5)
    assert rig.db.run(RUN).status == "running"  # type: ignore[union-attr]
    assert rig.driver.journal(RUN) == ("unfinished", None)
    rig.driver.during = None
    rig.svc = rig.new()  # restarted
    rig.svc.start()
    rig.at(20)
    assert rig.driver.resumed == [RUN]
    assert [s[0] for s in rig.driver.started] == [RUN]  # started once, before the restart
    assert rig.db.run(RUN).status == "ended"  # type: ignore[union-attr]
    rig.at(40)
    assert rig.driver.resumed == [RUN]


def test_at_start_the_service_expires_what_dead_runs_left_and_survives_an_alertmanager_down(tmp_path: Path) -> None:
    r = Rig(tmp_path)
    r.svc.start()
    assert r.driver.expired_calls == 1 and any("expired 1 silence(s) left by dead drill runs: s-dead" in s for s in r.said)
    r.driver.expire_error = OSError("connection refused")
    r.svc = r.new()
    r.svc.start()  # logged, not fatal: each drill's own window fails closed
    assert r.driver.expired_calls == 2 and any("could not expire" in s and "connection refused" in s for s in r.said)


def test_a_claimed_run_that_never_began_is_gated_again_and_started_once(rig: Rig) -> None:
    rig.db.claim(RUN, "fa", "first-aid", T0 + 60, T0 + 60)
    rig.db.set_cursor("fa", T0 + 60)
    rig.db.set_run(RUN, T0 + 60, status="running")  # handed to the engine; died before run_start
    rig.svc = rig.new()
    rig.svc.start()
    assert rig.db.run(RUN).status == "due"  # type: ignore[union-attr]
    rig.at(10)
    assert [s[0] for s in rig.driver.started] == [RUN] and rig.driver.resumed == []


def test_a_run_that_ended_while_the_service_was_down_is_only_noted(rig: Rig) -> None:
    rig.db.claim(RUN, "fa", "first-aid", T0 + 60, T0 + 60)
    rig.db.set_cursor("fa", T0 + 60)
    rig.db.set_run(RUN, T0 + 60, status="running")
    rig.driver.journals[RUN] = ("ended", Result.PASSED)
    rig.svc = rig.new()
    rig.svc.start()
    rig.at(10)
    assert rig.driver.started == [] and rig.driver.resumed == []
    assert rig.db.run(RUN).result == "passed"  # type: ignore[union-attr]


def test_the_maintenance_window_expiry_has_its_call_site_at_start(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(rig.svc, "_expire_dead_windows", lambda: calls.append("expire"))
    rig.svc.start()
    assert calls == ["expire"]


# -- the command line -----------------------------------------------------------------------------------------


def test_schedule_approve_records_who_and_scheduler_status_shows_it(tmp_path: Path) -> None:
    from tests.ops.test_schedule_cli import write_inventory

    inv = write_inventory(tmp_path, {"schedules": [{"name": "fa", "drill": "first-aid", "cron": "0 4 * * *",
                                                    "timezone": "UTC", "approval": True}]})  # fmt: skip
    state = tmp_path / "state"
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).replace(hour=4, minute=0, second=0, microsecond=0)
    rid = f"{tomorrow:%Y%m%dT%H%M%SZ}-fa"
    res = CliRunner().invoke(main, ["schedule", "approve", rid, "-i", str(inv), "--state-dir", str(state), "--by", "carol",
                                    "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert '"by": "carol"' in res.output
    bad = CliRunner().invoke(main, ["schedule", "approve", "20261208T043000Z-fa", "-i", str(inv), "--state-dir", str(state)])
    assert bad.exit_code == 2 and bad.output.startswith("error: ") and "Traceback" not in bad.output
    st = CliRunner().invoke(main, ["scheduler", "status", "-i", str(inv), "--state-dir", str(state), "--json"])
    assert st.exit_code == 0, st.output
    nxt = CliRunner().invoke(main, ["schedule", "next", "-i", str(inv), "--days", "2", "--json"])
    assert nxt.exit_code == 0 and f'"run_id": "{rid}"' in nxt.output, nxt.output  # what `approve` takes


# -- through the real engine ----------------------------------------------------------------------------------


def test_the_engine_journals_the_gates_after_run_start_and_the_checked_steady_state_once(tmp_path: Path) -> None:
    from iotex_ops import network as network_mod
    from iotex_ops.runbook.model import Check, CheckResult
    from tests.ops.test_runbook_engine import Recorder, engine, events, make_inventory, of, run

    probes: list[int] = []

    def finalizing(ctx: Any) -> CheckResult:
        probes.append(1)
        return CheckResult(True, 7, "")

    rec = Recorder()
    rb = Runbook(name="gated", summary="s", steady_state=(Check("finalizing", finalizing, timeout=1),),
                 steps=(Step("a", rec("a"), "a"),))  # fmt: skip
    inv, eng = make_inventory(tmp_path), engine(tmp_path / "state")
    with network_mod.load(inv) as net:
        ss = eng.check_steady_state(rb, net, {})
    assert ss.ok and ss.phase == "before" and probes == [1]
    gates = (Gate(gate="schedule", ok=True, detail="enabled"), Gate(gate="lock", ok=True, detail="free"))
    res = run(eng, rb, inv, {}, run_id=RUN, preamble=gates, steady_state=ss)
    assert res.result == "passed" and probes == [1, 1]  # before: not checked again (once more: after)
    evs = events(res.run_dir)
    assert [e["event"] for e in evs[:4]] == ["run_start", "gate", "gate", "steady_state"]
    assert [(g["gate"], g["ok"]) for g in of(evs, "gate")] == [("schedule", True), ("lock", True)]
    assert [e["phase"] for e in of(evs, "steady_state")] == ["before", "after"]
    from iotex_ops.runbook.store import RunStore

    assert [g.gate for g in RunStore(tmp_path / "state").state(RUN).gates] == ["schedule", "lock"]


def test_a_stop_condition_aborts_a_real_engine_run_and_rolls_it_back(tmp_path: Path) -> None:
    from tests.ops.test_runbook_engine import Recorder, _join, engine, events, make_inventory, of, run

    rec = Recorder()
    release = threading.Event()

    def long(ctx: Any) -> None:
        rec.calls.append("long")
        release.wait(30)

    def stop() -> str | None:
        return "unexpected alert: DelegateDown on d3" if "long" in rec.calls else None

    rb = Runbook(name="stoppable", summary="s", steps=(
        Step("first", rec("first"), "first", rollback=rec("undo-first"), retry_delay=0.01),
        Step("long", long, "takes long", timeout=60, rollback=rec("undo-long"), retry_delay=0.01),
    ))  # fmt: skip
    try:
        res = run(engine(tmp_path / "state"), with_stop(rb, stop, poll_s=0.1), make_inventory(tmp_path), {})
    finally:
        release.set()
        _join("long")
    assert res.result == "failed" and "unexpected alert: DelegateDown on d3" in (res.error or "")
    assert rec.calls == ["first", "long", "undo-long", "undo-first"]
    [lost] = of(events(res.run_dir), "continuous_failed")
    assert lost["check"] == STOP_CHECK and lost["detail"] == "unexpected alert: DelegateDown on d3"
