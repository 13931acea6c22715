"""The command line starts without the heavy libraries: each command imports what it uses when it runs.

Checked in a fresh interpreter (this one has imported everything already), so these tests start processes.
The figures (whole-process start-up times) are in docs/performance.md, not asserted here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each test starts a Python process

# Libraries that cost tens to hundreds of milliseconds to import and that no quick command needs.
HEAVY = (
    "ansible",
    "ansible_runner",
    "paramiko",
    "fabric",
    "invoke",
    "prometheus_api_client",
    "rich",
    "jinja2",
    "aiohttp",
    "coincurve",
    "httpx2",
    "pagerduty",
    "cryptography",
    "iotex_node",
)

_PROBE = """
import json, sys
from iotex_ops.cli import main
try:
    main(sys.argv[1:], standalone_mode=False, prog_name="iotex-ops")
except BaseException:
    pass
heavy = set(json.loads(HEAVY))
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} & heavy)), file=sys.stderr)
"""


def _loaded(tmp_path: Path, *args: str) -> list[str]:
    """The heavy libraries loaded by `iotex-ops ARGS` in a fresh interpreter (the last line of its stderr)."""
    env = {**os.environ, "IOTEX_OPS_LAB_DIR": str(tmp_path / "no-lab"), "IOTEX_OPS_STATE_DIR": str(tmp_path / "state")}
    code = _PROBE.replace("HEAVY", repr(json.dumps(HEAVY)))
    res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120)
    loaded: list[str] = json.loads(res.stderr.strip().splitlines()[-1])
    return loaded


def test_importing_the_command_line_loads_no_heavy_library(tmp_path: Path) -> None:
    assert _loaded(tmp_path) == []


def test_help_lists_every_group_without_importing_them(tmp_path: Path) -> None:
    assert _loaded(tmp_path, "--help") == []
    out = subprocess.run([sys.executable, "-m", "iotex_ops.cli", "--help"], capture_output=True, text=True, check=True)
    groups = ("account", "action", "alertd", "chain", "exec", "inventory", "lab", "load", "monitoring", "pager", "playbook")
    for group in (*groups, "rehearsal", "rewards", "runbook", "stake", "status"):
        assert f"  {group} " in out.stdout, out.stdout


def test_status_without_a_lab_answers_without_the_host_layer_or_prometheus_client(tmp_path: Path) -> None:
    # It says there is no lab (exit 2) having loaded neither SSH, Ansible, Prometheus's client nor rich.
    assert _loaded(tmp_path, "status") == []
    res = subprocess.run([sys.executable, "-m", "iotex_ops.cli", "status"], capture_output=True, text=True,
                         env={**os.environ, "IOTEX_OPS_LAB_DIR": str(tmp_path / "no-lab")})  # fmt: skip
    assert res.returncode == 2 and "no running lab" in res.stderr


def test_a_command_loads_only_what_it_uses(tmp_path: Path) -> None:
    # `inventory check` reads an inventory: it needs no SSH.
    inv = tmp_path / "hosts.yml"
    inv.write_text("all:\n  hosts:\n    d1:\n      ansible_host: 127.0.0.1\n")
    assert "paramiko" not in _loaded(tmp_path, "inventory", "check", "-i", str(inv), "--json")


def test_load_run_help_loads_no_heavy_library(tmp_path: Path) -> None:
    # the load tool's libraries (aiohttp, the node's signing module, rich) come with a run, not with its help
    assert _loaded(tmp_path, "load", "run", "--help") == []


def test_the_node_command_line_starts_without_the_service(tmp_path: Path) -> None:
    code = (
        "import sys\nfrom iotex_node.cli import main\ntry:\n    main(['--help'], standalone_mode=False)\nexcept BaseException:\n"
        "    pass\nprint(sorted(m for m in ('aiohttp', 'prometheus_client', 'iotex_node.node', 'iotex_node.api') "
        "if m in sys.modules), file=sys.stderr)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert res.stderr.strip().splitlines()[-1] == "[]"


def test_the_clients_balance_loads_no_signing_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `account balance` reads one API answer: neither iotex_node (coincurve, cryptography) nor rich. Port 9 is not
    # served on loopback: the command fails fast, after its imports.
    monkeypatch.setenv("IOTEX_OPS_CLIENT_HOME", str(tmp_path / "client"))
    monkeypatch.setenv("IOTEX_OPS_ENDPOINT", "http://127.0.0.1:9")
    assert _loaded(tmp_path, "account", "balance", "io1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq", "--json") == []
    assert _loaded(tmp_path, "chain", "info") == []
