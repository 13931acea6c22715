"""The runbook engine: parameters, preflight, dry runs, approvals, journals, retries, checks, rollbacks, the network
lock, resume after a crash, and the loader.

Runs against a 3-delegate inventory with Ansible's local connection and no node processes: the test runbooks'
actions do local things (record a call, append to a file, sleep, raise, kill their own process)."""

from __future__ import annotations

import getpass
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from iotex_ops import network as network_mod
from iotex_ops.errors import OpsError
from iotex_ops.runbook import (
    Check,
    CheckResult,
    Engine,
    Param,
    ParamError,
    Runbook,
    RunbookError,
    RunContext,
    RunResult,
    Step,
    loader,
    plan,
)
from iotex_ops.runbook import engine as engine_mod
from iotex_ops.runbook import events as events_mod
from iotex_ops.runbook import journal as journal_mod
from iotex_ops.runbook.lock import NetworkLock, NetworkLocked
from iotex_ops.runbook.params import parse_extra
from iotex_ops.runbook.state import fold
from iotex_ops.runbook.store import RunStore

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "runbooks_fixture"
NETWORK = "rbtest"

# a run in a child process, as `iotex-ops runbook run` would do it: found through $IOTEX_OPS_RUNBOOKS
CHILD_RUN = """
import sys
from pathlib import Path
from iotex_ops import network
from iotex_ops.runbook import loader
from iotex_ops.runbook.engine import Engine
from iotex_ops.runbook.store import RunStore
state, inv, name, run_id, out = sys.argv[1:]
with network.load(inv) as net:
    Engine(RunStore(Path(state)), yes=True, report=False).run(loader.find(name), net, {"out": out}, run_id=run_id)
"""

CHILD_LOCK = """
import sys, time
from pathlib import Path
from iotex_ops.runbook.lock import NetworkLock
lock = NetworkLock(Path(sys.argv[1]), sys.argv[2])
lock.acquire(sys.argv[3], "holder-book")
print("locked", flush=True)
time.sleep(60)
"""


# -- helpers -------------------------------------------------------------------------------------------------


def make_inventory(tmp_path: Path) -> Path:
    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "keys").mkdir()
    hosts = {}
    for i in (1, 2, 3):
        key = inv / "keys" / f"d{i}.json"
        key.write_text("{}")
        hosts[f"d{i}"] = {
            "ansible_host": "127.0.0.1",
            "node_p2p_port": 24600 + i,
            "node_api_port": 24700 + i,
            "delegate_name": f"delegate{i}",
            "node_key_file": str(key),
            "node_data_dir": str(tmp_path / f"data{i}"),
        }
    (inv / "hosts.yml").write_text(json.dumps({"all": {"children": {"delegates": {"hosts": hosts}}}}))
    (inv / "group_vars" / "delegates.yml").write_text(
        f"ansible_user: {getpass.getuser()}\n"
        "ansible_port: 22\n"
        "ansible_connection: local\n"
        "node_service_manager: supervisord\n"
        f"iotex_network: {NETWORK}\n"
    )
    return inv


@pytest.fixture
def inv(tmp_path: Path) -> Path:
    return make_inventory(tmp_path)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def engine(state: Path, **kw: Any) -> Engine:
    kw.setdefault("yes", True)
    return Engine(RunStore(state), report=False, **{"action_grace_s": 0.5, **kw})


def run(eng: Engine, rb: Runbook, inv: Path, given: dict[str, Any], **kw: Any) -> RunResult:
    """A run on the inventory's network, opened and closed around it as the CLI does."""
    with network_mod.load(inv) as net:
        return eng.run(rb, net, given, **kw)


def events(run_dir: Path) -> list[dict[str, Any]]:
    return journal_mod.read(run_dir / "journal.jsonl")


def of(evs: list[dict[str, Any]], kind: str, **match: Any) -> list[dict[str, Any]]:
    return [e for e in evs if e["event"] == kind and all(e.get(k) == v for k, v in match.items())]


class Recorder:
    """Actions and rollbacks that record their calls ("label" or "label@host"), in order, thread-safely."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, label: str, fail: bool | Callable[[RunContext], bool] = False) -> Callable[[RunContext], None]:
        def fn(ctx: RunContext) -> None:
            with self._lock:
                self.calls.append(label + (f"@{ctx.delegate_.name}" if ctx.delegate_ else ""))
            if fail is True or (callable(fail) and fail(ctx)):
                raise RuntimeError(f"{label} broke")

        fn.__name__ = label.replace("-", "_")
        return fn


def ok_check(description: str, value: Any = 1) -> Check:
    return Check(description, lambda ctx: CheckResult(True, value, "fine"), timeout=1, interval=0.05)


def run_child(state: Path, inv: Path, name: str, run_id: str, out: Path) -> tuple[int, int, str]:
    """Run a fixture runbook in a child process; its (pid, returncode, stderr). The child is always reaped."""
    env = {**os.environ, "IOTEX_OPS_RUNBOOKS": str(FIXTURES)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD_RUN, str(state), str(inv), name, run_id, str(out)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.pid, proc.returncode, err


def find_fixture(name: str) -> Runbook:
    return loader.find(name, [FIXTURES])


# -- parameters ----------------------------------------------------------------------------------------------


def test_parse_extra_turns_pairs_into_a_dict() -> None:
    assert parse_extra(["version=1.0.1", "to=40", "halt-at=7", "expr=a=b", "empty="]) == {
        "version": "1.0.1",
        "to": "40",
        "halt_at": "7",
        "expr": "a=b",
        "empty": "",
    }


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (["foo"], "'foo': expected key=value"),
        (["=value"], "expected key=value"),
        (["a=1", "a=2"], "-e a is given twice"),
        (["halt-at=1", "halt_at=2"], "-e halt_at is given twice"),
    ],
)
def test_parse_extra_names_what_is_wrong(pairs: list[str], message: str) -> None:
    with pytest.raises(ParamError, match=message):
        parse_extra(pairs)


def _params_runbook(rec: Recorder) -> Runbook:
    return Runbook(
        name="typed",
        summary="parameters of every kind",
        params=(
            Param("target", str, help="the delegate"),
            Param("count", int, default=1, minimum=1),
            Param("mode", str, default="fast", choices=("fast", "slow")),
            Param("flag", bool, default=False),
            Param("ratio", float, default=0.5),
            Param("token", str, default="", secret=True),
        ),
        steps=(Step("only", rec("only"), "the only step"),),
    )


@pytest.mark.parametrize(
    ("given", "patterns"),
    [
        ({"target": "d1", "bogus": "1"}, ["unknown parameter 'bogus'", "typed takes: target, count"]),
        ({}, ["parameter target is required", "the delegate"]),
        ({"target": "d1", "count": "abc"}, ["count='abc'", "expected an integer"]),
        ({"target": "d1", "mode": "medium"}, ["mode='medium'", "must be one of fast, slow"]),
        ({"target": "d1", "count": "0"}, ["count=0", "must be at least 1"]),
        ({"target": "d1", "flag": "maybe"}, ["flag='maybe'", "expected true or false"]),
        ({"target": "d1", "ratio": "nan"}, ["ratio='nan'", "finite"]),
        # every problem at once
        ({"count": "x", "mode": "m"}, ["target is required", "count='x'", "mode='m'"]),
    ],
)
def test_bad_parameters_refuse_the_run_before_anything(
    inv: Path, state: Path, given: dict[str, str], patterns: list[str]
) -> None:
    rec = Recorder()
    with pytest.raises(ParamError) as info:
        run(engine(state), _params_runbook(rec), inv, given)
    for p in patterns:
        assert p in str(info.value)
    assert rec.calls == []
    assert not (state / "runs").exists()  # nothing journaled
    assert not (state / "locks").exists()  # not even the lock taken


def test_parameters_are_typed_defaulted_and_secrets_redacted(inv: Path, state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["iotex-ops", "runbook", "run", "typed", "-e", "target=d2", "-e", "token=hunter2"]
    monkeypatch.setattr(sys, "argv", argv)
    rec = Recorder()
    seen: list[dict[str, Any]] = []
    rb = _params_runbook(rec)
    rb = Runbook(
        rb.name,
        rb.summary,
        params=rb.params,
        steps=(Step("only", lambda ctx: seen.append(dict(ctx.params)), "record the params"),),
    )
    res = run(engine(state), rb, inv, {"target": "d2", "count": " 3 ", "flag": "yes", "token": "hunter2"})
    assert res.result == "passed"
    assert seen == [{"target": "d2", "count": 3, "mode": "fast", "flag": True, "ratio": 0.5, "token": "hunter2"}]
    start = events(res.run_dir)[0]
    assert start["params"]["token"] == "***"
    assert start["params"]["count"] == 3
    assert start["argv"] == [*argv[:-1], "token=***"]
    assert "hunter2" not in (res.run_dir / "journal.jsonl").read_text()


@pytest.mark.parametrize("arg", ["-etoken=hunter2", "--extra=token=hunter2"])
def test_secret_parameters_are_redacted_from_argv_in_every_spelling(
    inv: Path, state: Path, monkeypatch: pytest.MonkeyPatch, arg: str
) -> None:
    monkeypatch.setattr(sys, "argv", ["iotex-ops", "runbook", "run", "typed", "-e", "target=d2", arg])
    res = run(engine(state), _params_runbook(Recorder()), inv, {"target": "d2", "token": "hunter2"})
    assert res.result == "passed"
    assert "hunter2" not in (res.run_dir / "journal.jsonl").read_text()


# -- preflight -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["problems", "raises"])
def test_preflight_problems_refuse_the_run(inv: Path, state: Path, how: str) -> None:
    rec = Recorder()
    got: list[Any] = []

    def preflight(ctx: RunContext) -> list[str]:
        got.append((ctx.params["height"], [d.name for d in ctx.delegates]))
        if how == "raises":
            raise OpsError("no delegate answers")
        return [f"height {ctx.params['height']} is in the past", "release 9.9 is unknown"]

    rb = Runbook(
        name="preflighted",
        summary="refused by its preflight",
        params=(Param("height", int),),
        preflight=preflight,
        steps=(Step("s1", rec("s1"), "s1", rollback=rec("undo-s1")),),
    )
    with pytest.raises(ParamError) as info:
        run(engine(state), rb, inv, {"height": "5"})
    text = str(info.value)
    assert text.startswith("preflighted: ")
    if how == "problems":
        assert "height 5 is in the past" in text
        assert "release 9.9 is unknown" in text
    else:
        assert "no delegate answers" in text
    assert got == [(5, ["d1", "d2", "d3"])]  # typed params and the network
    assert rec.calls == []
    assert not (state / "runs").exists()
    assert not (state / "locks").exists()


def test_preflight_without_problems_lets_the_run_go(inv: Path, state: Path) -> None:
    rec = Recorder()
    rb = Runbook("preflight-ok", "passes", preflight=lambda ctx: [], steps=(Step("s1", rec("s1"), "s1"),))
    assert run(engine(state), rb, inv, {}).result == "passed"
    assert rec.calls == ["s1"]


# -- dry run -------------------------------------------------------------------------------------------------


def test_plan_lists_steps_hosts_checks_and_rollbacks_and_touches_nothing(inv: Path, state: Path) -> None:
    rec = Recorder()
    probed: list[str] = []

    def probe(ctx: RunContext) -> CheckResult:
        probed.append("probe")
        return CheckResult(True)

    def undo_chosen(ctx: RunContext) -> None:
        rec.calls.append("undo_chosen")

    rb = Runbook(
        name="planned",
        summary="a plan",
        params=(Param("targets", str, default="d2"),),
        steps=(
            Step(
                "once",
                rec("once"),
                "runs once",
                verify=(Check("chain finalizes", probe),),
                rollback=rec("undo-once"),
                rollback_description="undo it once",
            ),
            Step("some", rec("some"), "all but d3", hosts="delegates:!d3", retries=2, timeout=7, destructive=True),
            Step("chosen", rec("chosen"), "param hosts", param_hosts="targets", serial=False, rollback=undo_chosen),
            Step("typo", rec("typo"), "a bad pattern", hosts="nosuchhost", when=lambda ctx: True),
        ),
    )
    net = network_mod.load(inv)
    try:
        rows = plan(rb, net, {"targets": "d1,d3"})
    finally:
        net.close()
    assert [r["step"] for r in rows] == ["once", "some", "chosen", "typo"]
    once, some, chosen, typo = rows
    assert once["hosts"] is None
    assert once["mode"] == "once"
    assert once["verify"] == ["chain finalizes"]
    assert once["rollback"] == "undo it once"
    assert once["destructive"] is False
    assert some["hosts"] == ["d1", "d2"]
    assert some["mode"] == "one at a time"
    assert (some["retries"], some["timeout_s"], some["destructive"], some["rollback"]) == (2, 7, True, None)
    assert chosen["hosts"] == ["d1", "d3"]
    assert chosen["mode"] == "in parallel"
    assert chosen["rollback"] == "undo_chosen"
    assert len(typo["hosts"]) == 1
    assert "nosuchhost" in typo["hosts"][0]
    assert typo["conditional"] is True
    # the default of a param_hosts parameter when the caller gives none
    net = network_mod.load(inv)
    try:
        assert plan(rb, net, {"targets": "d2"})[2]["hosts"] == ["d2"]
    finally:
        net.close()
    assert plan(rb, None, {"targets": "d1"})[1]["hosts"] == []
    assert rec.calls == []
    assert probed == []
    assert not state.exists()


# -- destructive steps ---------------------------------------------------------------------------------------


def _destructive_runbook(rec: Recorder) -> Runbook:
    return Runbook(
        name="wiper",
        summary="has a destructive step",
        steps=(
            Step("prep", rec("prep"), "prepare", rollback=rec("undo-prep"), retry_delay=0.01),
            Step(
                "wipe",
                rec("wipe"),
                "wipe d1 and d2",
                hosts="delegates:!d3",
                destructive=True,
                rollback=rec("undo-wipe"),
                retry_delay=0.01,
            ),
            Step("after", rec("after"), "after"),
        ),
    )


def test_destructive_runbook_without_yes_or_approver_is_refused(inv: Path, state: Path) -> None:
    rec = Recorder()
    with pytest.raises(RunbookError, match=r"destructive steps \(wipe\).*--yes"):
        run(engine(state, yes=False), _destructive_runbook(rec), inv, {})
    assert rec.calls == []
    assert not (state / "runs").exists()


def test_denied_approval_fails_the_run_at_that_step_and_rolls_back(inv: Path, state: Path) -> None:
    rec = Recorder()
    asked: list[tuple[str, list[str]]] = []

    def approve(step: Step, hosts: list[str]) -> bool:
        asked.append((step.name, hosts))
        return False

    res = run(engine(state, yes=False, approve=approve), _destructive_runbook(rec), inv, {})
    assert res.result == "failed"
    assert res.exit_code == 1
    assert "wipe" in (res.error or "")
    assert "not approved" in (res.error or "")
    assert asked == [("wipe", ["d1", "d2"])]
    assert rec.calls == ["prep", "undo-prep"]  # the denied step did nothing and has nothing to undo
    evs = events(res.run_dir)
    [approval] = of(evs, "approval")
    assert approval["step"] == "wipe"
    assert approval["approved"] is False
    assert approval["how"] == "interactive"
    assert of(evs, "run_failing")[0]["started_steps"] == ["prep"]
    assert of(evs, "step_start", step="wipe") == []


def test_approved_destructive_step_runs(inv: Path, state: Path) -> None:
    rec = Recorder()
    res = run(engine(state, yes=False, approve=lambda step, hosts: True), _destructive_runbook(rec), inv, {})
    assert res.result == "passed"
    assert rec.calls == ["prep", "wipe@d1", "wipe@d2", "after"]
    [approval] = of(events(res.run_dir), "approval")
    assert approval["approved"] is True


# -- the journal ---------------------------------------------------------------------------------------------


@pytest.mark.slow  # its steps run shell commands on the (local) hosts
def test_journal_records_the_run_its_steps_hosts_checks_and_output(inv: Path, state: Path) -> None:
    def hello(ctx: RunContext) -> str:
        res = ctx.delegate.run("echo hi")
        ctx.log(f"{ctx.delegate.name} says {res.stdout.strip()}")
        ctx.remember(f"said-{ctx.delegate.name}", res.stdout.strip())
        return "done"

    def once(ctx: RunContext) -> None:
        ctx.log("line one")
        ctx.log("line two")

    rb = Runbook(
        name="journaled",
        summary="everything goes to the journal",
        params=(Param("label", str, default="x"),),
        measure=lambda ctx: {"blocks": 5, "said": ctx.recall("said-d1")},
        steps=(
            Step("once", once, "once"),
            Step(
                "per",
                hello,
                "per host",
                hosts="delegates:!d3",
                verify=(ok_check("counted", 42), ok_check("named", "yes")),
            ),
        ),
    )
    seen: list[events_mod.Event] = []
    res = run(engine(state, on_event=seen.append), rb, inv, {"label": "first"}, run_id="run-journal-1")
    assert res.result == "passed"
    assert res.exit_code == 0
    assert res.run_id == "run-journal-1"
    assert res.run_dir == state / "runs" / "run-journal-1"
    evs = events(res.run_dir)
    assert seen == events_mod.load(res.journal)  # the live view saw exactly what was journaled, typed
    assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1))
    assert all(isinstance(e["ts"], float | int) for e in evs)

    start = evs[0]
    assert start["event"] == "run_start"
    assert start["run_id"] == "run-journal-1"
    assert start["runbook"] == "journaled"
    assert start["user"] == getpass.getuser()
    assert start["pid"] == os.getpid()
    assert start["inventory"] == str(inv.resolve())
    assert start["network"] == NETWORK
    assert start["params"] == {"label": "first"}
    assert start["delegates"] == ["d1", "d2", "d3"]
    assert evs[-1]["event"] == "run_end"
    assert evs[-1]["result"] == "passed"
    assert evs[-1]["error"] is None
    assert evs[-1]["measures"] == {"blocks": 5, "said": "hi"}
    assert res.measures == {"blocks": 5, "said": "hi"}
    assert of(evs, "measures")[0]["values"] == {"blocks": 5, "said": "hi"}

    [once_end] = of(evs, "step_end", step="once")
    assert once_end["ok"] is True
    assert once_end["host"] is None
    assert [line.split(" ", 1)[1] for line in once_end["output_tail"]] == ["line one", "line two"]

    # serial per host: each host's action and checks before the next host starts
    per = [(e["event"], e.get("host"), e.get("check")) for e in evs if e.get("step") == "per" and e["event"] != "memo"]
    assert per == [
        ("phase", None, None),
        ("step_start", "d1", None),
        ("verify", "d1", "counted"),
        ("verify", "d1", "named"),
        ("step_end", "d1", None),
        ("step_start", "d2", None),
        ("verify", "d2", "counted"),
        ("verify", "d2", "named"),
        ("step_end", "d2", None),
        ("step_end", None, None),
    ]
    counted = of(evs, "verify", check="counted", host="d1")[0]
    assert (counted["ok"], counted["value"], counted["detail"]) == (True, 42, "fine")
    assert of(evs, "verify", check="named", host="d2")[0]["value"] == "yes"
    d2_end = of(evs, "step_end", step="per", host="d2")[0]
    assert d2_end["ok"] is True
    assert d2_end["attempt"] == 1
    assert [line.split(" ", 1)[1] for line in d2_end["output_tail"]] == ["d2 says hi", "-> done"]
    memos = {e["key"]: e["value"] for e in of(evs, "memo")}
    assert memos == {"said-d1": "hi", "said-d2": "hi"}
    assert of(evs, "step_start", host="d3") == []


def test_parallel_step_runs_every_host_at_once_and_journals_each(inv: Path, state: Path) -> None:
    barrier = threading.Barrier(3, timeout=5)  # one at a time would break it

    def meet(ctx: RunContext) -> None:
        ctx.log(f"{ctx.delegate.name} waiting")
        barrier.wait()

    rb = Runbook(
        name="parallel",
        summary="all hosts at once",
        steps=(Step("all", meet, "meet at the barrier", hosts="delegates", serial=False, verify=(ok_check("up"),)),),
    )
    res = run(engine(state), rb, inv, {})
    assert res.result == "passed", res.error
    evs = events(res.run_dir)
    assert sorted(e["host"] for e in of(evs, "step_start", step="all")) == ["d1", "d2", "d3"]
    ends = {e["host"]: e for e in of(evs, "step_end", step="all")}
    assert set(ends) == {"d1", "d2", "d3", None}
    assert all(e["ok"] for e in ends.values())
    assert ends["d3"]["output_tail"][0].endswith("d3 waiting")
    assert sorted(e["host"] for e in of(evs, "verify", check="up")) == ["d1", "d2", "d3"]


def test_parallel_step_failure_names_each_failing_host_and_rolls_back_every_started_one(inv: Path, state: Path) -> None:
    rec = Recorder()
    rb = Runbook(
        name="parallel-fail",
        summary="two hosts fail",
        steps=(
            Step(
                "all",
                rec("all", fail=lambda ctx: ctx.delegate.name != "d2"),
                "fails on d1 and d3",
                hosts="delegates",
                serial=False,
                rollback=rec("undo"),
                retry_delay=0.01,
            ),
        ),
    )
    res = run(engine(state), rb, inv, {})
    assert res.result == "failed"
    assert "d1: " in (res.error or "")
    assert "d3: " in (res.error or "")
    assert "all broke" in (res.error or "")
    assert sorted(c for c in rec.calls if c.startswith("undo")) == ["undo@d1", "undo@d2", "undo@d3"]


def test_journal_read_ignores_a_torn_last_line_and_reopening_continues(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "r1" / "journal.jsonl"
    j = journal_mod.Journal(path)
    try:
        j.write("run_start", run_id="r1", runbook="x", params={})
        j.write("step_start", step="s1", host=None, attempt=1)
        j.write("step_end", step="s1", host=None, ok=True)
    finally:
        j.close()
    with path.open("a", encoding="utf-8") as f:
        f.write('{"seq":4,"ts":1.0,"event":"step_st')  # killed mid-write
    evs = journal_mod.read(path)
    assert [e["event"] for e in evs] == ["run_start", "step_start", "step_end"]
    assert fold(events_mod.parse(evs)).done_steps == {"s1"}
    j = journal_mod.Journal(path)
    try:
        j.write("resumed", pid=1)
    finally:
        j.close()
    evs = journal_mod.read(path)
    assert [(e["seq"], e["event"]) for e in evs] == [(1, "run_start"), (2, "step_start"), (3, "step_end"), (4, "resumed")]
    with pytest.raises(RunbookError, match="no journal"):
        journal_mod.read(tmp_path / "nope.jsonl")


# -- retries and checks --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("retries", "result"), [(2, "passed"), (1, "failed")])
def test_retries_until_the_action_passes(inv: Path, state: Path, retries: int, result: str) -> None:
    attempts: list[int] = []

    def flaky(ctx: RunContext) -> None:
        attempts.append(len(attempts) + 1)
        if len(attempts) <= 2:
            raise ConnectionError(f"flaky attempt {len(attempts)}")

    rb = Runbook(
        name="flaky",
        summary="fails twice",
        steps=(Step("flaky", flaky, "fails twice then works", retries=retries, retry_delay=0.01),),
    )
    res = run(engine(state), rb, inv, {})
    assert res.result == result
    evs = events(res.run_dir)
    starts = [e["attempt"] for e in of(evs, "step_start", step="flaky")]
    ends = [(e["attempt"], e["ok"]) for e in of(evs, "step_end", step="flaky")]
    if result == "passed":
        assert attempts == [1, 2, 3]
        assert starts == [1, 2, 3]
        assert ends == [(1, False), (2, False), (3, True)]
        assert "flaky attempt 2" in of(evs, "step_end", attempt=2)[0]["error"]
    else:
        assert attempts == [1, 2]
        assert starts == [1, 2]
        assert ends == [(1, False), (2, False)]
        assert "ConnectionError: flaky attempt 2" in (res.error or "")


def test_a_check_that_never_passes_fails_the_step_naming_the_check(inv: Path, state: Path) -> None:
    probes: list[float] = []

    def stuck(ctx: RunContext) -> CheckResult:
        probes.append(time.monotonic())
        return CheckResult(False, 7, "stuck at 7")

    rec = Recorder()
    rb = Runbook(
        name="unchecked",
        summary="a check that never passes",
        steps=(
            Step(
                "grow",
                rec("grow"),
                "grow the chain",
                verify=(ok_check("first passes"), Check("height reaches 100", stuck, timeout=0.4, interval=0.05)),
                rollback=rec("undo-grow"),
            ),
            Step("never", rec("never"), "never runs"),
        ),
    )
    t0 = time.monotonic()
    res = run(engine(state), rb, inv, {})
    assert time.monotonic() - t0 < 5
    assert res.result == "failed"
    assert res.exit_code == 1
    assert "step grow" in (res.error or "")
    assert "height reaches 100" in (res.error or "")
    assert "stuck at 7" in (res.error or "")
    assert len(probes) >= 3  # polled, not asked once
    assert probes[-1] - probes[0] >= 0.3  # for about its timeout
    assert rec.calls == ["grow", "undo-grow"]
    evs = events(res.run_dir)
    bad = of(evs, "verify", check="height reaches 100")
    assert [(e["ok"], e["value"]) for e in bad] == [(False, 7)]
    assert of(evs, "verify", check="first passes")[0]["ok"] is True


def test_an_action_over_its_timeout_fails_the_step(inv: Path, state: Path) -> None:
    release = threading.Event()
    rb = Runbook(
        name="slow",
        summary="an action over its timeout",
        steps=(Step("slow", lambda ctx: release.wait(30), "too slow", timeout=0.3),),
    )
    try:
        t0 = time.monotonic()
        res = run(engine(state), rb, inv, {})
        assert time.monotonic() - t0 < 5
        assert res.result == "failed"
        assert "did not finish within 0.3s" in (res.error or "")
        assert "still running" in (res.error or "")  # the grace (0.5 s) was not enough: the journal says so
    finally:
        release.set()
        _join("slow")


def test_an_abandoned_action_gets_a_grace_period_before_the_rollback_runs(inv: Path, state: Path) -> None:
    order: list[str] = []

    def slow(ctx: RunContext) -> None:
        time.sleep(0.6)
        order.append("slow ended")

    rb = Runbook(
        name="graceful",
        summary="an action a little over its timeout",
        steps=(Step("slow", slow, "a little slow", timeout=0.3, rollback=lambda ctx: order.append("rollback")),),
    )
    res = run(engine(state, action_grace_s=2.0), rb, inv, {})
    assert res.result == "failed" and "still running" not in (res.error or "")
    assert order == ["slow ended", "rollback"]  # never side by side


def _join(name: str) -> None:
    for t in threading.enumerate():
        if t.name == name:
            t.join(5)


# -- failures and rollbacks ----------------------------------------------------------------------------------


def test_failure_rolls_back_started_steps_newest_first_and_only_started_hosts(inv: Path, state: Path) -> None:
    rec = Recorder()
    rb = Runbook(
        name="rolling",
        summary="fails on d2 of a serial step",
        steps=(
            Step("first", rec("first"), "first", rollback=rec("undo-first"), retry_delay=0.01),
            Step("plain", rec("plain"), "no rollback"),
            Step(
                "serial",
                rec("serial", fail=lambda ctx: ctx.delegate.name == "d2"),
                "fails on d2",
                hosts="delegates",
                rollback=rec("undo-serial"),
                retry_delay=0.01,
            ),
            Step("later", rec("later"), "never starts", rollback=rec("undo-later")),
        ),
    )
    res = run(engine(state), rb, inv, {})
    assert res.result == "failed"
    assert res.exit_code == 1
    assert res.error == "step serial on d2: RuntimeError: serial broke"
    assert res.rollback_errors == []
    assert rec.calls == [
        "first",
        "plain",
        "serial@d1",
        "serial@d2",
        "undo-serial@d2",
        "undo-serial@d1",
        "undo-first",
    ]
    evs = events(res.run_dir)
    [failing] = of(evs, "run_failing")
    assert (failing["step"], failing["host"]) == ("serial", "d2")
    assert failing["started_steps"] == ["first", "plain", "serial"]
    ends = [(e["step"], e["host"], e["ok"]) for e in of(evs, "rollback_end")]
    assert ends == [("serial", "d2", True), ("serial", "d1", True), ("first", None, True)]
    assert evs[-1]["event"] == "run_end"
    assert evs[-1]["result"] == "failed"
    assert max(e["seq"] for e in of(evs, "rollback_end")) < evs[-1]["seq"]


def test_a_rollback_that_raises_makes_the_run_rollback_failed(inv: Path, state: Path) -> None:
    rec = Recorder()
    rb = Runbook(
        name="bad-undo",
        summary="a rollback raises",
        steps=(
            Step("one", rec("one"), "one", rollback=rec("undo-one"), retry_delay=0.01),
            Step("two", rec("two"), "two", rollback=rec("undo-two", fail=True), retry_delay=0.01),
            Step("three", rec("three", fail=True), "fails", rollback=rec("undo-three"), retry_delay=0.01),
        ),
    )
    res = run(engine(state), rb, inv, {})
    assert res.result == "rollback_failed"
    assert res.exit_code == 3
    assert "three broke" in (res.error or "")
    assert "ROLLBACK FAILED" in (res.error or "")
    assert "undo-two broke" in (res.error or "")
    assert len(res.rollback_errors) == 1
    assert res.rollback_errors[0].startswith("two: ")
    # the others still ran, in order; the failing one was tried again
    assert [c for c in rec.calls if c != "undo-two"] == ["one", "two", "three", "undo-three", "undo-one"]
    assert rec.calls.index("undo-three") < rec.calls.index("undo-two") < rec.calls.index("undo-one")
    evs = events(res.run_dir)
    assert [(e["step"], e["ok"]) for e in of(evs, "rollback_end")] == [("three", True), ("two", False), ("one", True)]
    assert evs[-1]["result"] == "rollback_failed"


def test_a_lost_continuous_check_aborts_the_running_step_and_rolls_back(inv: Path, state: Path) -> None:
    rec = Recorder()
    release = threading.Event()
    polls: list[int] = []

    def finalizing(ctx: RunContext) -> CheckResult:
        if "long" in rec.calls:  # lost a moment after the long step started
            polls.append(len(polls))
        lost = len(polls) >= 2
        return CheckResult(not lost, len(polls), "no block for 9s" if lost else "")

    def long(ctx: RunContext) -> None:
        rec.calls.append("long")
        release.wait(30)

    rb = Runbook(
        name="continuous",
        summary="the steady state is lost mid-step",
        continuous=(Check("chain keeps finalizing", finalizing),),
        continuous_interval=0.1,
        steps=(
            Step("first", rec("first"), "first", rollback=rec("undo-first"), retry_delay=0.01),
            Step("long", long, "takes long", timeout=60, rollback=rec("undo-long"), retry_delay=0.01),
            Step("never", rec("never"), "never"),
        ),
    )
    try:
        t0 = time.monotonic()
        res = run(engine(state), rb, inv, {})
        elapsed = time.monotonic() - t0
    finally:
        release.set()
        _join("long")
    assert elapsed < 10  # far below the step's 60 s timeout and the action's 30 s
    assert res.result == "failed"
    assert "chain keeps finalizing" in (res.error or "")
    assert "no block for 9s" in (res.error or "")
    assert rec.calls == ["first", "long", "undo-long", "undo-first"]
    evs = events(res.run_dir)
    [lost] = of(evs, "continuous_failed")
    assert (lost["check"], lost["value"], lost["detail"]) == ("chain keeps finalizing", 2, "no block for 9s")
    assert of(evs, "step_end", step="long")[0]["ok"] is False
    assert lost["seq"] < of(evs, "run_failing")[0]["seq"]
    assert not any(t.name == "continuous-checks" for t in threading.enumerate())


def test_a_step_holding_with_ctx_wait_gives_way_at_once_when_a_stop_condition_fires(inv: Path, state: Path) -> None:
    """A hold (`ctx.wait`) ends as soon as the run is aborted: the rollback starts then, not after the
    abandoned action's grace (10 s) nor at the hold's end."""
    polls: list[int] = []

    def finalizing(ctx: RunContext) -> CheckResult:
        polls.append(1)
        return CheckResult(len(polls) < 3, len(polls), "no block for 9s")

    undone: list[float] = []
    rb = Runbook(
        name="hold",
        summary="a hold interrupted by a stop condition",
        continuous=(Check("chain keeps finalizing", finalizing),),
        continuous_interval=0.1,
        steps=(Step("hold", lambda ctx: ctx.wait(40), "hold", rollback=lambda ctx: undone.append(time.monotonic())),),
    )
    t0 = time.monotonic()
    res = run(engine(state, action_grace_s=10.0), rb, inv, {})
    assert res.result == "failed" and "no block for 9s" in (res.error or "")
    assert undone and undone[0] - t0 < 5  # far below the 10 s grace and the 40 s hold
    evs = events(res.run_dir)
    assert of(evs, "step_end", step="hold")[0]["ok"] is False


def test_the_steady_state_after_a_rollback_is_recorded_within_one_short_budget(
    inv: Path, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a rollback the steady-state checks share one budget (the run still holds the lock, so a node
    alertd would restart stays down meanwhile): a check that would wait 60 s is recorded as failing sooner."""
    monkeypatch.setattr(engine_mod, "AFTER_ROLLBACK_BUDGET_S", 1.0)
    calls: list[int] = []

    def steady(ctx: RunContext) -> CheckResult:
        calls.append(1)
        ok = len(calls) == 1  # steady before the run, not after its rollback
        return CheckResult(ok, len(calls), "" if ok else "3/4 targets up")

    rb = Runbook(
        name="after",
        summary="the network is left unsteady",
        steady_state=(Check("Prometheus scrapes every delegate", steady, timeout=60, interval=0.1),),
        steps=(Step("a", lambda ctx: (_ for _ in ()).throw(OpsError("boom")), "fails", retry_delay=0.01),),
    )
    t0 = time.monotonic()
    res = run(engine(state), rb, inv, {})
    assert res.result == "failed" and time.monotonic() - t0 < 10
    states = of(events(res.run_dir), "steady_state")
    assert [(e["phase"], e["ok"]) for e in states] == [("before", True), ("after_rollback", False)]
    assert "3/4 targets up" in states[1]["checks"][0]["detail"]


def test_point_of_no_return_stops_the_rollback_there(inv: Path, state: Path) -> None:
    rec = Recorder()

    def book(fail_at: str) -> Runbook:
        return Runbook(
            name="no-way-back",
            summary="a point of no return",
            steps=(
                Step("a", rec("a", fail=fail_at == "a"), "a", rollback=rec("undo-a"), retry_delay=0.01),
                Step("ponr", rec("ponr"), "schedule the protocol", point_of_no_return=True),
                Step("c", rec("c"), "c", rollback=rec("undo-c"), retry_delay=0.01),
                Step("d", rec("d", fail=fail_at == "d"), "d", rollback=rec("undo-d"), retry_delay=0.01),
            ),
        )

    res = run(engine(state), book("d"), inv, {})
    assert rec.calls == ["a", "ponr", "c", "d", "undo-d", "undo-c"]  # nothing before the point is undone
    assert res.result == "rollback_failed"
    assert res.exit_code == 3
    assert "d broke" in (res.error or "")
    assert "point of no return (ponr)" in (res.error or "")
    [stop] = of(events(res.run_dir), "rollback_stop")
    assert stop["step"] == "ponr"

    rec.calls.clear()  # failing before the point: an ordinary rollback
    res = run(engine(state), book("a"), inv, {})
    assert rec.calls == ["a", "undo-a"]
    assert res.result == "failed"
    assert of(events(res.run_dir), "rollback_stop") == []


def test_rollback_hosts_unfinished_keeps_the_hosts_that_went_well(inv: Path, state: Path) -> None:
    rec = Recorder()
    rb = Runbook(
        name="rolling-upgrade",
        summary="fails on d2",
        steps=(
            Step(
                "upgrade",
                rec("upgrade", fail=lambda ctx: ctx.delegate.name == "d2"),
                "one at a time",
                hosts="delegates",
                rollback=rec("downgrade"),
                rollback_hosts="unfinished",
                retry_delay=0.01,
            ),
        ),
    )
    res = run(engine(state), rb, inv, {})
    assert res.result == "failed"
    assert rec.calls == ["upgrade@d1", "upgrade@d2", "downgrade@d2"]


def test_a_false_condition_skips_the_step(inv: Path, state: Path) -> None:
    rec = Recorder()
    rb = Runbook(
        name="conditional",
        summary="a step skipped",
        params=(Param("skip", bool, default=True),),
        steps=(
            Step("a", rec("a"), "a"),
            Step("b", rec("b"), "b", when=lambda ctx: not ctx.params["skip"]),
            Step("c", rec("c"), "c"),
        ),
    )
    res = run(engine(state), rb, inv, {})
    assert res.result == "passed"
    assert rec.calls == ["a", "c"]
    [skip] = of(events(res.run_dir), "step_skip")
    assert (skip["step"], skip["reason"]) == ("b", "its condition is false")
    rec.calls.clear()
    run(engine(state), rb, inv, {"skip": "false"})
    assert rec.calls == ["a", "b", "c"]


@pytest.mark.parametrize("where", ["when", "approver"])
def test_a_condition_or_approver_that_raises_fails_the_run_and_rolls_back(inv: Path, state: Path, where: str) -> None:
    rec = Recorder()

    def when(ctx: RunContext) -> bool:
        raise ValueError("bug in the condition")

    def approve(step: Step, hosts: list[str]) -> bool:
        raise EOFError("stdin closed at the prompt")

    rb = Runbook(
        name="raising",
        summary="b's condition or approval raises",
        steps=(
            Step("a", rec("a"), "a", rollback=rec("undo-a"), retry_delay=0.01),
            Step("b", rec("b"), "b", when=when if where == "when" else None, destructive=where == "approver"),
        ),
    )
    eng = engine(state) if where == "when" else engine(state, yes=False, approve=approve)
    res = run(eng, rb, inv, {})
    assert res.result == "failed"
    assert rec.calls == ["a", "undo-a"]
    expected = "ValueError: bug in the condition" if where == "when" else "EOFError: stdin closed at the prompt"
    assert res.error == expected
    assert events(res.run_dir)[-1]["event"] == "run_end"


def test_a_steady_state_lost_before_the_run_fails_it_before_any_step(inv: Path, state: Path) -> None:
    rec = Recorder()
    rb = Runbook(
        name="unsteady",
        summary="the network is not healthy",
        steady_state=(
            ok_check("delegates answer"),
            Check("chain finalizes", lambda ctx: CheckResult(False, 0, "stalled"), timeout=0.2, interval=0.05),
        ),
        steps=(Step("a", rec("a"), "a", rollback=rec("undo-a")),),
    )
    res = run(engine(state), rb, inv, {})
    assert res.result == "failed"
    assert rec.calls == []
    assert "chain finalizes: stalled" in (res.error or "")
    states = of(events(res.run_dir), "steady_state")
    assert [(e["phase"], e["ok"]) for e in states] == [("before", False), ("after_rollback", False)]
    assert [c["ok"] for c in states[0]["checks"]] == [True, False]


# -- the network lock ----------------------------------------------------------------------------------------


def _trivial(rec: Recorder, name: str = "trivial") -> Runbook:
    return Runbook(name, "one step", steps=(Step("s", rec("s"), "s"),))


def test_a_second_run_is_refused_while_another_holds_the_lock_in_process(inv: Path, state: Path) -> None:
    from iotex_ops.remediation.runner import EngineRunner

    rec = Recorder()
    holder = NetworkLock(state / "locks", NETWORK)
    alertd = EngineRunner(inv, state)  # alertd's probe: may a deferred remediation start now?
    assert holder.free() and alertd.network_free()
    holder.acquire("run-holding-it", "other-book")
    try:
        assert not holder.free() and not alertd.network_free()
        with pytest.raises(NetworkLocked, match=r"locked by run run-holding-it \(other-book, pid \d+"):
            run(engine(state), _trivial(rec), inv, {})
        assert rec.calls == []
        assert not (state / "runs").exists()
    finally:
        holder.release()
    assert holder.free() and alertd.network_free()
    res = run(engine(state), _trivial(rec), inv, {})  # released: the next run goes
    assert res.result == "passed"
    assert of(events(res.run_dir), "stale_lock") == []  # a released lock is not stale
    assert (state / "locks" / f"{NETWORK}.lock").read_text() == ""


@pytest.mark.slow  # child processes
def test_a_lock_held_by_another_process_refuses_the_run_and_is_taken_over_once_it_dies(inv: Path, state: Path) -> None:
    rec = Recorder()
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD_LOCK, str(state / "locks"), NETWORK, "run-in-child"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(NetworkLocked, match=rf"run run-in-child \(holder-book, pid {proc.pid}"):
            run(engine(state), _trivial(rec), inv, {})
        assert rec.calls == []
    finally:
        proc.kill()
        proc.communicate()
    res = run(engine(state), _trivial(rec), inv, {})
    assert res.result == "passed"
    [stale] = of(events(res.run_dir), "stale_lock")
    assert stale["previous"]["run_id"] == "run-in-child"
    assert stale["previous"]["pid"] == proc.pid


@pytest.mark.slow  # child processes
def test_a_stale_lock_file_of_a_dead_pid_is_taken_over_and_journaled(inv: Path, state: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (state / "locks").mkdir(parents=True)
    holder = {"run_id": "old-run", "runbook": "first-aid", "pid": dead.pid, "machine": "m", "user": "u", "since": 1.0}
    (state / "locks" / f"{NETWORK}.lock").write_text(json.dumps(holder))
    rec = Recorder()
    res = run(engine(state), _trivial(rec), inv, {})
    assert res.result == "passed"
    assert rec.calls == ["s"]
    evs = events(res.run_dir)
    [stale] = of(evs, "stale_lock")
    assert stale["previous"] == holder
    assert stale["seq"] < of(evs, "step_start")[0]["seq"]


def _host_scoped(rec: Recorder, name: str = "fix-host") -> Runbook:
    return Runbook(name, "one host", steps=(Step("s", rec("s"), "s"),), params=(Param("host", str),), lock_host_param="host")


def test_host_scoped_runs_share_the_network_but_not_a_host_and_a_drill_excludes_them(inv: Path, state: Path) -> None:
    rec = Recorder()
    on_d1 = NetworkLock(state / "locks", NETWORK, host="d1")
    on_d1.acquire("remediating-d1", "fix-host")
    try:
        assert run(engine(state), _host_scoped(rec), inv, {"host": "d2"}).result == "passed"  # another host: goes
        with pytest.raises(NetworkLocked, match=r"host d1 of network rbtest is locked by run remediating-d1"):
            run(engine(state), _host_scoped(rec), inv, {"host": "d1"})
        with pytest.raises(NetworkLocked, match=r"network rbtest is locked by run remediating-d1"):
            run(engine(state), _trivial(rec), inv, {})  # a drill waits for the remediation
    finally:
        on_d1.release()
    drill = NetworkLock(state / "locks", NETWORK)
    drill.acquire("drill-1", "first-aid")
    try:
        with pytest.raises(NetworkLocked, match=r"network rbtest is locked by run drill-1 \(first-aid"):
            run(engine(state), _host_scoped(rec), inv, {"host": "d2"})
    finally:
        drill.release()
    assert rec.calls == ["s"]


def test_a_run_waits_for_the_lock_when_told_to(inv: Path, state: Path) -> None:
    rec = Recorder()
    holder = NetworkLock(state / "locks", NETWORK, host="d1")
    holder.acquire("short-remediation", "fix-host")
    threading.Timer(0.5, holder.release).start()
    t0 = time.monotonic()
    assert run(engine(state, lock_wait_s=10), _trivial(rec), inv, {}).result == "passed"
    assert 0.4 < time.monotonic() - t0 < 8


def test_the_inventory_can_put_the_locks_of_its_network_anywhere(inv: Path, state: Path, tmp_path: Path) -> None:
    locks = tmp_path / "shared-locks"
    with (inv / "group_vars" / "delegates.yml").open("a") as f:
        f.write(f"iotex_ops_lock_dir: {locks}\n")
    rec = Recorder()
    holder = NetworkLock(locks, NETWORK)
    holder.acquire("elsewhere", "first-aid")
    try:
        with pytest.raises(NetworkLocked, match="run elsewhere"):
            run(engine(state), _trivial(rec), inv, {})  # another state dir, the same network: one lock
    finally:
        holder.release()
    assert not (state / "locks").exists()


# -- resume --------------------------------------------------------------------------------------------------


@pytest.mark.slow  # child processes
def test_resume_after_a_crash_continues_after_the_last_completed_step_and_host(inv: Path, state: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    run_id = "run-crash-1"
    pid, code, err = run_child(state, inv, "resume-crash", run_id, out)
    assert code == -signal.SIGKILL, err
    assert out.read_text().splitlines() == ["step1", "step2@d1"]
    assert (tmp_path / "resume-crash.marker").exists()
    before = events(state / "runs" / run_id)
    assert before[-1]["event"] == "step_start"
    assert (before[-1]["step"], before[-1]["host"]) == ("step2", "d2")

    res = engine(state).resume(run_id, find_fixture)
    assert res.result == "passed", res.error
    assert res.run_id == run_id
    assert out.read_text().splitlines() == [
        "step1",
        "step2@d1",
        "step2@d2",
        "step2@d3",
        "step3",
        f"step4 token=from-{pid}",  # remembered by the crashed process
    ]
    evs = events(state / "runs" / run_id)
    assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1))
    [resumed] = of(evs, "resumed")
    assert resumed["done_steps"] == ["step1"]
    assert resumed["done_hosts"] == {"step2": ["d1"]}
    assert resumed["rollback_phase"] is False
    assert resumed["pid"] == os.getpid()
    after = evs[evs.index(resumed) :]
    assert [(e["step"], e.get("host")) for e in of(after, "step_skip")] == [("step1", None), ("step2", "d1")]
    assert [e["host"] for e in of(after, "step_start", step="step2")] == ["d2", "d3"]
    assert of(after, "step_start", step="step1") == []
    assert len(of(evs, "run_start")) == 1
    assert len(of(evs, "run_end")) == 1
    assert evs[-1]["result"] == "passed"

    with pytest.raises(RunbookError, match=f"run {run_id} already ended: passed"):
        engine(state).resume(run_id, find_fixture)


def test_resume_refuses_unknown_and_finished_runs(inv: Path, state: Path) -> None:
    rec = Recorder()
    run(engine(state), _trivial(rec), inv, {}, run_id="r-earlier")
    looked_up: list[str] = []

    def finder(name: str) -> Runbook:
        looked_up.append(name)
        return _trivial(rec)

    with pytest.raises(RunbookError, match=r"no run 'no-such-run'.*recent: r-earlier"):
        engine(state).resume("no-such-run", finder)
    with pytest.raises(RunbookError, match="already ended: passed"):
        engine(state).resume("r-earlier", finder)
    assert looked_up == []
    assert rec.calls == ["s"]
    assert len(of(events(state / "runs" / "r-earlier"), "resumed")) == 0


@pytest.mark.slow  # child processes
def test_a_crash_during_rollback_resumes_into_the_rollback_phase(inv: Path, state: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    run_id = "run-crash-rollback"
    _, code, err = run_child(state, inv, "rollback-crash", run_id, out)
    assert code == -signal.SIGKILL, err
    done_before = ["a", "b@d1", "b@d2", "b@d3", "c", "rb-c", "rb-b@d3"]
    assert out.read_text().splitlines() == done_before

    res = engine(state).resume(run_id, find_fixture)
    assert res.result == "failed"
    assert res.exit_code == 1
    assert "c broke" in (res.error or "")
    # rollbacks already done are not redone; the interrupted one and the rest are
    assert out.read_text().splitlines() == [*done_before, "rb-b@d2", "rb-b@d1", "rb-a"]
    evs = events(state / "runs" / run_id)
    [resumed] = of(evs, "resumed")
    assert resumed["rollback_phase"] is True
    after = evs[evs.index(resumed) :]
    assert of(after, "step_start") == []
    assert [(e["step"], e["host"], e["ok"]) for e in of(after, "rollback_end")] == [
        ("b", "d2", True),
        ("b", "d1", True),
        ("a", None, True),
    ]
    assert evs[-1]["event"] == "run_end"
    assert evs[-1]["result"] == "failed"


# -- the loader ----------------------------------------------------------------------------------------------


def test_loader_discovers_runbooks_by_name_from_extra_dirs_and_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("IOTEX_OPS_RUNBOOKS", raising=False)
    found = loader.discover([FIXTURES])
    assert {"resume-crash", "rollback-crash"} <= set(found)
    rb = found["resume-crash"]
    assert rb.source == str(FIXTURES / "resume_crash.py")
    assert [s.name for s in rb.steps] == ["step1", "step2", "step3", "step4"]
    assert loader.find("rollback-crash", [FIXTURES]).name == "rollback-crash"
    with pytest.raises(RunbookError, match=r"no runbook 'nope'; known: .*resume-crash"):
        loader.find("nope", [FIXTURES])

    monkeypatch.setenv("IOTEX_OPS_RUNBOOKS", os.pathsep.join([str(tmp_path / "missing"), str(FIXTURES)]))
    assert "resume-crash" in loader.discover()
    monkeypatch.delenv("IOTEX_OPS_RUNBOOKS")
    assert "resume-crash" not in loader.discover()


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("X = 1\n", "defines no RUNBOOK"),
        ("RUNBOOK = 'not a runbook'\n", "defines no RUNBOOK"),
        ("import iotex_no_such_module_xyz\n", "failed to import: ModuleNotFoundError"),
        ("def broken(:\n", "failed to import: SyntaxError"),
        ("raise RuntimeError('boom at import')\n", "failed to import: RuntimeError: boom at import"),
    ],
)
def test_loader_names_the_file_of_a_bad_runbook_module(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, source: str, message: str
) -> None:
    monkeypatch.delenv("IOTEX_OPS_RUNBOOKS", raising=False)
    d = tmp_path / "books"
    d.mkdir()
    (d / "_helpers.py").write_text("raise RuntimeError('private modules are not runbooks')\n")
    bad = d / "bad_book.py"
    bad.write_text(source)
    with pytest.raises(RunbookError) as info:
        loader.discover([d])
    assert str(bad) in str(info.value)
    assert message in str(info.value)
    bad.unlink()
    loader.discover([d])  # the private module is never imported
