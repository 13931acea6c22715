"""`iotex-ops load run` on the lab: 20 s at 300 TPS, the report's fields present and consistent.

Shares the lab of the other lab test modules (tests/ops/conftest.py) and leaves it healthy: the load's
accounts are new ones, paid by the lab's funded accounts, and every action it sends is final before it ends.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from iotex_ops.lab import lab as lab_mod
from iotex_ops.traffic.report import consistency_problems
from tests.ops.conftest import SharedLab

pytestmark = [
    pytest.mark.slow,
    pytest.mark.network,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="the lab needs the Debian prometheus package"),
]


@pytest.fixture(scope="module")
def lab(shared_lab: SharedLab) -> lab_mod.LabState:
    return shared_lab.get()


def test_a_load_run_on_the_lab_reports_consistent_figures(lab: lab_mod.LabState, tmp_path: Path) -> None:
    env = {**os.environ, "IOTEX_OPS_LAB_DIR": lab.root, "IOTEX_OPS_STATE_DIR": str(tmp_path / "state"), "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "iotex_ops.cli", "load", "run", "--tps", "300", "--duration", "20", "--seed", "15"]
    cmd += ["--mix", "transfer=90,stake=10", "--report", str(tmp_path / "report"), "--json"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:] + res.stdout[-3000:]
    doc = json.loads(res.stdout)
    full = json.loads((tmp_path / "report" / "load.json").read_text())

    for key in ("offered", "accepted", "refused", "refused_by_reason", "finalized", "lost", "finalized_tps", "drop_rate",
                "latency_s", "block_interval_s", "nodes", "versions", "seed", "mix", "resources_from"):  # fmt: skip
        assert key in doc, key
    assert consistency_problems(doc) == [] and doc["problems"] == []
    assert doc["finalized"] <= doc["accepted"] <= doc["offered"]
    assert 0.9 * 300 * 20 <= doc["offered"] <= 300 * 20 + doc["batch"]  # a steady rate, whatever the answers
    assert doc["lost"] == 0 and doc["finalized"] == doc["accepted"]  # drained: every accepted action final
    lat = doc["latency_s"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"] < 30
    assert doc["finalized_tps"] is not None and 150 < doc["finalized_tps"] < 450  # from the chain's blocks
    assert 0 < doc["block_interval_s"]["p50"] <= doc["block_interval_s"]["max"]
    assert doc["seed"] == 15 and doc["mix"] == {"transfer": 90, "stake": 10}
    assert set(doc["nodes"]) == {n.name for n in lab.nodes}
    for n in doc["nodes"].values():
        assert n["version"] and n["cpu_percent"] is not None and n["cpu_percent"] > 0 and n["rss_mib"] > 10
    assert doc["versions"] and "Prometheus" in doc["resources_from"]
    series = full["series"]
    assert len(series["offered_tps"]) >= 15 and len(series["finalized_tps"]) >= 15 and series["latency_p99_s"]
    page = (tmp_path / "report" / "load.html").read_text()
    assert page.count("<svg") == 2 and "<script" not in page
