"""Typed run events, the fold that turns them into a run's state, and the run store that answers history queries.

Most cases read journals written by the engine before its events were typed (journals_fixture/): they must
parse, fold, report, print and resume as they did."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from iotex_ops import network as network_mod
from iotex_ops.cli.runbook import EventPrinter
from iotex_ops.runbook import RunbookError, report
from iotex_ops.runbook import events as ev_mod
from iotex_ops.runbook import journal as journal_mod
from iotex_ops.runbook.engine import Engine
from iotex_ops.runbook.events import (
    Approval,
    CheckRow,
    ContinuousFailed,
    Event,
    Gate,
    MaintenanceClose,
    MaintenanceOpen,
    Mark,
    Measures,
    Memo,
    Phase,
    Result,
    Resumed,
    RollbackEnd,
    RollbackStart,
    RollbackStop,
    RunEnd,
    RunFailing,
    RunStart,
    StaleLock,
    SteadyState,
    StepDone,
    StepEnd,
    StepSkip,
    StepStart,
    Unknown,
    Verify,
)
from iotex_ops.runbook.state import RunState, fold
from iotex_ops.runbook.store import RunDir, RunStore
from tests.ops.test_runbook_engine import find_fixture, make_inventory

JOURNALS = Path(__file__).resolve().parent / "journals_fixture"
NAMES = ("passed", "rolled-back", "no-return", "crashed", "crashed-then-resumed", "crashed-in-rollback")


def old(name: str) -> list[Event]:
    return ev_mod.load(JOURNALS / f"{name}.jsonl")


# -- the events ----------------------------------------------------------------------------------------------

EVERY_KIND: list[Event] = [
    RunStart(
        run_id="r",
        runbook="b",
        user="u",
        machine="m",
        pid=1,
        argv=("iotex-ops",),
        inventory="/inv",
        network="n",
        params={"p": 1},
        delegates=("d1", "d2"),
        prometheus="http://p",
    ),
    StaleLock(previous={"run_id": "old", "pid": 9}),
    Resumed(user="u", pid=2, done_steps=("a",), done_hosts={"b": ("d1",)}, rollback_phase=False),
    SteadyState(phase="before", ok=True, checks=(CheckRow("grows", True, 5, ""),)),
    Approval(step="a", approved=True, by="u", how="--yes"),
    Phase(step="a", label="A", hosts=("d1",)),
    StepStart(step="a", host="d1", attempt=1),
    Verify(step="a", host="d1", check="c", ok=False, value=[1, 2], detail="no"),
    StepEnd(step="a", host="d1", ok=False, attempt=1, duration_s=1.5, output_tail=("x",), error="boom"),
    StepDone(step="a", ok=True, duration_s=2.0),
    StepSkip(step="b", reason="its condition is false"),
    StepSkip(step="a", host="d2", reason="completed before the resume"),
    Memo(step="a", key="k", value={"v": 1}),
    Mark(step="a", name="chain_halted", values={"height": 4}),
    ContinuousFailed(check="grows", value=4, detail="stalled"),
    RunFailing(step="a", host="d1", error="boom", started_steps=("a",)),
    RollbackStart(step="a", host="d1", what="undo"),
    RollbackEnd(step="a", host="d1", ok=True, duration_s=0.5, output_tail=(), error=None),
    RollbackStop(step="a", reason="point of no return"),
    MaintenanceOpen(
        silences=("s1", "s2"),
        alerts=("ChainStalled",),
        hosts=("d1",),
        alertmanager="http://am",
        ends_at="2026-12-01T12:00:00.000Z",
        announced=True,
    ),
    MaintenanceClose(silences=("s1",), reason="end"),
    Measures(values={"downtime_s": 1.0}),
    RunEnd(result=Result.FAILED, error="boom", duration_s=9.0, measures={"downtime_s": 1.0}),
    Gate(gate="alerts", ok=True, detail="none firing"),  # (a scheduled run's come after run_start; here last)
]


def test_every_kind_round_trips_through_a_journal(tmp_path: Path) -> None:
    assert {type(e) for e in EVERY_KIND} == {*ev_mod.KINDS.values(), StepDone}
    run = RunStore(tmp_path).create("r")
    try:
        written = [run.append(e) for e in EVERY_KIND]
    finally:
        run.close()
    back = ev_mod.load(run.path)
    assert back == written  # what `append` returns is what is on disk
    assert [e.seq for e in back] == list(range(1, len(EVERY_KIND) + 1))
    for e, orig in zip(back, EVERY_KIND, strict=True):
        assert type(e) is type(orig) and e.fields() == orig.fields() and e.ts > 0
    lines = [json.loads(line) for line in run.path.read_text().splitlines()]
    assert lines[9] == {"seq": 10, "ts": lines[9]["ts"], "event": "step_end", "step": "a", "host": None, "ok": True,
                        "duration_s": 2.0}  # fmt: skip
    assert "host" not in lines[10] and lines[11]["host"] == "d2"  # a whole step's skip names no host
    assert lines[13] == {"seq": 14, "ts": lines[13]["ts"], "event": "mark", "step": "a", "name": "chain_halted", "height": 4}


@pytest.mark.parametrize("name", NAMES)
def test_old_journals_parse_and_serialize_to_the_same_lines(name: str) -> None:
    docs = journal_mod.read(JOURNALS / f"{name}.jsonl")
    evs = ev_mod.parse(docs)
    assert not [e for e in evs if isinstance(e, Unknown)]
    for doc, e in zip(docs, evs, strict=True):
        assert json.dumps(ev_mod.to_doc(e)) == json.dumps(doc)  # same keys, same order, same values


def test_unknown_and_malformed_events_are_kept_not_folded_but_a_bad_end_is_refused() -> None:
    docs: list[dict[str, Any]] = [
        {"seq": 1, "ts": 1.0, "event": "run_start", "run_id": "r", "runbook": "b"},
        {"seq": 2, "ts": 2.0, "event": "from_the_future", "x": 1},
        {"seq": 3, "ts": 3.0, "event": "memo"},  # no key
        {"seq": 4, "ts": 4.0, "event": "step_start", "step": "a"},  # an old shape: no host, no attempt
    ]
    evs = ev_mod.parse(docs)
    assert isinstance(evs[1], Unknown) and evs[1].name == "from_the_future" and ev_mod.to_doc(evs[1]) == docs[1]
    assert isinstance(evs[2], Unknown) and ev_mod.to_doc(evs[2]) == docs[2]
    assert evs[3] == StepStart(seq=4, ts=4.0, step="a", host=None, attempt=1)
    state = fold(evs)
    assert state.memory == {} and state.events == 4 and state.last_ts == 4.0 and not state.finished
    with pytest.raises(RunbookError, match="unknown result 'exploded'"):
        ev_mod.from_doc({"seq": 5, "ts": 5.0, "event": "run_end", "result": "exploded"})
    with pytest.raises(RunbookError, match="unknown result 'deferred'"):  # never a run's own end
        ev_mod.from_doc({"seq": 5, "ts": 5.0, "event": "run_end", "result": "deferred"})


def test_result_is_one_enum_with_the_exit_codes() -> None:
    assert [r.exit_code for r in Result] == [0, 1, 3, 2, 2]
    assert Result.ROLLBACK_FAILED == "rollback_failed" and f"{Result.PASSED}" == "passed"
    assert json.dumps({"r": Result.FAILED}) == '{"r": "failed"}'
    from iotex_ops.remediation.service import Outcome

    assert Outcome("deferred").result is Result.DEFERRED  # alertd's outcomes are the same enum


# -- the fold ------------------------------------------------------------------------------------------------


def test_fold_is_pure_and_the_same_one_event_at_a_time() -> None:
    evs = old("rolled-back")
    copy = list(evs)
    a, b = fold(evs), fold(evs)
    assert a == b and a is not b and evs == copy
    live = RunState()
    for e in evs:
        live.apply(e)
    assert live == a
    assert fold([]) == RunState() and fold([]).result is None


def test_fold_of_a_passed_run() -> None:
    s = fold(old("passed"))
    assert s.run_id == "20240101T000000Z-fixture-passed-aaaaaa" and s.runbook == "fixture-passed"
    assert s.result is Result.PASSED and s.finished and s.error is None and not s.rollback_phase
    assert s.start is not None and s.start.params == {"label": "first"} and s.start.delegates == ("d1", "d2", "d3")
    assert s.done_steps == {"once", "per", "par"}
    assert s.done_hosts == {"per": ["d1", "d2"], "par": ["d1", "d2", "d3"]}
    assert sorted(s.started_hosts["par"]) == ["d1", "d2", "d3"] and s.running == {}
    assert [sk.step for sk in s.skipped] == ["never"] and s.skipped[0].reason == "its condition is false"
    assert s.approved == {"par"} and [a.how for a in s.approvals] == ["--yes"]
    assert s.memory == {"height": 41, "d2-failed": True}
    assert [(m.name, dict(m.values)) for m in s.marks] == [("chain_halted", {"height": 41, "hash": "ab"})]
    assert s.measures == {"downtime_s": 1.5, "height": 41}
    assert [p.label for p in s.phases] == ["once", "per", "the parallel bit"]
    assert [st.phase for st in s.steady_state] == ["before", "after"] and all(st.ok for st in s.steady_state)
    # per host: d2 failed once, then passed; its checks are the last attempt's
    d2 = s.steps["per", "d2"]
    assert (d2.attempts, d2.ok, d2.error, len(d2.failed_attempts)) == (2, True, None, 1)
    assert d2.failed_attempts[0].error == "RuntimeError: d2 flaked"
    assert [v.check for v in d2.verifications] == ["counted"]
    assert d2.started is not None and d2.ended is not None and d2.duration_s == round(d2.ended - d2.started, 3)
    once = s.steps["once", None]
    assert once.attempts == 1 and once.ok and once.verifications == [CheckRow("halted", True, 41, "fine")]
    assert s.step_ok("per") is True and s.step_ok("once") is None  # a step that runs once has no separate end
    assert list(s.steps)[:3] == [("once", None), ("per", "d1"), ("per", "d2")]
    # timings
    assert s.started_at is not None and s.ended_at is not None and s.started_at <= s.ended_at
    assert s.end is not None and s.ended_at == s.end.ts and s.duration_s == round(s.ended_at - s.started_at, 3)
    assert [type(m) for m in s.moments] == [Mark]


def test_fold_of_a_rolled_back_run_whose_rollback_failed() -> None:
    s = fold(old("rolled-back"))
    assert s.result is Result.ROLLBACK_FAILED and s.rollback_phase
    assert s.failing is not None and (s.failing.step, s.failing.host) == ("c", None)
    assert s.started_steps == ["a", "b", "c"]
    assert s.error is not None and "ROLLBACK FAILED: b@d1" in s.error
    c = s.steps["c", None]
    assert (c.attempts, c.ok, len(c.failed_attempts)) == (2, False, 2)
    assert "c" not in s.done_steps and s.done_steps == {"a", "b"}
    assert [(r.step, r.host, r.ok, r.what) for r in s.rollbacks.values()] == [
        ("c", None, True, ""),
        ("b", "d3", True, "undo b"),
        ("b", "d2", True, "undo b"),
        ("b", "d1", False, "undo b"),
        ("a", None, True, ""),
    ]
    assert s.rollbacks["b", "d1"].error == "RuntimeError: ssh: connection refused"
    assert s.rolled_back == {"c", "b@d3", "b@d2", "a"}
    assert [st.phase for st in s.steady_state] == ["before", "after_rollback"]
    assert [type(m) for m in s.moments] == [RunFailing, RollbackStart, RollbackEnd]


def test_fold_of_a_run_stopped_at_the_point_of_no_return() -> None:
    s = fold(old("no-return"))
    assert s.result is Result.ROLLBACK_FAILED
    assert [c.check for c in s.continuous_failed] == ["chain grows"] and s.continuous_failed[0].detail == "chain stalled"
    assert s.rollback_stop is not None and s.rollback_stop.step == "schedule"
    assert s.rolled_back == {"wait@d1"} and list(s.rollbacks) == [("wait", "d1")]
    assert [type(m) for m in s.moments] == [ContinuousFailed, RunFailing, RollbackStart]


def test_fold_of_a_crashed_run() -> None:
    s = fold(old("crashed"))
    assert s.result is None and not s.finished and s.end is None and s.error is None and not s.rollback_phase
    assert s.done_steps == {"step1"} and s.done_hosts == {"step2": ["d1"]}
    assert s.started_hosts == {"step2": ["d1", "d2"]}
    assert list(s.running) == [("step2", "d2")]  # what it was doing when it died
    assert s.steps["step2", "d2"].ok is None and s.steps["step2", "d2"].ended is None
    assert s.memory["token"].startswith("from-")
    assert s.ended_at == s.last_ts and s.measures == {}


def test_fold_of_a_crashed_run_after_its_resume() -> None:
    s = fold(old("crashed-then-resumed"))
    assert s.result is Result.PASSED and s.done_steps == {"step1", "step2", "step3", "step4"}
    assert [(r.done_steps, dict(r.done_hosts), r.rollback_phase) for r in s.resumes] == [(("step1",), {"step2": ("d1",)}, False)]
    assert len(s.stale_locks) == 1 and s.stale_locks[0].previous["pid"]
    assert s.steps["step2", "d2"].attempts == 2 and s.steps["step2", "d2"].ok  # died once, then passed
    assert s.running == {}


def test_fold_of_a_run_that_died_in_its_rollback_phase() -> None:
    s = fold(old("crashed-in-rollback"))
    assert s.result is None and s.rollback_phase and s.error == "step c: RuntimeError: c broke"
    assert s.started_steps == ["a", "b", "c"]
    assert s.rolled_back == {"c", "b@d3"}
    assert s.rollbacks["b", "d2"].started is not None and s.rollbacks["b", "d2"].ok is None  # died in it


@pytest.mark.parametrize("name", NAMES)
def test_the_report_of_an_old_journal_is_what_the_old_code_made(name: str) -> None:
    doc = report.summarize(fold(old(name)))
    expected = json.loads((JOURNALS / f"{name}.summary.json").read_text())
    assert json.loads(json.dumps(doc, sort_keys=True, default=str)) == expected


@pytest.mark.parametrize("name", NAMES)
def test_the_cli_prints_an_old_journal_as_it_did(name: str) -> None:
    buf = io.StringIO()
    printer = EventPrinter(Console(file=buf, width=200, color_system=None, highlight=False, soft_wrap=True))
    evs = old(name)
    for e in evs:
        printer(e)
    assert buf.getvalue() == (JOURNALS / f"{name}.printed.txt").read_text()
    assert printer.state == fold(evs)


# -- old journals resume -------------------------------------------------------------------------------------


def _install(name: str, store: RunStore, tmp_path: Path) -> str:
    """An old journal as a run of `store`, its /fixture paths pointing under tmp_path."""
    text = (JOURNALS / f"{name}.jsonl").read_text().replace("/fixture", str(tmp_path))
    run_id = json.loads(text.splitlines()[0])["run_id"]
    run = store.dir(run_id)
    run.path.mkdir(parents=True)
    run.journal.write_text(text)
    return run_id


def test_a_run_crashed_before_typed_events_resumes(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path)
    store = RunStore(tmp_path / "state")
    run_id = _install("crashed", store, tmp_path)
    out = tmp_path / "out.txt"
    out.write_text("step1\nstep2@d1\n")
    (tmp_path / "resume-crash.marker").write_text("crashed once\n")  # it does not crash again
    token = fold(old("crashed")).memory["token"]
    seen: list[Event] = []
    with network_mod.load(inv) as net:
        res = Engine(store, yes=True, report=True, on_event=seen.append).resume(run_id, find_fixture, net)
    assert res.result is Result.PASSED and res.exit_code == 0, res.error
    assert out.read_text().splitlines() == ["step1", "step2@d1", "step2@d2", "step2@d3", "step3", f"step4 token={token}"]
    s = store.state(run_id)
    assert s.result is Result.PASSED and len(s.resumes) == 1 and s.resumes[0].done_steps == ("step1",)
    assert [e.seq for e in store.events(run_id)] == list(range(1, s.events + 1))
    assert seen == store.events(run_id)[len(old("crashed")) :]
    assert res.report_json == store.dir(run_id).report_json and res.report_json.is_file()
    assert json.loads(res.report_json.read_text())["run"]["result"] == "passed"


def test_a_run_that_died_in_its_rollback_before_typed_events_finishes_it(tmp_path: Path) -> None:
    make_inventory(tmp_path)
    store = RunStore(tmp_path / "state")
    run_id = _install("crashed-in-rollback", store, tmp_path)
    (tmp_path / "rollback-crash.marker").write_text("crashed once\n")
    res = Engine(store, yes=True, report=False).resume(run_id, find_fixture)  # the engine opens the run's inventory
    assert res.result is Result.FAILED and res.error == "step c: RuntimeError: c broke"
    assert (tmp_path / "out.txt").read_text().splitlines() == ["rb-b@d2", "rb-b@d1", "rb-a"]  # not c, not b@d3 again
    assert store.state(run_id).rolled_back == {"c", "b@d3", "b@d2", "b@d1", "a"}


def test_resume_on_another_network_is_refused(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path)
    (inv / "group_vars" / "delegates.yml").write_text(
        (inv / "group_vars" / "delegates.yml").read_text().replace("iotex_network: rbtest", "iotex_network: other")
    )
    store = RunStore(tmp_path / "state")
    run_id = _install("crashed", store, tmp_path)
    with network_mod.load(inv) as net, pytest.raises(RunbookError, match="ran on network rbtest, not on other"):
        Engine(store, yes=True, report=False).resume(run_id, find_fixture, net)


# -- the store -----------------------------------------------------------------------------------------------


def _write_run(store: RunStore, run_id: str, runbook: str, t0: float, evs: list[Event]) -> None:
    run = store.dir(run_id)
    run.path.mkdir(parents=True)
    start = RunStart(seq=1, ts=t0, run_id=run_id, runbook=runbook, user="ops", network="n", inventory="/inv")
    lines = [ev_mod.to_doc(start)] + [ev_mod.to_doc(e) for e in evs]
    run.journal.write_text("".join(json.dumps(d) + "\n" for d in lines))


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    s = RunStore(tmp_path / "state")
    _write_run(s, "r1", "drill-a", 1000.0, [RunEnd(seq=2, ts=1100.0, result=Result.PASSED, duration_s=100.0)])
    failed = RunEnd(seq=3, ts=2100.0, result=Result.FAILED, error="x", duration_s=99.0)
    _write_run(s, "r2", "drill-a", 2000.0, [RunFailing(seq=2, ts=2050.0, error="x"), failed])
    _write_run(s, "r3", "drill-b", 3000.0, [RunEnd(seq=2, ts=3050.0, result=Result.ROLLBACK_FAILED, error="y")])
    _write_run(s, "r0-late-name", "drill-b", 4000.0, [StepStart(seq=2, ts=4010.0, step="s")])  # unfinished
    s.dir("r5").path.mkdir()  # a start that died before its first event
    (s.dir("r6").path).mkdir()
    s.dir("r6").journal.write_text('{"seq":1,"ts":1.0,"event":"memo","key":"k","value":1}\n')  # not a run's journal
    return s


def ids(rows: list[Any]) -> list[str]:
    return [r.run_id for r in rows]


def test_run_store_queries(store: RunStore) -> None:
    assert store.ids() == ["r0-late-name", "r1", "r2", "r3", "r6"]
    assert ids(store.runs()) == ["r1", "r2", "r3", "r0-late-name"]  # by start time; r5 and r6 are no runs
    assert ids(store.runs(runbook="drill-a")) == ["r1", "r2"]
    assert ids(store.runs(runbook="nope")) == []
    # going on at some time in [since, until]
    assert ids(store.runs(since=1050, until=2050)) == ["r1", "r2"]
    assert ids(store.runs(since=1101, until=2999)) == ["r2"]
    assert ids(store.runs(since=2101, until=3999)) == ["r3"]
    assert ids(store.runs(since=4005)) == ["r0-late-name"]  # unfinished: last heard of at 4010
    assert ids(store.runs(since=4011)) == []
    assert ids(store.runs(until=999)) == []
    assert ids(store.runs(until=1000)) == ["r1"]
    # by result
    assert ids(store.runs(result=Result.FAILED)) == ["r2"]
    assert ids(store.runs(result="rollback_failed")) == ["r3"]
    assert ids(store.runs(finished=True, runbook="drill-b")) == ["r3"]
    assert ids(store.unfinished()) == ["r0-late-name"] and ids(store.unfinished("drill-a")) == []
    assert ids(store.runs(last=2)) == ["r3", "r0-late-name"]
    with pytest.raises(ValueError):
        store.runs(result="exploded")


def test_run_store_summaries_and_states(store: RunStore) -> None:
    r2 = store.summary("r2")
    assert (r2.runbook, r2.user, r2.network, r2.inventory) == ("drill-a", "ops", "n", "/inv")
    assert (r2.started_at, r2.ended_at, r2.result, r2.error, r2.duration_s) == (2000.0, 2100.0, Result.FAILED, "x", 99.0)
    assert r2.finished and r2.status == "failed" and r2.rollback_phase and r2.dir == RunDir(store.runs_dir / "r2")
    late = store.summary("r0-late-name")
    assert (late.result, late.status, late.ended_at, late.duration_s, late.finished) == (None, "unfinished", 4010.0, 10.0, False)
    assert store.state("r1").result is Result.PASSED
    with pytest.raises(RunbookError, match=r"no run 'r9' under .*; recent: r0-late-name, r1, r2, r3, r6"):
        store.state("r9")
    with pytest.raises(RunbookError, match="does not begin with run_start"):
        store.state("r6")
    with pytest.raises(RunbookError, match="not a run id"):
        store.dir("../r1")


def test_run_store_layout_create_open_and_discard(store: RunStore) -> None:
    run = store.dir("r1")
    assert (run.journal, run.report_json, run.report_html, run.ansible) == (
        store.root / "runs/r1/journal.jsonl", store.root / "runs/r1/report.json", store.root / "runs/r1/report.html",
        store.root / "runs/r1/ansible",
    )  # fmt: skip
    assert store.locks_dir == store.root / "locks"
    with pytest.raises(RunbookError, match="run r1 exists already"):
        store.create("r1")
    assert store.started("r1") and not store.started("r5") and not store.started("r9")
    assert store.exists("r5") and store.discard("r5") and not store.exists("r5")
    assert not store.discard("r1") and store.exists("r1")  # a run that started is never discarded

    new = store.create("r7")
    try:
        new.append(RunStart(run_id="r7", runbook="drill-c"))
        new.append(Memo(step="s", key="k", value=(1, Path("/x"))))  # kept as JSON gives it back
        assert new.state.memory == {"k": [1, "/x"]} and new.state.runbook == "drill-c"
    finally:
        new.close()
    again = store.open("r7")  # a resume: the state so far, the next seq
    try:
        assert again.state.memory == {"k": [1, "/x"]}
        assert again.append(RunEnd(result=Result.PASSED)).seq == 3
        assert again.snapshot() == again.state and again.snapshot() is not again.state
    finally:
        again.close()
    assert store.summary("r7").result is Result.PASSED
    with pytest.raises(RunbookError, match="no run 'r8'"):
        store.open("r8")


def test_engine_writes_only_through_its_store(tmp_path: Path) -> None:
    from iotex_ops.runbook import Runbook, Step

    inv = make_inventory(tmp_path)
    store = RunStore(tmp_path / "elsewhere")
    rb = Runbook("tiny", "one step", steps=(Step("s", lambda ctx: ctx.remember("k", 1), "s"),))
    with network_mod.load(inv) as net:
        res = Engine(store, yes=True, report=True).run(rb, net, {}, run_id="t1")
    assert res.result is Result.PASSED and res.run_dir == store.dir("t1").path and res.journal == store.dir("t1").journal
    assert sorted(p.name for p in res.run_dir.iterdir()) == ["journal.jsonl", "report.html", "report.json"]
    assert [r.run_id for r in store.runs(runbook="tiny", result=Result.PASSED)] == ["t1"]
    assert sorted(p.name for p in store.root.iterdir()) == ["locks", "runs"]
    shutil.rmtree(store.root)
