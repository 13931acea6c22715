"""The settings the toolkit gives every Ansible run (iotex_ops.ansible.speed_env), and ansible.cfg, which says
the same for plain ansible-playbook run from a checkout."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from iotex_ops import ansible
from iotex_ops.errors import OpsError

REPO = Path(__file__).resolve().parents[2]
# ansible.cfg's [section] key for each environment variable (Ansible's own names for the same settings)
CFG_KEYS = {
    "ANSIBLE_PIPELINING": ("ssh_connection", "pipelining"),
    "ANSIBLE_SSH_ARGS": ("ssh_connection", "ssh_args"),
    "ANSIBLE_GATHERING": ("defaults", "gathering"),
    "ANSIBLE_FORKS": ("defaults", "forks"),
    "ANSIBLE_STRATEGY": ("defaults", "strategy"),
    "ANSIBLE_INVENTORY_ENABLED": ("inventory", "enable_plugins"),
}


def test_ansible_cfg_says_what_the_toolkit_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ansible.STRATEGY_ENV_VAR, raising=False)
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "ansible.cfg")
    env = ansible.speed_env(ansible.FALLBACK_STRATEGY)  # ansible.cfg cannot name a venv's Mitogen plugins
    assert set(env) == set(CFG_KEYS)
    for var, (section, key) in CFG_KEYS.items():
        assert cfg.get(section, key) == env[var], f"ansible.cfg [{section}] {key} differs from {var}"


def test_pipelining_connection_reuse_and_no_facts_are_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ansible.STRATEGY_ENV_VAR, raising=False)
    env = ansible.speed_env()
    assert env["ANSIBLE_PIPELINING"] == "True" and env["ANSIBLE_GATHERING"] == "explicit"
    assert "ControlPersist=" in env["ANSIBLE_SSH_ARGS"] and " -C" not in f" {env['ANSIBLE_SSH_ARGS']}"
    assert env["ANSIBLE_STRATEGY"] == ansible.default_strategy()


def test_the_default_strategy_is_mitogen_free_when_mitogen_is_installed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(ansible, "_mitogen_strategy_dir", lambda: tmp_path)
    assert ansible.default_strategy() == "mitogen_free"
    monkeypatch.setattr(ansible, "_mitogen_strategy_dir", lambda: None)
    assert ansible.default_strategy() == "free"


def test_strategy_comes_from_the_environment_and_unknown_ones_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ansible.STRATEGY_ENV_VAR, "linear")
    assert ansible.speed_env()["ANSIBLE_STRATEGY"] == "linear"
    assert ansible.speed_env("free")["ANSIBLE_STRATEGY"] == "free"  # an explicit one wins
    with pytest.raises(OpsError, match=r"strategy 'fast' \(\$IOTEX_OPS_ANSIBLE_STRATEGY\) is not one of linear, free"):
        ansible.speed_env("fast")


def test_mitogen_strategies_use_the_toolkits_unpinned_plugins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(ansible, "_mitogen_strategy_dir", lambda: None)
    with pytest.raises(OpsError, match=r"mitogen_free needs Mitogen for Ansible \(pip install mitogen\)"):
        ansible.speed_env("mitogen_free")
    monkeypatch.setattr(ansible, "_mitogen_strategy_dir", lambda: tmp_path)
    env = ansible.speed_env("mitogen_linear")
    assert env["ANSIBLE_STRATEGY"] == "mitogen_linear" and env["ANSIBLE_STRATEGY_PLUGINS"] == str(tmp_path)
    monkeypatch.undo()
    plugins = ansible._mitogen_strategy_dir()
    if plugins is not None:  # Mitogen installed (a dependency): the toolkit's own files, one per strategy
        assert plugins == REPO / "iotex_ops" / "ansible_plugins" / "strategy"
        assert {p.stem for p in plugins.glob("mitogen_*.py")} == {"mitogen_free", "mitogen_linear"}


@pytest.mark.slow  # runs ansible-playbook
@pytest.mark.skipif(ansible._mitogen_strategy_dir() is None, reason="Mitogen for Ansible is not installed")
@pytest.mark.parametrize("strategy", ["mitogen_free", "mitogen_linear"])
def test_a_local_hosts_processes_keep_every_cpu_under_mitogen(tmp_path: Path, strategy: str) -> None:
    """Mitogen's own plugins pin everything but its multiplexer to one CPU on a machine of fewer than 4, and a
    local host's processes (in the lab: supervisord and its nodes) inherit that mask; the toolkit's do not."""
    import os
    import sys

    (tmp_path / "hosts.yml").write_text(
        f"all:\n  hosts:\n    h0: {{ansible_connection: local, ansible_python_interpreter: {sys.executable}}}\n"
    )
    (tmp_path / "cpus.yml").write_text(
        "- name: CPUs\n  hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - name: The CPUs a process started on the host may run on\n"
        "      ansible.builtin.command: grep Cpus_allowed_list /proc/self/status\n"
        "      changed_when: false\n"
    )
    seen: list[str] = []

    def on_event(ev: dict[str, object]) -> None:
        data = ev.get("event_data") or {}
        if ev.get("event") == "runner_on_ok" and isinstance(data, dict):
            seen.append(str((data.get("res") or {}).get("stdout", "")))

    ansible.run_playbook(tmp_path / "cpus.yml", tmp_path / "hosts.yml", runs_dir=tmp_path / "runs", on_event=on_event,
                         strategy=strategy)  # fmt: skip
    assert len(seen) == 1, seen
    listed = seen[0].split(":", 1)[1].strip()
    cpus: set[int] = set()
    for part in listed.split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    mine = os.sched_getaffinity(0)
    assert cpus == mine, f"a process on the host may run on CPUs {listed}, the controller on {sorted(mine)}"


def test_task_times_come_from_the_runs_result_events() -> None:
    events = [
        {"event": "playbook_on_task_start", "event_data": {"task": "Node config"}},
        {"event": "runner_on_start", "event_data": {"task": "Node config", "host": "n0"}},
        {
            "event": "runner_on_ok",
            "event_data": {
                "task": "Node config",
                "role": "node_config",
                "host": "n0",
                "duration": 0.25,
                "res": {"changed": True},
            },
        },
        {
            "event": "runner_on_ok",
            "event_data": {
                "task": "Node config",
                "role": "node_config",
                "host": "n1",
                "duration": 0.5,
                "res": {"changed": False},
            },
        },
        {"event": "runner_on_skipped", "event_data": {"task": "Start supervisord", "host": "n0", "duration": 0.01}},
        {"event": "runner_on_failed", "event_data": {"task": "Install", "host": "n1", "duration": 1.5, "res": {}}},
        {"event": "runner_on_ok", "event_data": {"task": "no timing", "host": "n1"}},
    ]
    times = ansible.task_times(events)
    assert [(t.task, t.host, t.seconds, t.status) for t in times] == [
        ("Node config", "n0", 0.25, "changed"),
        ("Node config", "n1", 0.5, "ok"),
        ("Start supervisord", "n0", 0.01, "skipped"),
        ("Install", "n1", 1.5, "failed"),
    ]
    assert times[0].role == "node_config" and times[2].role == ""
