"""playbooks/scheduler.yml on a local "ops host": the systemd unit of `iotex-ops scheduler serve`, written only
for a network whose drills.yml passes `schedule check`. (systemd itself is not started: service_manager none.)"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from iotex_ops.ansible import PlaybookFailed, run_playbook
from tests.ops.test_schedule_cli import write_inventory

pytestmark = pytest.mark.slow  # runs Ansible (ansible-runner)

GOOD = {"schedules": [{"name": "fa", "drill": "first-aid", "cron": "0 4 * * tue", "timezone": "Europe/Paris"}]}


def _ops_inventory(tmp: Path, drills: Any, **extra: str) -> Path:
    network = write_inventory(tmp / "net", drills)
    ops = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "scheduler_bin": str(Path(sys.executable).parent / "iotex-ops"),
        "scheduler_state_dir": str(tmp / "state"),
        "scheduler_unit_dir": str(tmp),
        "scheduler_inventory": str(network),
        "scheduler_service_manager": "none",
        **extra,
    }
    inv = tmp / "hosts.yml"
    inv.write_text(json.dumps({"all": {"children": {"ops": {"hosts": {"ops1": ops}}}}}))
    return inv


def test_the_scheduler_role_installs_a_unit_for_a_checked_drills_file(tmp_path: Path) -> None:
    res = run_playbook("scheduler.yml", _ops_inventory(tmp_path, GOOD), runs_dir=tmp_path / "runs")
    assert res.ok
    unit = (tmp_path / "iotex-scheduler.service").read_text()
    assert "scheduler serve" in unit and f"--inventory {tmp_path}/net/inv" in unit
    assert "--alertd-state-dir /var/lib/iotex-ops/alertd" in unit and "Restart=always" in unit
    assert "TimeoutStopSec=30min" in unit and (tmp_path / "state").is_dir()
    res = run_playbook("scheduler.yml", _ops_inventory(tmp_path / "b", GOOD, scheduler_alertd_state_dir=""),
                       runs_dir=tmp_path / "runs")  # fmt: skip
    assert "--without-alertd" in (tmp_path / "b" / "iotex-scheduler.service").read_text()


def test_the_scheduler_role_refuses_a_drills_file_with_a_problem(tmp_path: Path) -> None:
    bad = {"schedules": [{"name": "fa", "drill": "first-aid", "cron": "0 4 * * tue", "timezone": "Europe/Pari"}]}
    with pytest.raises(PlaybookFailed, match="drill schedules are valid"):
        run_playbook("scheduler.yml", _ops_inventory(tmp_path, bad), runs_dir=tmp_path / "runs")
    assert not (tmp_path / "iotex-scheduler.service").exists()
