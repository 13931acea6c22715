"""`iotex-ops localnet`: the newcomer's first command starts a network and shows it finalizing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from iotex_ops.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.network]


def test_localnet_shows_four_delegates_finalizing_and_stops_them(tmp_path: Path) -> None:
    root = tmp_path / "net"
    res = CliRunner().invoke(main, ["localnet", "--delegates", "4", "--seconds", "6", "--dir", str(root)])
    assert res.exit_code == 0, res.output
    assert "stopped all nodes" in res.output
    rows = [line for line in res.output.splitlines() if re.match(r"^│ node\d", line)]
    heights = {int(r.split("│")[3]) for r in rows[-4:] if r.split("│")[3].strip().isdigit()}
    assert heights and max(heights) >= 1, res.output
    logs = list(root.glob("node*.log"))
    assert len(logs) == 4
    # every process was stopped: each log ends with the node's own shutdown line
    assert all("stopping" in log.read_text() for log in logs)
