"""`iotex-ops lab up|status|down` in both host modes: real playbooks, real nodes, real Prometheus."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_api_client import PrometheusConnect

from iotex_ops.ansible import run_playbook
from iotex_ops.cli import main
from iotex_ops.lab import lab as lab_mod

pytestmark = [
    pytest.mark.slow,
    pytest.mark.network,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="Debian package prometheus is not installed"),
]

STATUS_FIELDS = {"name", "host", "pid", "height", "finalized_height", "version", "protocol", "peers", "paused", "halted",
                 "last_block_age_s", "up"}  # fmt: skip


def _secrets(root: Path) -> list[str]:
    out = []
    for home in (root / "testnet").glob("node*"):
        out.append((home / "keystore.pass").read_text().strip())
        out.append((home / "admin.token").read_text().strip())
        out.append(json.loads((home / "node_key.json").read_text())["secret"])
    return out


def _logs_and_artifacts(root: Path) -> list[Path]:
    files = [p for p in (root / "runs").rglob("*") if p.is_file()]
    files += [p for p in (root / "hosts").rglob("*.log") if p.is_file()]
    return files


def _listening_ports() -> set[int]:
    out = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=True).stdout
    return {int(line.split()[3].rsplit(":", 1)[1]) for line in out.splitlines() if line.strip()}


def _check_lab(root: Path, mode: str) -> None:
    runner = CliRunner()
    env = {"IOTEX_OPS_LAB_DIR": str(root), "COLUMNS": "200"}
    res = runner.invoke(main, ["lab", "up", "--delegates", "4", "--hosts", mode, "--json"], env=env)
    try:
        assert res.exit_code == 0, res.output
        state = lab_mod.load_state(root)
        assert state is not None and state.mode == mode
        doc = json.loads(runner.invoke(main, ["status", "--json"], env=env).output)
        rows = doc["delegates"]
        assert len(rows) == 4 and all(set(r) >= STATUS_FIELDS for r in rows)
        assert all(r["up"] and r["finalized_height"] >= 1 and r["pid"] for r in rows), rows
        prom = PrometheusConnect(url=state.prometheus_url, disable_ssl=True)
        up = prom.custom_query('up{job="iotex-node"}')
        assert sorted(r["metric"]["delegate"] for r in up if r["value"][1] == "1") == ["node0", "node1", "node2", "node3"]
        checked = runner.invoke(main, ["inventory", "check", "-i", state.inventory], env=env)
        assert checked.exit_code == 0 and "ok" in checked.output, checked.output
        ran = runner.invoke(main, ["exec", "-i", state.inventory, "--limit", "delegates", "--json", "echo reached"], env=env)
        assert ran.exit_code == 0, ran.output
        hosts_seen = json.loads(ran.output)["hosts"]
        assert sorted(h["host"] for h in hosts_seen) == [f"node{i}" for i in range(4)]
        assert all(h["exit_code"] == 0 and h["stdout"].strip() == "reached" for h in hosts_seen)
        again = runner.invoke(main, ["lab", "up", "--delegates", "4", "--hosts", mode], env=env)
        assert again.exit_code == 2 and "already up" in again.output
        if mode == "netns":
            second = run_playbook("site.yml", Path(state.inventory), runs_dir=root / "runs")
            assert second.ok and sum(second.changed.values()) == 0, second.changed
        leaked = [(p, s[:6]) for p in _logs_and_artifacts(root) for s in _secrets(root) if s in p.read_text(errors="replace")]
        assert not leaked, f"secrets found in logs or artifacts: {leaked}"
        assert all(s not in repr(state) for s in _secrets(root))
        ports = {int(n.api_url.rsplit(":", 1)[1]) for n in state.nodes} | {
            int(state.prometheus_url.rsplit(":", 1)[1]),
            int(state.alertmanager_url.rsplit(":", 1)[1]),
        }
        pids = [state.node_pid(n.name) for n in state.nodes]
    finally:
        down = runner.invoke(main, ["lab", "down"], env=env)
    assert down.exit_code == 0, down.output
    assert not root.exists()
    assert not any(p is not None and os.path.exists(f"/proc/{p}") for p in pids)
    if mode == "local":
        assert not (ports & _listening_ports())
    else:
        assert "ioxlab" not in subprocess.run(["ip", "link"], capture_output=True, text=True, check=True).stdout
        assert subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout.strip() == ""


@pytest.fixture
def short_root() -> Iterator[Path]:
    """A short lab directory: supervisord's unix socket path inside it must stay under 108 bytes."""
    d = Path(tempfile.mkdtemp(prefix="lab", dir="/tmp"))
    yield d / "lab"
    lab_mod.down(d / "lab")
    shutil.rmtree(d, ignore_errors=True)


def test_local_lab_comes_up_finalizes_shows_in_status_and_prometheus_and_goes_away(short_root: Path) -> None:
    _check_lab(short_root, "local")


def test_a_lab_dir_too_long_for_unix_sockets_is_refused_before_anything_starts(tmp_path: Path) -> None:
    root = tmp_path / ("x" * 80)
    res = CliRunner().invoke(main, ["lab", "up", "--dir", str(root)])
    assert res.exit_code == 2 and "too long" in res.output and not root.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="netns hosts need root")
def test_netns_lab_over_ssh_is_idempotent_and_leaves_nothing_behind(short_root: Path) -> None:
    _check_lab(short_root, "netns")
