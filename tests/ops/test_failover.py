"""The failover drill on the shared local lab, through the CLI as an operator runs it: `iotex-ops runbook run
failover`. A hot standby of node3 is added to the lab for this module only (`lab.add_standby`: one playbook run on
that host; the other modules' lab is not slowed down) and removed afterwards, with node3 signing again.

Under 300 transfers a second: node3's primary killed with SIGKILL, the standby promoted; it must sign within the
target (10 s), the delegate miss at most 2 proposer slots, no accepted transfer be lost, and no height be signed
by both holders of the key (from every block's certificate and both nodes' signing records). A run that fails
(an impossible target) rolls back to the roles it found. Then a planned switchover hands the key back to node3,
checked the same way."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from iotex_ops.lab import lab as lab_mod
from iotex_ops.nodeapi import NodeClient
from tests.ops.conftest import SharedLab
from tests.ops.drill_lab import dump, ops, result_json

pytestmark = [
    pytest.mark.slow,
    pytest.mark.network,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="the lab needs the Debian prometheus package"),
]

DELEGATE = "node3"


@pytest.fixture(scope="module")
def standby_lab(shared_lab: SharedLab) -> Iterator[lab_mod.LabState]:
    lab = shared_lab.get()
    root = Path(lab.root)
    node = lab_mod.add_standby(DELEGATE, root)
    try:
        c = NodeClient(node.api_url, name=node.name)
        top = max(NodeClient(n.api_url).chain().finalized_height for n in lab.nodes)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            info = c.try_chain(timeout=1.0)
            if info is not None and info.standby and info.finalized_height >= top:
                break
            time.sleep(0.3)
        else:
            pytest.fail(f"{node.name} did not catch up as a standby within 60 s")
        state = lab_mod.load_state(root)
        assert state is not None
        yield state
    finally:
        # leave node3 signing for the other modules: a switchover back if the standby holds the key
        info = NodeClient(node.api_url).try_chain(timeout=2.0)
        if info is not None and not info.standby:
            ops(["runbook", "run", "failover", "--yes", "-e", "mode=switchover"], root, root.parent / "fo-back", timeout=120)
        lab_mod.remove_standby(node.name, root)


def _run(root: Path, state: Path, *args: str) -> dict[str, Any]:
    res = ops(["runbook", "run", "failover", "--yes", "--json", *args], root, state, timeout=300)
    doc = result_json(res)
    assert doc["result"] == "passed", dump(res)
    return dict(doc["measures"])


def test_failover_under_load_signs_in_time_and_never_twice(standby_lab: lab_mod.LabState, tmp_path: Path) -> None:
    root = Path(standby_lab.root)
    m = _run(root, tmp_path / "state", "-e", f"delegate={DELEGATE}", "-e", "tps=300")
    print(f"\nfailover (kill, 300 tps): {m}")
    assert (m["old_primary"], m["new_primary"]) == (DELEGATE, lab_mod.standby_name(DELEGATE))
    assert m["double_signed_heights"] == 0
    assert m["time_to_signing_s"] is not None and m["time_to_signing_s"] <= 10.0
    assert m["missed_slots"] is not None and m["missed_slots"] <= 2
    assert m["lost_actions"] == 0 and m["accepted_actions"] > 300, m.get("load")
    assert m["first_signed_height"] >= m["fence"] > m["fault_height"]
    # a run that fails (an impossible target) rolls back to the roles before it: the standby host signs again
    impossible = ["runbook", "run", "failover", "--yes", "--json", "-e", "sign_within_s=0.001"]
    res = ops(impossible, root, tmp_path / "state", timeout=300)
    failed = result_json(res)
    assert res.returncode == 1 and failed["result"] == "failed", dump(res)
    standby_node = next(n for n in standby_lab.standbys if n.name == lab_mod.standby_name(DELEGATE))
    node3 = next(n for n in standby_lab.nodes if n.name == DELEGATE)
    assert NodeClient(standby_node.api_url).chain().standby is False and NodeClient(node3.api_url).chain().standby is True
    # the old primary came back as the standby; a planned switchover gives node3 the key again
    back = _run(root, tmp_path / "state", "-e", f"delegate={DELEGATE}", "-e", "mode=switchover")
    print(f"switchover back: {back}")
    assert (back["old_primary"], back["new_primary"]) == (lab_mod.standby_name(DELEGATE), DELEGATE)
    assert back["double_signed_heights"] == 0 and back["missed_slots"] <= 2
    assert NodeClient(node3.api_url).chain().standby is False
