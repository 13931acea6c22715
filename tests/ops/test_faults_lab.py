"""The fault drills on the shared local lab (tests/ops/conftest.py), with the lab's own alertd, Prometheus,
Alertmanager and PagerDuty receiver: fault-kill and fault-freeze pass with their figures, and a second
delegate killed during fault-freeze is a stop condition that ends the freeze at once.

Each test starts from a quiet lab (every delegate healthy, no alert firing) and leaves it so. Faults are kept
short: the three together cost about a minute on top of the shared lab."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from iotex_ops import network
from iotex_ops.cli import main
from iotex_ops.errors import OpsError
from iotex_ops.faults import core, gameday
from iotex_ops.lab import lab as lab_mod
from iotex_ops.lab import ops_services
from iotex_ops.runbook import Engine, RunResult, loader
from iotex_ops.runbook import journal as journal_mod
from iotex_ops.runbook.store import RunStore
from tests.ops.conftest import SharedLab

pytestmark = [
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="the lab needs the Debian prometheus package"),
    pytest.mark.network,
    pytest.mark.slow,
]


@pytest.fixture(scope="module")
def lab(shared_lab: SharedLab) -> lab_mod.LabState:
    return shared_lab.get()


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run store for the module: the last test's game-day report reads the others' runs."""
    return tmp_path_factory.mktemp("gameday-state")


@pytest.fixture
def net(lab: lab_mod.LabState) -> Iterator[network.Network]:
    with network.load(lab.inventory) as n:
        quiet(lab, n)
        yield n
        quiet(lab, n)


def quiet(lab: lab_mod.LabState, net: network.Network, timeout: float = 90) -> None:
    """Every delegate healthy, no alert firing on one and no page open (the previous test's have resolved)."""
    gameday.wait_quiet(net, timeout)


def run(lab: lab_mod.LabState, state: Path, name: str, **params: Any) -> RunResult:
    with network.load(lab.inventory) as n:
        return Engine(RunStore(state), yes=True, report=False).run(loader.find(name), n, params)


def marks(res: RunResult, name: str) -> list[dict[str, Any]]:
    return [e for e in journal_mod.read(res.run_dir / "journal.jsonl") if e["event"] == "mark" and e.get("name") == name]


def figures(res: RunResult) -> str:
    m = res.measures
    return ", ".join(f"{k}={m.get(k)}" for k in core.FIGURES) + f", escalated={m.get('escalated')}, route={m.get('page_route')}"


def test_fault_kill_is_detected_paged_and_remediated_by_alertd(lab: lab_mod.LabState, net: network.Network, state: Path) -> None:
    res = run(lab, state, "fault-kill", seed=7, tps=5)
    assert res.result == "passed", res.error
    m = res.measures
    print(f"\nfault-kill on {m['victims']}: {figures(res)}")
    (choice,) = marks(res, "victims")
    expected = core.choose_victims([d.name for d in net.delegates], [d.name for d in net.delegates], seed=7).victims
    assert tuple(choice["victims"]) == expected and choice["seed"] == 7 and m["victims"] == list(expected)
    # every moment seen, in order, within generous bounds (a busy 2-core machine)
    assert m["time_to_detect_s"] is not None and m["time_to_detect_s"] < 20
    assert m["time_to_page_s"] is not None and m["time_to_page_s"] >= m["time_to_detect_s"] - 1
    assert m["time_to_acknowledge_s"] is not None and m["time_to_recover_s"] is not None and m["time_to_recover_s"] < 60
    assert m["timeline"][0]["key"] == "fault" and {"alert", "page", "remediation", "recovered"} <= {
        r["key"] for r in m["timeline"]
    }
    assert m["pages"] and all(p["drill_route"] for p in m["pages"]) and m["page_route"].startswith("drill route")
    assert m["remediations"] and m["remediations"][0]["runbook"] == "restart-node"
    assert m["escalated"] is False and m["missed_slots"] is not None
    if m["load"] is not None:
        assert m["lost_actions"] == 0, m["load"]


def test_fault_freeze_passes_with_its_figures(lab: lab_mod.LabState, net: network.Network, state: Path) -> None:
    res = run(lab, state, "fault-freeze", host="node1", freeze_s=12, tps=0)
    assert res.result == "passed", res.error
    m = res.measures
    print(f"\nfault-freeze on node1: {figures(res)}")
    assert m["victims"] == ["node1"] and m["time_to_detect_s"] is not None and m["time_to_recover_s"] is not None
    assert m["time_to_recover_s"] < 60 and m["pages"] and all(p["drill_route"] for p in m["pages"])
    assert not net.delegate("node1").service_status().frozen
    assert marks(res, "fault_ended")


def test_a_second_delegate_killed_during_a_freeze_stops_the_drill_and_ends_the_freeze(
    lab: lab_mod.LabState, net: network.Network, state: Path
) -> None:
    # alertd would kill and restart the frozen victim before the stop condition shows; without it, the only
    # way the victim continues is the drill's own SIGCONT
    ops_services.stop_alertd(Path(lab.root))
    victim, other = net.delegate("node2"), net.delegate("node3")
    pid = victim.service_status().pid
    out: dict[str, RunResult] = {}
    t = threading.Thread(target=lambda: out.setdefault("res", run(lab, state, "fault-freeze", host="node2", freeze_s=60, tps=0)))
    try:
        t.start()
        deadline = time.monotonic() + 30
        while not victim.service_status().frozen:
            assert time.monotonic() < deadline and t.is_alive(), "the victim was never frozen"
            time.sleep(0.1)
        other_pid = lab.node_pid("node3")
        assert other_pid is not None
        t0 = time.monotonic()
        os.kill(other_pid, signal.SIGKILL)  # two of four out: no quorum
        t.join(timeout=60)
        took = time.monotonic() - t0
        assert not t.is_alive()
    finally:
        with contextlib.suppress(ProcessLookupError, TypeError):
            os.kill(pid or -1, signal.SIGCONT)
        # alertd first: Alertmanager's notification about node3 then reaches a running alertd while node3 is
        # down (a page, a restart-node that finds it starting or healthy, the page resolved) instead of a retry
        # landing later, for an alert already resolved, in the middle of the next test
        ops_services.restart_alertd(lab)
        time.sleep(2)
        with contextlib.suppress(OpsError):
            other.service("start")
    res = out["res"]
    print(f"\nstopped {took:.1f}s after the second kill: {res.measures.get('stopped_by')}")
    assert res.result == "failed" and "stop condition" in str(res.error)
    stopped_by = str(res.measures["stopped_by"])
    assert "stopped finalizing" in stopped_by or "on node3" in stopped_by
    st = victim.service_status()
    assert st.pid == pid and not st.frozen  # the same process, continued by the drill
    assert marks(res, "stop_condition") and marks(res, "fault_ended")
    assert took < 30


def test_gameday_run_and_its_report_with_every_figure_and_the_trend(
    lab: lab_mod.LabState, net: network.Network, state: Path
) -> None:
    env = {"HOME": os.environ.get("HOME", "/tmp"), "LC_ALL": "C.UTF-8"}
    argv = [
        "gameday",
        "run",
        "-i",
        lab.inventory,
        "--fault",
        "fault-kill",
        "--seed",
        "10",
        "-e",
        "tps=0",
        "--state-dir",
        str(state),
    ]
    res = CliRunner().invoke(main, [*argv, "--json"], env=env)
    assert res.exit_code == 0, res.output
    (row,) = json.loads(res.output)["runs"]
    assert row["fault"] == "fault-kill" and row["result"] == "passed" and row["victims"] == ["node0"]
    assert row["time_to_detect_s"] is not None and row["time_to_recover_s"] is not None
    print(f"\ngameday run: {row}")
    rep = CliRunner().invoke(main, ["gameday", "report", "--state-dir", str(state), "--json"], env=env)
    assert rep.exit_code == 0, rep.output
    doc = json.loads(rep.output)
    by = {s["fault"]: s for s in doc["faults"]}
    assert by["fault-kill"]["runs"] == 2 and by["fault-kill"]["passed"] == 2
    assert by["fault-freeze"]["runs"] == 2 and by["fault-freeze"]["passed"] == 1  # one stopped by the second kill
    kill = by["fault-kill"]
    assert kill["figures"]["time_to_detect_s"]["runs"] == 2 and len(kill["figures"]["time_to_recover_s"]["trend"]) == 2
    assert {"fault", "alert", "page", "remediation", "recovered"} <= {r["key"] for r in kill["last"]["timeline"]}
    assert by["fault-freeze"]["last"]["stopped_by"]
    page = Path(doc["files"]["html"]).read_text()
    assert "fault-kill" in page and "victim finalizing again" in page and "drill route" in page
