"""The playbooks on two local "hosts" (directories reached with ansible_connection: local) running a
two-delegate chain under supervisord, through iotex_ops.ansible (ansible-runner) and plain ansible-playbook."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from iotex_node import config as config_mod
from iotex_ops.ansible import PlaybookFailed, PlaybookResult, ProgressView, resolve_playbook, run_playbook, task_times
from iotex_ops.cli.playbooks import playbook as playbook_cli
from iotex_ops.errors import OpsError
from tests.ops.playbook_lab import PlaybookLab, make_lab

REPO = Path(__file__).resolve().parents[2]


class Lab:
    def __init__(self, lab: PlaybookLab) -> None:
        self.lab = lab
        self.runs = lab.root / "runs"
        self.events: list[dict[str, Any]] = []

    def run(self, name: str, **kw: Any) -> PlaybookResult:
        return run_playbook(name, self.lab.inventory, runs_dir=self.runs, on_event=self.events.append, **kw)

    def chain(self, host: str) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.lab.api_ports[host]}/v1/chain"
        with urllib.request.urlopen(url, timeout=3) as resp:
            return dict(json.loads(resp.read()))

    def wait_finalized(self, host: str, above: int, timeout: float = 120.0) -> int:
        """The host's finalized height once above `above`. Two delegates finalize only together, so after a
        restart this waits for the pair to meet again (seconds here; the bound is for a slow, busy machine)."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                h = int(self.chain(host)["finalized_height"])
                if h > above:
                    return h
            except OSError as exc:
                last = exc
            time.sleep(0.3)
        raise AssertionError(f"{host} did not finalize above {above} within {timeout}s (last error: {last})")

    def pid(self, host: str) -> int:
        return int((self.lab.home(host) / "node.pid").read_text())

    def current(self, host: str) -> str:
        return os.readlink(self.lab.hosts[host] / "opt" / "iotex" / "current")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    pl = make_lab(tmp_path_factory.mktemp("pb"), delegates=2, versions=("1.0.0", "1.0.1"))
    try:
        yield Lab(pl)
    finally:
        pl.stop_all()


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


# --- without processes -------------------------------------------------------------------------------


def test_playbooks_resolve_by_name_and_unknown_names_are_refused() -> None:
    assert resolve_playbook("site") == REPO / "playbooks" / "site.yml"
    assert resolve_playbook("release.yml").name == "release.yml"
    with pytest.raises(OpsError, match="no playbook 'nope'"):
        resolve_playbook("nope")


def test_progress_view_counts_per_host() -> None:
    view = ProgressView(title="t")
    for ev in [
        {"event": "playbook_on_play_start", "event_data": {"play": "p"}},
        {"event": "runner_on_start", "event_data": {"host": "a", "task": "install"}},
        {"event": "runner_on_ok", "event_data": {"host": "a", "task": "install", "res": {"changed": True}}},
        {"event": "runner_on_ok", "event_data": {"host": "b", "task": "install", "res": {"changed": False}}},
        {"event": "runner_on_failed", "event_data": {"host": "b", "task": "x", "res": {"msg": "boom"}}},
        {"event": "runner_on_failed", "event_data": {"host": "a", "ignore_errors": True, "res": {}}},
        {"event": "runner_on_skipped", "event_data": {"host": "a"}},
        {"event": "runner_on_unreachable", "event_data": {"host": "c", "res": {"msg": "no route"}}},
    ]:
        view(ev)
    a, b, c = view.hosts["a"], view.hosts["b"], view.hosts["c"]
    assert (a.task, a.ok, a.changed, a.failed, a.skipped) == ("install", 2, 1, 0, 1)
    assert (b.ok, b.changed, b.failed) == (1, 0, 1)
    assert c.unreachable and c.failed == 1
    assert view.__rich__().row_count == 3


# --- on local hosts ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_site_installs_release_renders_config_and_starts_finalizing_nodes(lab: Lab) -> None:
    r = lab.run("site")
    assert r.ok and r.status == "successful" and r.rc == 0
    assert set(r.changed) == {"node0", "node1", "mon"} and all(r.changed.values())
    assert (r.artifacts_dir / "job_events").is_dir() and r.events > 50
    for host in ("node0", "node1"):
        assert lab.current(host) == "releases/1.0.0"
        cfg = config_mod.load(lab.lab.home(host))
        assert cfg.name == host and cfg.api_listen == f"127.0.0.1:{lab.lab.api_ports[host]}" and len(cfg.peers) == 1
        for secret in ("keystore.json", "keystore.pass", "node_key.json", "admin.token"):
            assert (lab.lab.home(host) / secret).stat().st_mode & 0o777 == 0o600
    # Two delegates finalize only together: both nodes run, peered by the rendered config.
    lab.wait_finalized("node0", 2)
    lab.wait_finalized("node1", 2)
    prom = (lab.lab.monitoring_dir / "prometheus.yml").read_text()
    assert all(f"127.0.0.1:{p}" in prom for p in lab.lab.api_ports.values())
    assert "http://127.0.0.1:9000/alerts" in (lab.lab.monitoring_dir / "alertmanager.yml").read_text()


@pytest.mark.slow
def test_second_run_changes_nothing(lab: Lab) -> None:
    pids = {h: lab.pid(h) for h in ("node0", "node1")}
    before = len(lab.events)
    r = lab.run("site")
    assert r.ok and r.changed == {"mon": 0, "node0": 0, "node1": 0}
    assert {h: lab.pid(h) for h in pids} == pids
    # A converged delegate host costs few modules (docs/performance.md): its directories, the release's
    # state (record and current link), the node home's files, supervisord and the node's state: four module
    # runs (iotex_home twice, iotex_release_state, iotex_supervisord), the rest controller-side asserts and facts.
    times = task_times(lab.events[before:])
    for host in ("node0", "node1"):
        ran = [t.task for t in times if t.host == host and t.status != "skipped"]
        assert len(ran) <= 10, f"{host} ran {len(ran)} tasks on a converged host: {ran}"
        assert "The node answers on its API port" not in ran
    # the release's task found it installed and active: nothing transferred, no launcher run
    release = [
        e["event_data"]["res"]
        for e in lab.events[before:]
        if e.get("event") == "runner_on_ok" and e["event_data"].get("task", "").startswith("Release node_release_version")
    ]
    assert len(release) == 2 and all(r["installed"] and r["active"] for r in release)
    assert not any("installed_now" in r or "activated" in r for r in release)


@pytest.mark.slow
def test_check_mode_reports_a_change_and_makes_none(lab: Lab) -> None:
    config = lab.lab.home("node0") / "config.toml"
    before = config.read_text()
    pids = {h: lab.pid(h) for h in ("node0", "node1")}
    r = lab.run("site", check=True, extravars={"node_log_level": "debug"})
    assert r.ok and r.changed["node0"] >= 1 and r.changed["node1"] >= 1 and r.changed["mon"] == 0
    assert config.read_text() == before
    assert {h: lab.pid(h) for h in pids} == pids
    assert lab.run("site", check=True).changed == {"mon": 0, "node0": 0, "node1": 0}


@pytest.mark.slow
def test_release_switch_and_switch_back_restart_the_node(lab: Lab) -> None:
    pid = lab.pid("node0")
    r = lab.run("release", limit="node0", extravars={"node_release_version": "1.0.1"})
    assert r.ok and r.changed["node0"] > 0
    assert lab.current("node0") == "releases/1.0.1" and lab.current("node1") == "releases/1.0.0"
    assert lab.pid("node0") != pid  # restarted onto the new release
    h = lab.wait_finalized("node0", int(lab.chain("node1")["finalized_height"]))
    assert lab.run("release", limit="node0", extravars={"node_release_version": "1.0.1"}).changed["node0"] == 0

    pid = lab.pid("node0")
    r = lab.run("release", limit="node0", extravars={"node_release_switch_back": True})
    assert r.ok and lab.current("node0") == "releases/1.0.0"
    assert lab.pid("node0") != pid
    lab.wait_finalized("node0", h)
    # Both releases stay installed side by side, read-only.
    releases = lab.lab.hosts["node0"] / "opt" / "iotex" / "releases"
    assert sorted(p.name for p in releases.iterdir()) == ["1.0.0", "1.0.1"]
    assert not os.access(releases / "1.0.1" / "manifest.json", os.W_OK) or os.geteuid() == 0


@pytest.mark.slow
def test_service_stop_and_start(lab: Lab) -> None:
    port = lab.lab.api_ports["node1"]
    r = lab.run("service", limit="node1", extravars={"node_state": "stopped"})
    assert r.ok and r.changed == {"node1": 1}
    assert not _port_open(port) and not (lab.lab.home("node1") / "node.pid").exists()
    assert lab.run("service", limit="node1", extravars={"node_state": "stopped"}).changed == {"node1": 0}
    r = lab.run("service", limit="node1", extravars={"node_state": "started"})
    assert r.ok and r.changed == {"node1": 1} and _port_open(port)
    lab.wait_finalized("node1", int(lab.chain("node0")["finalized_height"]))


@pytest.mark.slow
def test_plain_ansible_playbook_runs_site(lab: Lab) -> None:
    env = {**os.environ, "LC_ALL": "C.UTF-8", "ANSIBLE_NOCOLOR": "1"}
    bin_dir = Path(sys.executable).parent
    proc = subprocess.run(
        [str(bin_dir / "ansible-playbook"), "-i", str(lab.lab.inventory), str(REPO / "playbooks" / "site.yml")],
        capture_output=True,
        text=True,
        env=env,
        cwd=lab.lab.root,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    recap = proc.stdout.split("PLAY RECAP")[-1]
    assert recap.count("changed=0") == 3 and "failed=0" in recap


@pytest.mark.slow
def test_cli_runs_a_playbook_and_prints_json(lab: Lab) -> None:
    res = CliRunner().invoke(
        playbook_cli, ["run", "service", "-i", str(lab.lab.inventory), "--json", "--runs-dir", str(lab.runs)]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["ok"] and doc["changed"] == {"node0": 0, "node1": 0}
    res = CliRunner().invoke(
        playbook_cli, ["run", "release", "-i", str(lab.lab.inventory), "--check", "-e", "node_release_version=9.9.9",
                       "--limit", "node0", "--json", "--runs-dir", str(lab.runs)],
    )  # fmt: skip
    assert res.exit_code == 2 and not json.loads(res.output)["ok"]


@pytest.mark.slow
def test_failed_run_names_host_task_and_message(lab: Lab) -> None:
    with pytest.raises(PlaybookFailed) as info:
        lab.run("release", limit="node0", check=True, extravars={"node_release_version": "9.9.9"})
    exc = info.value
    assert exc.result.status == "failed" and exc.result.failed["node0"] >= 1
    assert [f.host for f in exc.failures] == ["node0"]
    assert "iotex-node-9.9.9.tar.gz" in str(exc)
    assert lab.run("release", limit="node0", check=True, raise_on_failure=True).ok


@pytest.mark.slow
@pytest.mark.parametrize(
    ("playbook", "extravars", "message"),
    [
        ("release", {"node_release_version": ""}, "set node_release_version and node_release_dir"),
        ("node", {"node_genesis_src": ""}, "set node_genesis_src, node_keystore_src, node_password_file_src and node_key_src"),
        ("service", {"node_service_manager": "runit"}, "node_service_manager systemd|supervisord"),
        ("service", {"node_state": "paused"}, "node_state must be started|stopped|restarted"),
    ],
)
def test_a_missing_or_wrong_role_input_fails_naming_it(lab: Lab, playbook: str, extravars: dict[str, str], message: str) -> None:
    """The roles check their inputs where a task first needs them (no assert task per host): the failure says
    which variable to set, in check mode too, and nothing is changed."""
    with pytest.raises(PlaybookFailed) as info:
        lab.run(playbook, limit="node0", check=True, extravars=extravars)
    assert message in str(info.value) and [f.host for f in info.value.failures] == ["node0"]


@pytest.mark.slow
def test_no_secret_in_run_directories_or_events(lab: Lab) -> None:
    secrets = lab.lab.secrets()
    assert len(secrets) == 6 and lab.events
    files = [p for p in lab.runs.rglob("*") if p.is_file()]
    assert any(p.parent.name == "job_events" for p in files) and any(p.name == "command" for p in files)
    assert not any((p.parent.name == "env") for p in files)  # suppress_env_files
    for p in files:
        text = p.read_text(errors="replace")
        for s in secrets:
            assert s not in text, f"a secret is in {p}"
    events = json.dumps(lab.events)
    for s in secrets:
        assert s not in events
