"""The failover drill's partition mode on the netns lab (root): `iotex-ops lab up --hosts netns --standby node3`
gives node3's hot standby a network namespace of its own; `iotex-ops runbook run failover -e mode=partition`
cuts node3's primary off every peer (the standby too) while it runs, promotes the standby, demotes the cut-off
primary before healing, and proves that no height was signed by both holders of the key. Then the key goes
back the same way (the standby's host, by then the primary, cut off in its own namespace). With
`demote_before_heal=false` the cut-off node is healed without being told and must demote itself (the node's
own guard: the holder claim and the double-sign check after a silence, docs/node.md "Hot standby"). `lab down`
removes the standby's namespace with the others.

Run it beside another netns lab with IOTEX_OPS_NETNS_PREFIX / IOTEX_OPS_NETNS_SUBNET (docs/lab.md)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from iotex_ops.lab import lab as lab_mod
from iotex_ops.nodeapi import NodeClient
from tests.ops import lab_checks
from tests.ops.conftest import SharedLab
from tests.ops.drill_lab import dump, lab_up, ops, result_json

pytestmark = [
    pytest.mark.slow,
    pytest.mark.network,
    pytest.mark.skipif(os.geteuid() != 0, reason="netns hosts need root"),
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="the lab needs the Debian prometheus package"),
]

DELEGATE = "node3"
STANDBY = lab_mod.standby_name(DELEGATE)


@pytest.fixture(scope="module")
def lab(shared_lab: SharedLab) -> Iterator[lab_mod.LabState]:
    shared_lab.down()  # one lab's scheduler per network name and state: the shared local lab goes first
    yield from lab_up("netns", "fpn", "--standby", DELEGATE)  # lab down (namespaces included) even on failure


def _netns_of(lab: lab_mod.LabState, address: str) -> str:
    assert lab.netns is not None
    return next(str(h["netns"]) for h in lab.netns["hosts"] if h["address"] == address)


def _in_netns(netns: str, *cmd: str) -> str:
    return subprocess.run(["ip", "netns", "exec", netns, *cmd], capture_output=True, text=True, timeout=10, check=True).stdout


def _wait_standby_in_step(lab: lab_mod.LabState, url: str) -> None:
    c = NodeClient(url, name=STANDBY)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        top = max(NodeClient(n.api_url).chain().finalized_height for n in lab.nodes)
        info = c.try_chain(timeout=1.0)
        if info is not None and info.standby and info.finalized_height >= top - 1:
            return
        time.sleep(0.3)
    pytest.fail(f"{url} did not answer as a standby in step within 60 s")


def _partition(lab: lab_mod.LabState, state: Path, *args: str) -> dict[str, Any]:
    args = ("runbook", "run", "failover", "--yes", "--json", "-e", "mode=partition", *args)
    res = ops(list(args), Path(lab.root), state, timeout=400)
    doc = result_json(res)
    assert doc["result"] == "passed", dump(res)
    return dict(doc["measures"])


def _check_healed(lab: lab_mod.LabState, address: str) -> None:
    netns = _netns_of(lab, address)
    assert _in_netns(netns, "ip", "route", "show", "type", "blackhole").strip() == ""
    # read from /proc: sysctl is in /usr/sbin, not on every PATH the suite runs with (CI's `env -i` has none)
    assert _in_netns(netns, "cat", "/proc/sys/net/ipv4/conf/all/rp_filter").strip() == "0"


def test_the_standby_has_a_namespace_host_of_its_own_in_group_standbys(lab: lab_mod.LabState) -> None:
    assert [s.name for s in lab.standbys] == [STANDBY] and lab.netns is not None
    assert len(lab.netns["hosts"]) == 5 and lab.netns["prefix"] == lab_mod.netns_prefix()
    sb = lab.standbys[0]
    assert sb.host == lab.netns["hosts"][4]["address"] and sb.host not in {n.host for n in lab.nodes}
    inv = yaml.safe_load(Path(lab.inventory).read_text())["all"]["children"]
    hv = inv[lab_mod.STANDBYS_GROUP]["hosts"][STANDBY]
    assert hv["ansible_host"] == sb.host and hv["node_role"] == "standby" and hv["node_standby_of"] == DELEGATE
    # installed by node.yml as the delegates are: reached over SSH in its namespace, its API behind its proxy
    _wait_standby_in_step(lab, sb.api_url)


def test_a_partitioned_primary_is_replaced_and_comes_back_as_the_standby(lab: lab_mod.LabState, tmp_path: Path) -> None:
    m = _partition(lab, tmp_path / "state", "-e", f"delegate={DELEGATE}", "-e", "tps=100")
    print(f"\nfailover (partition, 100 tps): {m}")
    assert (m["old_primary"], m["new_primary"]) == (DELEGATE, STANDBY)
    assert m["double_signed_heights"] == 0
    assert m["time_to_signing_s"] is not None and m["time_to_signing_s"] <= 10.0
    assert m["missed_slots"] is not None and m["missed_slots"] <= 2
    assert m["lost_actions"] == 0 and m["accepted_actions"] > 100, m.get("load")
    assert m["first_signed_height"] >= m["fence"] > m["fault_height"]
    assert m["old_primary_demoted_by"] == "drill" and m["partitioned_s"] > 0
    assert sorted(m["cut_peers"]) == sorted([n.host for n in lab.nodes if n.name != DELEGATE] + [lab.standbys[0].host])
    node3 = next(n for n in lab.nodes if n.name == DELEGATE)
    assert NodeClient(node3.api_url).chain().standby  # the old primary is the standby now
    assert NodeClient(lab.standbys[0].api_url).chain().standby is False
    _check_healed(lab, node3.host)


def test_the_key_goes_back_by_a_partition_of_the_standby_s_host(lab: lab_mod.LabState, tmp_path: Path) -> None:
    """The standby's host is the primary now: cut off in its own namespace, replaced by node3, demoted and
    healed; still no height signed twice."""
    m = _partition(lab, tmp_path / "state", "-e", f"delegate={DELEGATE}")
    print(f"\nfailover (partition back): {m}")
    assert (m["old_primary"], m["new_primary"]) == (STANDBY, DELEGATE)
    assert m["double_signed_heights"] == 0 and m["old_primary_demoted_by"] == "drill"
    assert m["time_to_signing_s"] is not None and m["time_to_signing_s"] <= 10.0
    assert NodeClient(lab.standbys[0].api_url).chain().standby
    _check_healed(lab, lab.standbys[0].host)


def test_a_partition_healed_without_a_demotion_relies_on_the_node_s_guard(lab: lab_mod.LabState, tmp_path: Path) -> None:
    """`demote_before_heal=false`: the cut-off primary is healed without being told and must demote itself when
    it hears its successor's later fence (or finds its key signed where it held its signatures), with no height
    signed by both. The drill's rollback puts the roles
    back when it fails."""
    m = _partition(lab, tmp_path / "state", "-e", f"delegate={DELEGATE}", "-e", "demote_before_heal=false")
    print(f"\nfailover (partition, no demotion before the heal): {m}")
    assert m["double_signed_heights"] == 0 and m["old_primary_demoted_by"] == "itself"
    _check_healed(lab, next(n.host for n in lab.nodes if n.name == DELEGATE))


def test_lab_down_removes_the_standby_s_namespace_with_the_others(lab: lab_mod.LabState) -> None:
    names = [n.name for n in [*lab.nodes, *lab.standbys]]
    pids = [p for p in (lab.node_pid(n) for n in names) if p is not None]
    assert len(pids) == 5
    prefix = str(lab.netns["prefix"]) if lab.netns else ""
    assert len(lab_checks.netns_leftovers(prefix)) >= 5
    lab_checks.check_gone(lab_checks.Footprint(Path(lab.root), "netns", pids, set(), prefix))
