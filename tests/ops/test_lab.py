"""`iotex-ops lab up` refusals that need no lab. The labs themselves are brought up through the CLI and
checked (status, Prometheus, inventory, exec, no secrets, `lab down` leaves nothing) by the modules that
share them: tests/ops/lab_checks.py, used by test_alerting_e2e/test_drills (local) and test_drills_netns."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from iotex_ops.cli import main


def test_a_lab_dir_too_long_for_unix_sockets_is_refused_before_anything_starts(tmp_path: Path) -> None:
    root = tmp_path / ("x" * 80)
    res = CliRunner().invoke(main, ["lab", "up", "--dir", str(root)])
    assert res.exit_code == 2 and "too long" in res.output and not root.exists()
