"""The toolkit's start gate (iotex_ops/ansible_plugins/callback/iotex_start_gate.py): a run held after it parsed
everything and before it touches a host, until its caller says "open" or calls it off (`lab up` starts node.yml
this way while it still makes the hosts, keys and releases)."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from iotex_ops import ansible
from iotex_ops.ansible_plugins.callback import iotex_start_gate as gate_mod
from iotex_ops.errors import OpsError


def test_the_gate_opens_on_open_and_names_why_otherwise(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.write_text("open\n")
    assert gate_mod.wait_for_gate(gate, 1.0) is None
    gate.write_text("lab up failed: no sshd")
    assert gate_mod.wait_for_gate(gate, 1.0) == "the run was called off before it started: lab up failed: no sshd"
    gate.write_text("")
    assert "no reason given" in str(gate_mod.wait_for_gate(gate, 1.0))


def test_a_gate_that_never_comes_ends_the_wait_at_its_timeout(tmp_path: Path) -> None:
    naps: list[float] = []
    why = gate_mod.wait_for_gate(tmp_path / "never", 0.05, sleep=lambda s: (naps.append(s), time.sleep(s)))
    assert why is not None and "did not open within 0.05 s" in why and naps


def _playbook(tmp_path: Path) -> tuple[Path, Path, Path]:
    marker = tmp_path / "ran"
    (tmp_path / "hosts.yml").write_text(
        f"all:\n  hosts:\n    h0: {{ansible_connection: local, ansible_python_interpreter: {sys.executable}}}\n"
    )
    (tmp_path / "touch.yml").write_text(
        "- name: Touch\n  hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - name: A file that says the play ran\n"
        f"      ansible.builtin.copy: {{dest: {marker}, content: ran, mode: '0644'}}\n"
    )
    return tmp_path / "touch.yml", tmp_path / "hosts.yml", marker


def _start(tmp_path: Path, gate: Path, cancel: threading.Event | None = None) -> tuple[threading.Thread, dict[str, object]]:
    play, hosts, _ = _playbook(tmp_path)
    out: dict[str, object] = {}

    def run() -> None:
        try:
            out["result"] = ansible.run_playbook(play, hosts, runs_dir=tmp_path / "runs", start_gate=gate,
                                                 cancel=cancel.is_set if cancel else None, timeout=120)  # fmt: skip
        except OpsError as exc:
            out["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    return t, out


@pytest.mark.slow  # runs ansible-playbook
def test_a_held_run_touches_no_host_until_the_gate_opens(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    t, out = _start(tmp_path, gate)
    try:
        time.sleep(4.0)  # well past ansible-playbook's start on a 2-core machine
        assert not (tmp_path / "ran").exists() and t.is_alive()
    finally:
        gate.write_text("open")
        t.join(120)
    result = out.get("result")
    assert isinstance(result, ansible.PlaybookResult) and result.ok, out
    assert (tmp_path / "ran").read_text() == "ran"


@pytest.mark.slow  # runs ansible-playbook
def test_a_run_called_off_at_its_gate_fails_naming_why_and_touches_nothing(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.write_text("lab up failed: namespace clash")
    t, out = _start(tmp_path, gate)
    t.join(120)
    err = out.get("error")
    assert isinstance(err, ansible.PlaybookFailed) and err.result.status == "failed", out
    assert not (tmp_path / "ran").exists()
    stdout = (err.result.artifacts_dir / "stdout").read_text()
    assert "called off before it started: lab up failed: namespace clash" in stdout


@pytest.mark.slow  # runs ansible-playbook
def test_a_held_run_is_canceled_by_its_caller(tmp_path: Path) -> None:
    gate, cancel = tmp_path / "gate", threading.Event()
    t, out = _start(tmp_path, gate, cancel)
    time.sleep(2.0)
    cancel.set()
    t.join(60)
    assert not t.is_alive()
    err = out.get("error")
    assert isinstance(err, ansible.PlaybookFailed) and err.result.status == "canceled", out
    assert not (tmp_path / "ran").exists()
