"""What `iotex-ops lab up|status|down` must show, checked on the labs the lab test modules share (a lab costs
~30 s to bring up: the suite brings up one local and one netns lab, through the CLI, and checks them here)."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from iotex_ops.ansible import run_playbook
from iotex_ops.cli import main
from iotex_ops.lab import lab as lab_mod
from iotex_ops.prom import Prometheus

STATUS_FIELDS = {"name", "host", "pid", "height", "finalized_height", "version", "protocol", "peers", "paused", "halted",
                 "last_block_age_s", "up"}  # fmt: skip


def _env(root: Path) -> dict[str, str]:
    return {"IOTEX_OPS_LAB_DIR": str(root), "COLUMNS": "200"}


def cli_up(root: Path, mode: str, *extra: str) -> lab_mod.LabState:
    """`iotex-ops lab up` (a netns lab takes its prefix and subnet from $IOTEX_OPS_NETNS_PREFIX/_SUBNET)."""
    res = CliRunner().invoke(main, ["lab", "up", "--delegates", "4", "--hosts", mode, "--json", *extra], env=_env(root))
    assert res.exit_code == 0, res.output
    state = lab_mod.load_state(root)
    assert state is not None and state.mode == mode
    return state


def secrets(root: Path) -> list[str]:
    out = []
    for home in (root / "testnet").glob("node*"):
        out.append((home / "keystore.pass").read_text().strip())
        out.append((home / "admin.token").read_text().strip())
        out.append(json.loads((home / "node_key.json").read_text())["secret"])
    out.append((root / "alertd" / "webhook.token").read_text().strip())
    out.append((root / "pager" / "routing_key").read_text().strip())
    return out


def _logs_and_artifacts(root: Path) -> list[Path]:
    files = [p for p in (root / "runs").rglob("*") if p.is_file()]
    files += [p for p in (root / "hosts").rglob("*.log") if p.is_file()]
    files += [p for p in (root / "alertd").rglob("*") if p.is_file() and p.suffix in (".log", ".jsonl")]
    files += [p for p in (root / "pager").glob("*.log")]
    return files


def listening_ports() -> set[int]:
    out = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=True).stdout
    return {int(line.split()[3].rsplit(":", 1)[1]) for line in out.splitlines() if line.strip()}


@dataclass
class Footprint:
    """What a lab started, to check that `lab down` removed it."""

    root: Path
    mode: str
    pids: list[int]
    ports: set[int]
    netns_prefix: str = ""  # the netns lab's namespaces and links (another lab may run beside it: not those)


def check_up(state: lab_mod.LabState) -> Footprint:
    """Status, Prometheus, inventory, exec, a second `lab up` refused, no secret in logs (and netns: a second
    site.yml changes nothing). Returns what `check_gone` checks after `lab down`."""
    root = Path(state.root)
    runner = CliRunner()
    env = _env(root)
    doc = json.loads(runner.invoke(main, ["status", "--json"], env=env).output)
    rows = doc["delegates"]
    assert len(rows) == 4 and all(set(r) >= STATUS_FIELDS for r in rows)
    assert all(r["up"] and r["finalized_height"] >= 1 and r["pid"] for r in rows), rows
    with Prometheus(state.prometheus_url) as prom:
        up = prom.query('up{job="iotex-node"}')
    assert sorted(r["metric"]["delegate"] for r in up if r["value"][1] == "1") == ["node0", "node1", "node2", "node3"]
    checked = runner.invoke(main, ["inventory", "check", "-i", state.inventory], env=env)
    assert checked.exit_code == 0 and "ok" in checked.output, checked.output
    # the lab's drill schedules (disabled), checked with the chain's calendar read from its nodes
    scheduled = runner.invoke(main, ["schedule", "check", "-i", state.inventory, "--json"], env=env)
    assert scheduled.exit_code == 0, scheduled.output
    sched_doc = json.loads(scheduled.output)
    assert sched_doc["schedules"] == ["lab-first-aid", "lab-hotfix-compatible"] and sched_doc["f"] == 1
    assert sched_doc["chain"] is not None and sched_doc["chain"]["height"] >= 1, sched_doc
    assert sched_doc["chain"]["block_interval_s"] == state.block_interval_ms / 1000
    ran = runner.invoke(main, ["exec", "-i", state.inventory, "--limit", "delegates", "--json", "echo reached"], env=env)
    assert ran.exit_code == 0, ran.output
    hosts_seen = json.loads(ran.output)["hosts"]
    assert sorted(h["host"] for h in hosts_seen) == [f"node{i}" for i in range(4)]
    assert all(h["exit_code"] == 0 and h["stdout"].strip() == "reached" for h in hosts_seen)
    again = runner.invoke(main, ["lab", "up", "--delegates", "4", "--hosts", state.mode], env=env)
    assert again.exit_code == 2 and "already up" in again.output
    if state.mode == "netns":
        second = run_playbook("site.yml", Path(state.inventory), runs_dir=root / "runs")
        assert second.ok and sum(second.changed.values()) == 0, second.changed
    leaked = [(p, s[:6]) for p in _logs_and_artifacts(root) for s in secrets(root) if s in p.read_text(errors="replace")]
    assert not leaked, f"secrets found in logs or artifacts: {leaked}"
    assert all(s not in repr(state) for s in secrets(root))
    urls = [n.api_url for n in state.nodes] + [
        state.prometheus_url,
        state.alertmanager_url,
        state.alertd_url,
        state.dashboard_url,
    ]
    pids = [p for p in (state.node_pid(n.name) for n in state.nodes) if p is not None]
    services = json.loads(runner.invoke(main, ["lab", "status", "--json"], env=env).output)["services"]
    assert all(s["running"] for s in services)
    assert {s["service"] for s in services} == {"alertd", "scheduler", "pager receiver", "dashboard"}
    for f in ("alertd/alertd.pid", "pager/receiver.pid", "scheduler/scheduler.pid", "dashboard/dashboard.pid"):
        pids.append(int((root / f).read_text().strip()))
    prefix = str(state.netns["prefix"]) if state.netns else ""
    return Footprint(root, state.mode, pids, {int(u.rsplit(":", 1)[1]) for u in urls}, prefix)


def check_gone(fp: Footprint) -> None:
    down = CliRunner().invoke(main, ["lab", "down"], env=_env(fp.root))
    assert down.exit_code == 0, down.output
    assert not fp.root.exists()
    assert not any(os.path.exists(f"/proc/{p}") for p in fp.pids)
    if fp.mode == "local":
        assert not (fp.ports & listening_ports())
    else:
        assert not netns_leftovers(fp.netns_prefix)


def netns_leftovers(prefix: str) -> list[str]:
    """Links and namespaces named with a netns lab's prefix (only its own: another lab may run beside it)."""
    assert prefix
    links = json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=True).stdout or "[]")
    names = [str(x.get("ifname", "")) for x in links]
    names += subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout.split()
    return [n for n in names if n.startswith(prefix)]
