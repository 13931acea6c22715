"""The drills on a real local lab (nodes under supervisord, Ansible, Prometheus), through the CLI.

One lab for the module: the tests run in file order, and the full rehearsal comes last (its bootstrap
starts a new chain, whatever the earlier tests left).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from iotex_ops.alerting.silences import Silences
from iotex_ops.errors import OpsError
from iotex_ops.flood import judge
from iotex_ops.lab import lab as lab_mod
from iotex_ops.paging.receiver import read_state
from iotex_ops.rehearsal import drill_params
from iotex_ops.runbook import journal as journal_mod
from iotex_ops.runbook import maintenance as mw
from iotex_ops.runbook.store import RunStore
from iotex_ops.traffic import read_accounts
from tests.ops import lab_checks
from tests.ops.conftest import SharedLab
from tests.ops.drill_lab import chains, count, dump, only_run, ops, result_json, spawn, wait_event

pytestmark = [
    pytest.mark.slow,
    pytest.mark.network,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="the lab needs the Debian prometheus package"),
]


@pytest.fixture(scope="module")
def lab(shared_lab: SharedLab) -> Iterator[lab_mod.LabState]:
    yield shared_lab.get()
    shared_lab.down()  # the last module on the shared lab: down before the netns lab comes up (a no-op after
    # test_lab_down_removes_everything_it_started)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def test_bad_parameters_are_refused_before_any_host_is_touched(lab: lab_mod.LabState, state: Path) -> None:
    root = Path(lab.root)
    before = chains(lab)
    res = ops(["runbook", "run", "hotfix-compatible", "-e", "version=9.9.9", "--yes"], root, state)
    assert res.returncode == 2, dump(res)
    assert "unknown release '9.9.9'" in res.stderr and "0.1.1" in res.stderr  # names what exists
    res = ops(["runbook", "run", "hotfix-incompatible", "-e", "version=0.2.0", "-e", "height=3", "--yes"], root, state)
    assert res.returncode == 2, dump(res)
    assert "height 3 is in the past" in res.stderr
    res = ops(["runbook", "run", "rollback-recovery", "-e", "to=5", "-e", "blocks=2", "--yes"], root, state)
    assert res.returncode == 2 and "exactly one of" in res.stderr, dump(res)
    res = ops(["runbook", "run", "first-aid", "-e", "hold_s=soon"], root, state)
    assert res.returncode == 2 and "hold_s='soon'" in res.stderr, dump(res)
    res = ops(["runbook", "run", "first-aid", "-e", "colour=red"], root, state)
    assert res.returncode == 2 and "unknown parameter 'colour'" in res.stderr, dump(res)
    # nothing ran: no journal, no halt or pause, every node still on its release
    assert not RunStore(state).ids()
    after = chains(lab)
    for b, a in zip(before, after, strict=True):
        assert (a["node_version"], a["paused"], a["halt_height"], a["halted"]) == (b["node_version"], False, None, None)
        assert a["finalized_height"] >= b["finalized_height"]


def test_dry_run_prints_the_plan_and_touches_nothing(lab: lab_mod.LabState, state: Path) -> None:
    res = ops(["runbook", "run", "hotfix-compatible", "-e", "version=0.1.1", "--dry-run", "--json"], Path(lab.root), state)
    assert res.returncode == 0, dump(res)
    doc = result_json(res)
    steps = {s["step"]: s for s in doc["steps"]}
    assert steps["upgrade"]["hosts"] == [n.name for n in lab.nodes] and steps["upgrade"]["mode"] == "one at a time"
    assert steps["upgrade"]["destructive"] and "switch" in steps["upgrade"]["rollback"]
    assert any("endorsing" in v for v in steps["upgrade"]["verify"])
    assert not (state / "runs").exists()
    assert {c["node_version"] for c in chains(lab)} == {"0.1.0"}


def test_a_second_run_is_refused_by_the_lock_and_a_killed_run_resumes_without_repeating_steps(
    lab: lab_mod.LabState, state: Path
) -> None:
    root = Path(lab.root)
    first = spawn(["runbook", "run", "first-aid", "-e", "hold_s=10", "-e", "single_check=false", "--yes"], root, state)
    try:
        wait_event(state, lambda e: e["event"] == "step_start" and e.get("step") == "hold", timeout=90)
        second = ops(["runbook", "run", "first-aid", "--yes"], root, state, timeout=120)
        run_id, _ = only_run(state)
        assert second.returncode == 2, dump(second)
        assert "is locked by run" in second.stderr and run_id in second.stderr
        # the engine dies in the middle of the drill, with the chain paused
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(timeout=30)
    assert all(c["paused"] for c in chains(lab))
    res = ops(["runbook", "resume", run_id, "--yes", "--json"], root, state, timeout=300)
    assert res.returncode == 0, dump(res)
    assert result_json(res)["result"] == "passed"
    events = journal_mod.read(state / "runs" / run_id / "journal.jsonl")
    assert [e["event"] for e in events].count("run_start") == 1 and any(e["event"] == "stale_lock" for e in events)
    for n in lab.nodes:
        assert count(events, "step_start", "pause-all", n.name) == 1  # not repeated by the resume
        assert count(events, "step_start", "resume-all", n.name) == 1
    assert count(events, "step_start", "verify-stopped") == 1
    assert any(e["event"] == "step_skip" and e.get("step") == "verify-stopped" for e in events)
    assert events[-1]["event"] == "run_end" and events[-1]["result"] == "passed"
    assert not any(c["paused"] for c in chains(lab))
    # the killed run's silences were expired by the resume, which made its own and expired them at the end
    closes = [e for e in events if e["event"] == "maintenance_close"]
    assert [c["reason"] for c in closes] == ["resume", "end"] and closes[0]["silences"], closes
    assert Silences(lab.alertmanager_url).ours() == []


def _pages_nobody(doc: dict[str, Any], root: Path, state: Path, sil: Silences, seen: dict[str, Any], before: set[str]) -> None:
    runs = {d["name"]: d["run_id"] for d in doc["drills"]}
    # listed while the drills ran, each naming its run; none left after
    named = {r[0] for s in seen.values() if (r := mw.run_of(s.comment))}
    assert named == set(runs.values()), seen
    assert all(s.created_by == "iotex-ops" for s in seen.values())
    assert sil.ours() == []
    for name, run_id in runs.items():
        events = journal_mod.read(state / "runs" / run_id / "journal.jsonl")
        [opened] = [e for e in events if e["event"] == "maintenance_open"]
        [closed] = [e for e in events if e["event"] == "maintenance_close"]
        assert opened["silences"] and sorted(closed["silences"]) == sorted(opened["silences"]), name
        assert set(opened["silences"]) <= set(seen), name
    # nobody was paged by the drills before the flood (judged in the rehearsal's test: the flood's own promises)
    flood_start = next(d["started"] for d in doc["drills"] if d["name"] == "flood")
    new = [i for i in _incidents(root) if i["id"] not in before]
    early = [i for i in new if datetime.fromisoformat(i["created_at"]).timestamp() < flood_start]
    assert not early, early
    store = read_state(root / "pager")
    try:
        changes = store.changes()
    finally:
        store.close()
    for name, run_id in runs.items():
        mine = [c for c in changes if c["event"]["payload"].get("custom_details", {}).get("run_id") == run_id]
        assert len(mine) == 2, (name, mine)
        start, end = (c["event"]["payload"] for c in mine)
        assert "started" in start["summary"] and end["custom_details"]["result"] == "passed"
        assert end["custom_details"]["silences"] == start["custom_details"]["silences"]
    # detection is still measured, from what Prometheus saw while the alerts were silenced
    by = {d["name"]: d for d in doc["drills"]}
    detected = by["first-aid"]["measures"].get("time_to_detect_s")
    assert isinstance(detected, dict), by["first-aid"]["measures"]
    assert all(v >= 0 for v in detected.values())


def _incident_ids(root: Path) -> set[str]:
    return {i["id"] for i in _incidents(root)}


def _incidents(root: Path, only: set[str] | None = None) -> list[dict[str, Any]]:
    store = read_state(root / "pager")
    try:
        return [i for i in store.incidents() if only is None or i["id"] in only]
    finally:
        store.close()


def test_the_full_rehearsal_passes_on_the_local_lab(lab: lab_mod.LabState, state: Path) -> None:
    """The six drills pass under 300 TPS losing nothing; and they page nobody: each drill's silences are listed
    in Alertmanager while it runs and expired after, two change events per drill, no incident at the receiver
    (DelegateDown in the rolling restarts, ChainStalled and paused delegates in first-aid...), time to detect
    still measured."""
    root = Path(lab.root)
    sil = Silences(lab.alertmanager_url)
    seen: dict[str, Any] = {}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            with contextlib.suppress(OpsError):
                seen.update({s.id: s for s in sil.ours()})
            stop.wait(0.5)

    before = _incident_ids(root)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        res = ops(["rehearsal", "--json"], root, state, timeout=900)
    finally:
        stop.set()
        watcher.join(timeout=10)
    assert res.returncode == 0, dump(res)
    doc = result_json(res)
    _pages_nobody(doc, root, state, sil, seen, before)
    names = [d["name"] for d in doc["drills"]]
    assert names == ["bootstrap", "first-aid", "hotfix-compatible", "hotfix-incompatible", "rollback-recovery", "flood"]
    assert all(d["result"] == "passed" for d in doc["drills"]), json.dumps(doc["drills"], indent=1)[:3000]
    for d in doc["drills"]:
        assert d["duration_s"] > 0 and d["run_id"] and os.path.exists(d["report_html"])
    by = {d["name"]: d for d in doc["drills"]}
    for name in names[1:]:  # under the default 300 TPS of background load, no drill loses an accepted action
        d = by[name]
        assert d["lost_actions"] == 0 and 0 < d["final_actions"] <= d["offered_actions"], (name, d["measures"].get("load"))
    assert doc["load_tps"] == 300.0
    assert by["hotfix-incompatible"]["measures"]["protocol"] == 2
    assert by["hotfix-incompatible"]["downtime_s"] > 0
    assert by["rollback-recovery"]["measures"]["resubmitted"] > 0  # the background load's actions were displaced
    # the flood's row is its own honest load's (the background load is held meanwhile)
    assert by["flood"]["measures"]["accepted_honest"] > 0 and by["flood"]["measures"]["lost"] == 0
    # the flood kept every promise of the drill (iotex_ops/flood/plan.judge): the figures bench/flood.py prints;
    # every kind of attack ran and was answered the way the node promises
    m = by["flood"]["measures"]
    assert m["host"] == lab.nodes[-1].name
    assert all(c.ok for c in judge(m)), [c.as_dict() for c in judge(m) if not c.ok]
    statuses = {int(k): v for k, v in m["statuses"].items()}
    assert statuses.get(429, 0) > 0 and statuses.get(400, 0) > 0 and statuses.get(413, 0) > 0, statuses
    assert m["p2p_dropped"] > 0 and m["slow_held_s"] <= drill_params(lab)["flood"]["flood_s"] + 5
    assert m["count_429"] == statuses.get(429, 0)
    assert doc["load"]["accepted"] > 100
    report = json.loads(Path(doc["report"]).with_suffix(".json").read_text())
    assert [d["name"] for d in report["drills"]] == names
    assert "<svg" in Path(doc["report"]).read_text()
    assert {c["node_version"] for c in chains(lab)} == {"0.2.0"}
    # the journals hold no secret: no keystore password, admin token or account key
    secrets = [p.read_text().strip() for p in Path(lab.root, "testnet").glob("node*/keystore.pass")]
    secrets += [p.read_text().strip() for p in Path(lab.root, "testnet").glob("node*/admin.token")]
    secrets += [k.secret().hex() for k in read_accounts(lab.accounts_file)]
    for run_id in RunStore(state).ids():
        text = RunStore(state).dir(run_id).journal.read_text()
        assert not any(s in text for s in secrets)


def test_lab_down_removes_everything_it_started(shared_lab: SharedLab, lab: lab_mod.LabState) -> None:
    """Last on the shared lab: `iotex-ops lab down` leaves no process, port or file behind."""
    footprint = shared_lab.footprint or lab_checks.check_up(lab)
    lab_checks.check_gone(footprint)
    shared_lab.down()
