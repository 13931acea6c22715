"""The drills on the netns lab: real SSH hosts that a test can cut off the network (link down)."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from iotex_ops.lab import lab as lab_mod
from iotex_ops.runbook import journal as journal_mod
from iotex_ops.runbook.store import RunStore
from tests.ops import lab_checks
from tests.ops.conftest import SharedLab
from tests.ops.drill_lab import chains, count, dump, lab_up, ops, result_json, spawn, wait_event

pytestmark = [
    pytest.mark.slow,
    pytest.mark.network,
    pytest.mark.skipif(os.geteuid() != 0, reason="netns hosts need root"),
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="the lab needs the Debian prometheus package"),
]


@pytest.fixture(scope="module")
def lab(shared_lab: SharedLab) -> Iterator[lab_mod.LabState]:
    shared_lab.down()  # one lab's scheduler per network name and state: the shared local lab goes first
    yield from lab_up("netns", "drn")


FOOTPRINT: dict[str, lab_checks.Footprint] = {}


def test_the_netns_lab_is_up_over_ssh_and_a_second_site_run_changes_nothing(lab: lab_mod.LabState) -> None:
    FOOTPRINT["lab"] = lab_checks.check_up(lab)


def test_the_flood_drill_passes_through_the_api_proxy_which_answers_the_429s(lab: lab_mod.LabState, tmp_path: Path) -> None:
    """The netns lab's delegates serve their public API through the api_proxy role's nginx: the flood drill,
    run once through it (its attackers from the bridge's extra addresses, the honest load from the
    controller's), passes, and 429s with Retry-After came from the proxy (its X-Api-Proxy header)."""
    from iotex_ops import network
    from iotex_ops.flood import judge
    from iotex_ops.nodeapi import NodeClient

    assert all(n.api_url.endswith(f":{lab_mod.NETNS_PROXY_PORT}") for n in lab.nodes)
    res = ops(
        ["runbook", "run", "flood", "--yes", "--json", "-e", "flood_s=10", "-e", "baseline_s=8", "-e", "tail_s=1"],
        Path(lab.root),
        tmp_path / "state",
        timeout=400,
    )
    doc = result_json(res)
    m = doc["measures"]
    assert doc["result"] == "passed", dump(res)
    assert all(c.ok for c in judge(m)), [c.as_dict() for c in judge(m) if not c.ok]
    assert m["proxy_429"] > 0 and m["retry_after_missing"] == 0, m["statuses"]
    assert m["refused_honest"].get("rate_limited", 0) == 0, m["refused_honest"]
    # the toolkit reaches the public API through the proxy, the node's own API and admin channel directly
    with network.load(lab.inventory) as net:
        d = net.delegates[-1]
        assert d.api_url == lab.nodes[-1].api_url and d.node_api_url.endswith(f":{lab_mod.NETNS_API_PORT}")
        assert NodeClient(d.node_api_url).chain(timeout=3).name == d.name
        assert d.admin("status")["pid"]


def _prefix() -> str:
    return lab_mod.netns_prefix()  # the lab's ($IOTEX_OPS_NETNS_PREFIX, else the default)


def _link(i: int, up: bool) -> None:
    subprocess.run(["ip", "link", "set", f"{_prefix()}{i}h", "up" if up else "down"], check=True, timeout=10)


def test_a_host_cut_off_during_a_rolling_upgrade_stops_the_run_and_is_rolled_back_when_it_returns(
    lab: lab_mod.LabState, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    root = Path(lab.root)
    start_height = max(c["finalized_height"] for c in chains(lab))
    run = spawn(["runbook", "run", "hotfix-compatible", "-e", "version=0.1.1", "--yes", "--json"], root, state)
    cut = 2
    try:
        # node1 is being upgraded: cut node2's host off before its turn; bring it back once its step failed
        wait_event(state, lambda e: e["event"] == "step_start" and e.get("step") == "upgrade" and e.get("host") == "node1")
        _link(cut, up=False)
        wait_event(state, lambda e: e["event"] == "step_end" and e.get("host") == "node2" and e.get("ok") is False, timeout=180)
        # the rollback waits for the host: it is still unreachable a few seconds later
        time.sleep(4)
        _link(cut, up=True)
        assert run.wait(timeout=300) == 1  # failed, rolled back; not 3 (a failed rollback)
    finally:
        _link(cut, up=True)
        if run.poll() is None:
            run.kill()
            run.wait(timeout=30)
    run_id = RunStore(state).ids()[0]
    events = journal_mod.read(RunStore(state).dir(run_id).journal)
    end = events[-1]
    assert end["event"] == "run_end" and end["result"] == "failed", end
    assert "node2" in end["error"]
    # node2 was rolled back (once it was reachable), node0 and node1 kept the release, node3 never got it
    assert [(e["step"], e["host"], e["ok"]) for e in events if e["event"] == "rollback_end"] == [("upgrade", "node2", True)]
    assert count(events, "step_start", "upgrade", "node3") == 0
    versions = {c["name"]: c["node_version"] for c in chains(lab)}
    assert versions == {"node0": "0.1.1", "node1": "0.1.1", "node2": "0.1.0", "node3": "0.1.0"}
    # the chain never stopped finalizing: 3 of 4 delegates carry it while node2 is cut off
    from iotex_ops.nodeapi import NodeClient

    client = NodeClient(lab.nodes[0].api_url, name="node0")
    tip = client.chain().finalized_height
    stamps = [b.timestamp_ms for b in client.blocks(start_height, tip)]
    gaps = [(b - a) / 1000 for a, b in itertools.pairwise(stamps)]
    assert tip - start_height > 20 and max(gaps) < 5.0, gaps
    # the report shows it
    report = json.loads((state / "runs" / run_id / "report.json").read_text())
    assert any(r["host"] == "node2" and r["ok"] for r in report["rollbacks"])


def test_the_rehearsal_passes_over_ssh_on_the_netns_lab(lab: lab_mod.LabState, tmp_path: Path) -> None:
    # first-aid and hotfix-compatible do nothing over SSH that the drills here and the cut-off test above do
    # not (the local lab runs all five): the suite's 15-minute budget
    drills = ["bootstrap", "hotfix-incompatible", "rollback-recovery"]
    args = ["rehearsal", "--hosts", "netns", "--json", *(a for d in drills for a in ("--drill", d))]
    res = ops(args, Path(lab.root), tmp_path / "state", timeout=900)
    assert res.returncode == 0, dump(res)
    doc = result_json(res)
    assert [d["name"] for d in doc["drills"]] == drills
    assert all(d["result"] == "passed" for d in doc["drills"]), json.dumps(doc["drills"], indent=1)[:3000]
    assert {c["node_version"] for c in chains(lab)} == {"0.2.0"}


def test_fault_partition_cuts_a_delegate_off_its_peers_and_it_catches_up_when_healed(
    lab: lab_mod.LabState, tmp_path: Path
) -> None:
    """fault-partition (blackhole routes in the victim's namespace): the chain goes on with the other three,
    the victim falls behind while cut off, and finalizes with them again once the routes are gone."""
    res = ops(
        ["runbook", "run", "fault-partition", "--yes", "--json", "-e", "host=node1", "-e", "partition_s=6", "-e", "tps=0"],
        Path(lab.root),
        tmp_path / "state",
        timeout=300,
    )
    doc = result_json(res)
    assert doc["result"] == "passed", dump(res)
    m = doc["measures"]
    assert m["victims"] == ["node1"], m
    assert m["time_to_recover_s"] is not None and m["time_to_recover_s"] < 30, m
    # healed: no blackhole route is left in its namespace, and it is in step with the others
    routes = subprocess.run(
        ["ip", "netns", "exec", f"{_prefix()}1", "ip", "route", "show", "type", "blackhole"],
        capture_output=True, text=True, timeout=10, check=True,
    ).stdout  # fmt: skip
    assert routes.strip() == "", routes
    tips = {c["name"]: c["finalized_height"] for c in chains(lab)}
    assert max(tips.values()) - tips["node1"] <= 2, tips


def test_lab_down_removes_the_namespaces_and_everything_it_started(lab: lab_mod.LabState) -> None:
    lab_checks.check_gone(FOOTPRINT.get("lab") or lab_checks.check_up(lab))
