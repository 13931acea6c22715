"""The flood drill on the shared local lab, through the CLI as an operator runs it: `iotex-ops runbook run flood`.
It floods the last delegate for 10 s under 20 honest transfers a second and must pass every promise of the
drill (iotex_ops/flood/plan.judge): the measures it journals are the figures bench/flood.py prints. The lab is
left as it was found (the spam is final, the forged peers' bans are of throwaway keys)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from iotex_ops.flood import judge
from tests.ops.conftest import SharedLab
from tests.ops.drill_lab import chains, dump, ops, result_json

pytestmark = [
    pytest.mark.slow,
    pytest.mark.network,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="the lab needs the Debian prometheus package"),
]


def test_the_flood_drill_passes_on_the_lab(shared_lab: SharedLab, tmp_path: Path) -> None:
    lab = shared_lab.get()
    root = Path(lab.root)
    res = ops(
        ["runbook", "run", "flood", "--yes", "--json", "-e", "flood_s=10", "-e", "baseline_s=8", "-e", "tail_s=1"],
        root,
        tmp_path / "state",
        timeout=400,
    )
    doc = result_json(res)
    m = doc["measures"]
    assert doc["result"] == "passed", dump(res)
    assert m["host"] == lab.nodes[-1].name
    assert all(c.ok for c in judge(m)), [c.as_dict() for c in judge(m) if not c.ok]
    # every kind of attack ran and was answered the way the node promises
    statuses = {int(k): v for k, v in m["statuses"].items()}
    assert statuses.get(429, 0) > 0 and statuses.get(400, 0) > 0 and statuses.get(413, 0) > 0, statuses
    assert m["p2p_dropped"] > 0 and m["slow_held_s"] <= 10 + 5
    assert m["count_429"] == statuses.get(429, 0)
    # the lab is healthy and in agreement afterwards
    after = chains(lab)
    assert len({c["finalized_height"] for c in after}) <= 2 and not any(c["paused"] for c in after)
