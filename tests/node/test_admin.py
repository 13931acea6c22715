"""The admin channel of a running node: local-only, token-guarded, and complete for operators."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from iotex_node import admin, config
from iotex_ops.lab import LocalNet

pytestmark = [pytest.mark.slow, pytest.mark.network]


def test_admin_status_reports_what_operators_need_and_refuses_a_wrong_token(tmp_path: Path) -> None:
    with LocalNet.generate(tmp_path / "net", 1) as net:
        net.start()
        net.wait_height(2, timeout=60)
        home = net.nodes[0].home
        out = subprocess.run(
            [sys.executable, "-m", "iotex_node", "admin", "status", "--home", str(home), "--json"],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        s = json.loads(out.stdout)
        for k in ("height", "finalized_height", "finalized_hash", "version", "protocol", "peers", "api_url"):
            assert k in s, k
        assert s["finalized_height"] >= 2
        assert s["api_url"] == net.nodes[0].api
        sock = home / config.ADMIN_SOCKET
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        cfg = config.load(home)
        with pytest.raises(admin.AdminError, match="wrong or missing admin token"):
            admin.call(cfg, "GET", "/status", token="not-the-token")
        # the admin channel is a Unix socket: nothing about it listens on TCP
        assert not any(str(sock) in line for line in (home / "config.toml").read_text().splitlines())
