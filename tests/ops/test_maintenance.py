"""Drill maintenance windows through the engine, with FakeAlertmanager and FakePages (no socket, no process):
silences scoped to the drill's expected alerts on its hosts (never a match-all), their ids journaled, expired
at the end whatever the outcome and before a resume reopens them, dead runs' silences expired, failing closed
when Alertmanager cannot be reached, remediations opening none, change events at start and end, time to detect
in the measures, and no routing key in journals, reports or reprs."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from iotex_ops import network as network_mod
from iotex_ops.alerting import rules
from iotex_ops.alerting.silences import Matcher, SilenceError, Silences, scope_problem, scoped
from iotex_ops.runbook import Engine, Runbook, RunContext, Step
from iotex_ops.runbook import maintenance as mw
from iotex_ops.runbook.events import MaintenanceClose, MaintenanceOpen
from iotex_ops.runbook.maintenance import MaintenanceError
from iotex_ops.runbook.state import fold
from iotex_ops.runbook.store import RunStore
from iotex_ops.schedule import history
from iotex_ops.schedule import maintenance as edge
from iotex_ops.testing import FakeAlertmanager, FakePages
from tests.ops.test_runbook_engine import NETWORK, Recorder, events, make_inventory, of

ALERTS = ("DelegateDown", "ChainStalled", "DelegateLagging")


def drill(rec: Recorder, fail: bool = False, rollback_fails: bool = False, interrupt: bool = False, **kw: Any) -> Runbook:
    def act(ctx: RunContext) -> None:
        rec("act")(ctx)
        if interrupt:
            raise KeyboardInterrupt
        if fail:
            raise RuntimeError("the drill broke")

    def undo(ctx: RunContext) -> None:
        rec("undo")(ctx)
        if rollback_fails:
            raise RuntimeError("the rollback broke")

    return Runbook(
        name=kw.pop("name", "test-drill"),
        summary="a drill that causes alerts on purpose",
        steps=(
            Step(
                "first",
                rec("first"),
                "touch every delegate",
                hosts="delegates",
                serial=False,
                timeout=5,
                rollback=undo,
                retry_delay=0.05,
            ),
            Step("act", act, "the fault", timeout=5),
        ),
        expected_alerts=kw.pop("expected_alerts", ALERTS),
        **kw,
    )


class Series:
    """Prometheus' answers for the window: ALERTS over a range, and ALERTS now (a list of answers in turn)."""

    def __init__(self, firing: dict[str, float] | None = None, now: list[list[dict[str, Any]]] | None = None) -> None:
        self.firing = firing or {}
        self.now = now or []
        self.ranges: list[tuple[str, float, float]] = []

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        self.ranges.append((promql, start, end))
        out = []
        for name, after in self.firing.items():
            host = {} if name in mw.NETWORK_ALERTS else {"host": "d2"}
            t = start + after
            out.append({"metric": {"alertname": name, "alertstate": "firing", **host}, "values": [[t, "1"], [t + 1, "1"]]})
        out.append({"metric": {"alertname": "DelegateDown", "host": "elsewhere"}, "values": [[start, "1"]]})
        return out

    def query(self, promql: str) -> list[dict[str, Any]]:
        return self.now.pop(0) if self.now else []


class Rig:
    def __init__(self, tmp: Path) -> None:
        self.inv = make_inventory(tmp)
        self.state = tmp / "state"
        self.am = FakeAlertmanager()
        self.pages = FakePages()
        self.series = Series({"DelegateDown": 2.5, "ChainStalled": 4.0})

    def window(self, am: Any = None) -> edge.MaintenanceWindow:
        return edge.MaintenanceWindow(
            Silences(am or self.am), "http://am.test:9093", announcer=self.pages, query_range=self.series.query_range,
            query=self.series.query, poll_s=0.01, clock=lambda: self.am.now,
        )  # fmt: skip

    def engine(self, **kw: Any) -> Engine:
        kw.setdefault("maintenance", self.window())
        return Engine(RunStore(self.state), yes=True, report=kw.pop("report", False), action_grace_s=0.2, settle_s=1, **kw)

    def run(self, rb: Runbook, given: dict[str, Any] | None = None, **kw: Any) -> Any:
        run_id = kw.pop("run_id", None)
        with network_mod.load(self.inv) as net:
            return self.engine(**kw).run(rb, net, given or {}, run_id=run_id)

    def active(self) -> list[dict[str, Any]]:
        return [s for s in self.am.silences.values() if self.am._state(s) != "expired"]


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


# -- the pure decisions --------------------------------------------------------------------------------------


def test_network_wide_alerts_are_the_rules_without_a_host_label() -> None:
    from iotex_ops.alerting.settings import Settings

    specs = rules.alert_specs(Settings.from_vars({}, delegates=4))
    assert {s.name for s in specs if s.scope == rules.NETWORK} == mw.NETWORK_ALERTS


def test_scope_splits_per_host_and_network_alerts_and_a_host_runbook_touches_one_host() -> None:
    rb = drill(Recorder())
    s = mw.scope(rb, ["d1", "d2", "d3"], {})
    assert s.host_alerts == ("DelegateDown", "DelegateLagging") and s.network_alerts == ("ChainStalled",)
    assert s.hosts == ("d1", "d2", "d3")
    one = drill(Recorder(), lock_host_param="host")
    assert mw.scope(one, ["d1", "d2", "d3"], {"host": "d2"}).hosts == ("d2",)


def test_a_comment_names_its_run_and_network_and_dead_runs_are_picked_by_it() -> None:
    assert mw.run_of(mw.comment("r-1", "lab")) == ("r-1", "lab")
    assert mw.run_of("iotex-ops drill run r-2 (alerts the drill causes on purpose)") == ("r-2", None)
    assert mw.run_of("a person's silence") is None
    sil = [("a", mw.comment("dead", "lab")), ("b", mw.comment("live", "lab")), ("c", mw.comment("dead", "other")),
           ("d", "a person's silence")]  # fmt: skip
    assert mw.dead_silences(sil, "lab", {"live"}) == ["a"]


def test_first_firing_is_measured_from_the_fault_and_ignores_earlier_and_zero_samples() -> None:
    series = [
        {"metric": {"alertname": "DelegateDown"}, "values": [[95, "1"], [100, "0"], [103, "1"], [104, "1"]]},
        {"metric": {"alertname": "DelegateDown", "host": "d2"}, "values": [[102, "1"]]},
        {"metric": {"alertname": "ChainStalled"}, "values": [[110.5, "1"]]},
        {"metric": {}, "values": [[101, "1"]]},
    ]
    assert mw.first_firing(series, since=100) == {"ChainStalled": 10.5, "DelegateDown": 2.0}


def test_the_run_timeout_bounds_every_attempt_host_and_rollback() -> None:
    rb = drill(Recorder())
    # parallel per-host step: 5 s once (+0.05 s retry delay), its rollback 2x5; the step run once: 5 + 2 s delay
    assert mw.run_timeout_s(rb, 3) == pytest.approx(5.05 + 10 + 7)


# -- through the engine ----------------------------------------------------------------------------------------


def test_a_drill_silences_exactly_its_expected_alerts_on_its_hosts_and_journals_the_ids(rig: Rig) -> None:
    seen: dict[str, Any] = {}
    rec = Recorder()

    def look(ctx: RunContext) -> None:  # during the run: the silences are there
        seen["active"] = [dict(s) for s in rig.active()]

    rb = drill(rec)
    rb = Runbook(**{**rb.__dict__, "steps": (*rb.steps, Step("look", look, "look at Alertmanager"))})
    res = rig.run(rb, run_id="r-scope")
    assert res.result == "passed", res.error
    active = seen["active"]
    assert len(active) == 2
    for s in active:
        ms = [Matcher.from_doc(m) for m in s["matchers"]]
        assert scope_problem(ms) is None  # never a match-all
        assert s["createdBy"] == "iotex-ops" and "r-scope" in s["comment"].split() and NETWORK in s["comment"]
    by_name = {next(m["value"] for m in s["matchers"] if m["name"] == "alertname"): s for s in active}
    host_one = by_name["DelegateDown|DelegateLagging"]
    assert {m["name"]: m["value"] for m in host_one["matchers"]}["host"] == "d1|d2|d3"
    assert [m["name"] for m in by_name["ChainStalled"]["matchers"]] == ["alertname"]  # network-wide: no host
    evs = events(res.run_dir)
    [opened] = of(evs, "maintenance_open")
    assert sorted(opened["silences"]) == sorted(s["id"] for s in active)
    assert opened["alertmanager"] == "http://am.test:9093" and opened["announced"] is True
    kinds = [e["event"] for e in evs]
    assert kinds.index("maintenance_open") < kinds.index("step_start")  # before the first step
    assert kinds.index("run_start") < kinds.index("maintenance_open")
    # ends at the run's timeout plus the grace
    start = rig.am.now
    ends = edge._iso(start + timedelta(seconds=mw.run_timeout_s(rb, 3) + mw.GRACE_S))
    assert all(abs(_t(s["endsAt"]) - _t(ends)) < 5 for s in active)


def _t(text: str) -> float:
    from iotex_ops.testing import _parse_time

    return _parse_time(text).timestamp()


@pytest.mark.parametrize("outcome", ["passed", "failed", "rollback_failed", "aborted"])
def test_silences_are_expired_at_the_end_whatever_the_outcome(rig: Rig, outcome: str) -> None:
    rb = drill(Recorder(), fail=outcome in ("failed", "rollback_failed"), rollback_fails=outcome == "rollback_failed",
               interrupt=outcome == "aborted")  # fmt: skip
    if outcome == "aborted":
        with pytest.raises(KeyboardInterrupt):
            rig.run(rb, run_id="r-out")
        run_dir = rig.state / "runs" / "r-out"
    else:
        res = rig.run(rb, run_id="r-out")
        assert res.result == outcome
        run_dir = res.run_dir
    assert len(rig.am.silences) == 2 and rig.active() == []
    evs = events(run_dir)
    [opened], [closed] = of(evs, "maintenance_open"), of(evs, "maintenance_close")
    assert sorted(closed["silences"]) == sorted(opened["silences"])
    assert closed["reason"] == ("end" if outcome != "aborted" else closed["reason"])
    if outcome == "aborted":
        assert closed["reason"].startswith("aborted")
        assert not of(evs, "run_end")  # still resumable
    else:
        kinds = [e["event"] for e in evs]
        assert kinds.index("maintenance_close") < kinds.index("run_end")
    assert fold(_typed(run_dir)).open_silences == []


def _typed(run_dir: Path) -> list[Any]:
    from iotex_ops.runbook import events as events_mod

    return events_mod.load(run_dir / "journal.jsonl")


def test_a_resume_expires_the_silences_the_interrupted_run_left_and_reopens(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    from iotex_ops.runbook import engine as engine_mod

    # a crash (kill -9) expires nothing: the run's journal names silences that are still active
    monkeypatch.setattr(engine_mod._Maintenance, "close", lambda self, reason: None)
    with pytest.raises(KeyboardInterrupt):
        rig.run(drill(Recorder(), interrupt=True), run_id="r-crash")
    left = fold(_typed(rig.state / "runs" / "r-crash")).open_silences
    assert len(left) == 2 and len(rig.active()) == 2
    monkeypatch.undo()
    rig.am.advance(5)
    res = rig.engine().resume("r-crash", lambda name: drill(Recorder()))
    assert res.result == "passed", res.error
    assert rig.active() == []
    evs = events(res.run_dir)
    closes = of(evs, "maintenance_close")
    assert closes[0]["reason"] == "resume" and sorted(closes[0]["silences"]) == sorted(left)
    opens = of(evs, "maintenance_open")
    assert len(opens) == 2 and not set(opens[1]["silences"]) & set(left)  # reopened: new silences
    assert opens[1]["seq"] < closes[0]["seq"]  # made before the old ones were expired: never a moment without
    assert closes[-1]["reason"] == "end" and sorted(closes[-1]["silences"]) == sorted(opens[1]["silences"])
    assert fold(_typed(res.run_dir)).open_silences == []


def test_dead_runs_silences_are_expired_and_live_or_foreign_ones_kept(rig: Rig, tmp_path: Path) -> None:
    sil = Silences(rig.am)
    now = rig.am.now
    end = now + timedelta(hours=1)
    made = {}
    for run_id, net in (("dead-1", NETWORK), ("live-1", NETWORK), ("ended-1", NETWORK), ("other-1", "othernet")):
        made[run_id] = sil.create(scoped(["DelegateDown"], ["d1"]), starts=now, ends=end, comment=mw.comment(run_id, net))
    made["person"] = sil.create(scoped(["DelegateDown"], ["d1"]), starts=now, ends=end, comment="a person's silence")
    rig.am.silences[made["person"]]["createdBy"] = "alice"
    locks = rig.state / "locks"
    locks.mkdir(parents=True)
    me = {"pid": os.getpid(), "machine": socket.gethostname()}
    (locks / f"{NETWORK}.lock").write_text(json.dumps({"run_id": "live-1", **me}))
    (locks / f"{NETWORK}.host.d1.lock").write_text(json.dumps({"run_id": "dead-1", "pid": 2**22 + 7, "machine": me["machine"]}))
    store = RunStore(rig.state)
    # a run the store says ended, though its lock file still names a live pid (its holder is this test)
    (locks / f"{NETWORK}.host.d2.lock").write_text(json.dumps({"run_id": "ended-1", **me}))
    j = store.create("ended-1")
    from iotex_ops.runbook.events import Result, RunEnd, RunStart

    j.append(RunStart(run_id="ended-1", runbook="test-drill"))
    j.append(RunEnd(result=Result.PASSED))
    j.close()
    assert edge.live_runs(locks, NETWORK) == {"live-1", "ended-1"}
    with network_mod.load(rig.inv) as net:
        expired = edge.expire_dead_runs(net, store, silences=sil)
    assert sorted(expired) == sorted([made["dead-1"], made["ended-1"]])
    states = {k: rig.am._state(rig.am.silences[v]) for k, v in made.items()}
    assert states == {"dead-1": "expired", "live-1": "active", "ended-1": "expired", "other-1": "active", "person": "active"}


def test_an_unreachable_alertmanager_fails_closed_naming_it_unless_no_maintenance(rig: Rig) -> None:
    def down(method: str, path: str, body: Any) -> Any:
        raise SilenceError(f"Alertmanager at http://am.test:9093: {method} {path}: [Errno 111] Connection refused")

    rec = Recorder()
    with pytest.raises(MaintenanceError) as err:
        rig.run(drill(rec), maintenance=rig.window(down), run_id="r-down")
    msg = str(err.value)
    assert "http://am.test:9093" in msg and "--no-maintenance" in msg and "\n" not in msg
    assert rec.calls == [] and not (rig.state / "runs" / "r-down").exists()  # nothing touched, no run
    res = rig.run(drill(rec), maintenance="off", run_id="r-off")
    assert res.result == "passed"
    [opened] = of(events(res.run_dir), "maintenance_open")
    assert opened["silences"] == [] and "--no-maintenance" in opened["note"]


def test_a_silence_refused_after_the_start_fails_the_run_before_any_step(rig: Rig) -> None:
    class Refusing(FakeAlertmanager):
        def __call__(self, method: str, path: str, body: Any) -> Any:
            if method == "POST":
                raise SilenceError("Alertmanager at http://am.test:9093: POST /api/v2/silences: HTTP 500: boom")
            return super().__call__(method, path, body)

    rec = Recorder()
    res = rig.run(drill(rec), maintenance=rig.window(Refusing()), run_id="r-refused")
    assert res.result == "failed" and "HTTP 500" in (res.error or "") and rec.calls == []
    assert [e["event"] for e in events(res.run_dir)] == ["run_start", "run_end"]


def test_a_runbook_without_expected_alerts_and_remediations_open_no_window(rig: Rig, tmp_path: Path) -> None:
    res = rig.run(drill(Recorder(), expected_alerts=()), run_id="r-plain")
    assert res.result == "passed" and rig.am.calls == [] and rig.pages.events == []
    assert not of(events(res.run_dir), "maintenance_open")
    from iotex_ops.remediation.runner import EngineRunner

    runner = EngineRunner(rig.inv, tmp_path / "alertd")
    assert runner._engine(lambda step: None).maintenance is None
    # even for a runbook that expects alerts, a remediation's engine silences nothing
    with network_mod.load(rig.inv) as net:
        res = runner._engine(lambda step: None).run(drill(Recorder()), net, {}, run_id="rem-1")
    assert res.result == "passed" and rig.am.calls == [] and not of(events(res.run_dir), "maintenance_open")


def test_change_events_at_start_and_end_carry_the_run_drill_hosts_silences_and_report(rig: Rig) -> None:
    res = rig.run(drill(Recorder()), run_id="r-change", report=True)
    start, end = rig.pages.changes()
    ids = of(events(res.run_dir), "maintenance_open")[0]["silences"]
    for ev in (start, end):
        d = ev["details"]
        assert d["run_id"] == "r-change" and d["drill"] == "test-drill" and d["hosts"] == ["d1", "d2", "d3"]
        assert d["silences"] == ids and d["network"] == NETWORK
    assert "started" in start["summary"] and "result" not in start["details"]
    assert end["details"]["result"] == "passed" and "passed" in end["summary"]
    assert res.report_html is not None and end["links"] == [{"href": res.report_html.resolve().as_uri(), "text": "drill report"}]


def test_time_to_detect_is_measured_per_expected_alert_and_the_scorecard_reads_it(rig: Rig) -> None:
    res = rig.run(drill(Recorder()), run_id="r-detect")
    assert res.measures["time_to_detect_s"] == {"ChainStalled": 4.0, "DelegateDown": 2.5}
    promql, start, _ = rig.series.ranges[0]
    assert 'alertstate="firing"' in promql and "DelegateLagging" in promql
    state = fold(_typed(res.run_dir))
    assert start == min(r.started for r in state.steps.values() if r.started is not None)  # from the fault
    store = RunStore(rig.state)
    figures = history.figures(store.summary("r-detect"), state)
    assert figures["time_to_detect_s"] == 4.0  # the worst of the drill's alerts
    card = history.scorecard("test-drill", history.history(store, "test-drill"), now=state.ended_at or 0)
    assert card.detect["DelegateDown"].worst == 2.5 and card.stats["time_to_detect_s"].worst == 4.0
    assert card.as_dict()["time_to_detect_by_alert"]["ChainStalled"] == {"median": 4.0, "worst": 4.0, "runs": 1}


def test_silences_are_expired_only_once_the_expected_alerts_stopped(rig: Rig) -> None:
    firing = [{"metric": {"alertname": "DelegateDown", "host": "d2", "alertstate": "firing"}}]
    foreign = [{"metric": {"alertname": "DelegateDown", "host": "elsewhere"}}]
    rig.series.now = [firing, firing, foreign]
    res = rig.run(drill(Recorder()), run_id="r-settle")
    assert res.result == "passed" and rig.series.now == [] and rig.active() == []


def test_no_routing_key_in_journals_reports_or_reprs(rig: Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "R0UT1NG-KEY-" + "x" * 20
    key_file = tmp_path / "routing_key"
    key_file.write_text(secret)
    key_file.chmod(0o600)
    gv = rig.inv / "group_vars" / "delegates.yml"
    gv.write_text(gv.read_text() + "iotex_alertmanager_url: http://am.test:9093\n"
                  f"monitoring_pagerduty_routing_key_file: {key_file}\n"
                  "monitoring_pagerduty_url: https://pd.test/v2/enqueue\n")  # fmt: skip
    sent: list[Mapping[str, Any]] = []
    monkeypatch.setattr(edge.PagerAnnouncer, "change", lambda self, event: sent.append(event))
    with network_mod.load(rig.inv) as net:
        window = edge.from_network(net, RunStore(rig.state), transport=rig.am)
        assert window is not None and isinstance(window.announcer, edge.PagerAnnouncer)
        window.query_range = window.query = None
        assert secret not in repr(window) and secret not in repr(window.announcer)
        res = Engine(RunStore(rig.state), yes=True, maintenance=window).run(drill(Recorder()), net, {}, run_id="r-secret")
    assert res.result == "passed" and len(sent) == 2
    assert secret not in json.dumps(sent)
    for f in res.run_dir.rglob("*"):
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f


def test_the_inventory_names_the_alertmanager_or_there_is_no_window(rig: Rig) -> None:
    with network_mod.load(rig.inv) as net:
        assert edge.alertmanager_url(net) is None and edge.from_network(net) is None
    gv = rig.inv / "group_vars" / "delegates.yml"
    gv.write_text(gv.read_text() + "monitoring_alertmanager: 127.0.0.1:9093\n")
    with network_mod.load(rig.inv) as net:
        assert edge.alertmanager_url(net) == "http://127.0.0.1:9093"


def test_the_journal_events_round_trip_and_fold() -> None:
    from iotex_ops.runbook import events as events_mod

    o = MaintenanceOpen(seq=2, ts=1.0, silences=("a", "b"), alerts=("X",), hosts=("d1",), alertmanager="u", announced=True)
    c = MaintenanceClose(seq=3, ts=2.0, silences=("a",), reason="end")
    for ev in (o, c):
        assert events_mod.from_doc(events_mod.to_doc(ev)) == ev
    assert fold([o, c]).open_silences == ["b"]


CLI_DRILL = """
from iotex_ops.runbook import Runbook, Step

RUNBOOK = Runbook(
    name="cli-drill",
    summary="a drill for the command line",
    steps=(Step("touch", lambda ctx: None, "touch nothing"),),
    expected_alerts=("DelegateDown",),
)
"""


def test_the_command_line_fails_closed_in_one_line_and_no_maintenance_runs_anyway(
    rig: Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from iotex_ops.cli import main

    books = tmp_path / "books"
    books.mkdir()
    (books / "cli_drill.py").write_text(CLI_DRILL)
    gv = rig.inv / "group_vars" / "delegates.yml"
    gv.write_text(gv.read_text() + "iotex_alertmanager_url: http://am.test:9093\n")

    def down(method: str, path: str, body: Any) -> Any:
        raise SilenceError(f"Alertmanager at http://am.test:9093: {method} {path}: [Errno 111] Connection refused")

    real = edge.from_network
    monkeypatch.setattr(edge, "from_network", lambda net, store=None: real(net, store, transport=down))
    monkeypatch.setenv("IOTEX_OPS_STATE_DIR", str(rig.state))
    args = ["runbook", "run", "cli-drill", "-i", str(rig.inv), "--yes", "--runbooks", str(books)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("error: maintenance window: Alertmanager at http://am.test:9093") and res.stderr.count("\n") == 1
    assert "Traceback" not in res.output
    res = CliRunner().invoke(main, [*args, "--no-maintenance"])
    assert res.exit_code == 0, res.output
    assert "not silenced and will page" in res.stdout
