"""playbooks/alertd.yml on a local "ops host": the systemd unit, owner-only secrets, a checked policy, and
no secret in Ansible's artifacts. (systemd itself is not started here: `alertd_service_manager: none`.)"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest

from iotex_ops.ansible import PlaybookFailed, run_playbook
from iotex_ops.remediation import policy as policy_mod

pytestmark = pytest.mark.slow  # runs Ansible (ansible-runner)

TOKEN = "webhook-token-0123456789abcdef"
ROUTING_KEY = "R0UT1NGKEY0123456789abcdefabcdef"


def _inventory(tmp: Path, **extra: str) -> Path:
    (tmp / "token").write_text(TOKEN)
    (tmp / "routing.key").write_text(ROUTING_KEY)
    ops = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "alertd_bin": str(Path(sys.executable).parent / "iotex-ops"),
        "alertd_config_dir": str(tmp / "etc"),
        "alertd_state_dir": str(tmp / "state"),
        "alertd_unit_dir": str(tmp),
        "alertd_token_src": str(tmp / "token"),
        "alertd_routing_key_src": str(tmp / "routing.key"),
        "alertd_policy_src": str(policy_mod.DEFAULT_POLICY),
        "alertd_service_manager": "none",
        **extra,
    }
    inv = tmp / "hosts.yml"
    inv.write_text(json.dumps({"all": {"children": {"ops": {"hosts": {"ops1": ops}}}}}))
    return inv


def test_the_alertd_role_installs_a_unit_owner_only_secrets_and_a_checked_policy(tmp_path: Path) -> None:
    inv = _inventory(tmp_path)
    res = run_playbook("alertd.yml", inv, runs_dir=tmp_path / "runs")
    assert res.ok
    unit = (tmp_path / "iotex-alertd.service").read_text()
    assert "alertd run" in unit and f"--token-file {tmp_path}/etc/webhook.token" in unit
    assert "--routing-key-file" in unit and "--policy" in unit and "Restart=always" in unit
    for name, value in (("webhook.token", TOKEN), ("routing.key", ROUTING_KEY)):
        f = tmp_path / "etc" / name
        assert f.read_text() == value
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert TOKEN not in unit and ROUTING_KEY not in unit
    dash = (tmp_path / "iotex-dashboard.service").read_text()
    assert " dashboard " in dash and "--listen 127.0.0.1:8470" in dash and "--token-file" not in dash  # read-only
    artifacts = "".join(p.read_text(errors="replace") for p in (tmp_path / "runs").rglob("*") if p.is_file())
    assert ROUTING_KEY not in artifacts and TOKEN not in artifacts


def test_the_alertd_role_refuses_a_policy_naming_a_runbook_that_is_not_installed(tmp_path: Path) -> None:
    bad = tmp_path / "policy.yml"
    bad.write_text("remediations:\n  DelegateDown: {runbook: reboot-the-world, params: {host: '{host}'}}\n")
    inv = _inventory(tmp_path, alertd_policy_src=str(bad))
    with pytest.raises(PlaybookFailed, match="Policy is valid"):
        run_playbook("alertd.yml", inv, runs_dir=tmp_path / "runs")
