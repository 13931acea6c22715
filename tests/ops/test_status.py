"""`status`: one row per delegate, from the node APIs and Prometheus; a dead node is a row, not an error."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest

from iotex_node.testnet import free_ports
from iotex_ops.monitoring import MonitoringStack, Target
from iotex_ops.status import Endpoint, collect, table
from tests.helpers import admin

pytestmark = [pytest.mark.slow, pytest.mark.network]


def _pid(home: Path) -> int | None:
    f = home / "node.pid"
    return int(f.read_text()) if f.exists() else None


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="Debian package prometheus is not installed")
def test_status_rows_show_paused_dead_and_prometheus_up(localnet_factory, tmp_path) -> None:
    net = localnet_factory(4)
    net.start()
    net.wait_height(2, timeout=60)
    homes = {n.name: n.home for n in net.nodes}
    eps = [Endpoint(n.name, "127.0.0.1", n.api) for n in net.nodes]
    prom, am = free_ports(2)
    stack = MonitoringStack(tmp_path / "mon", [Target(n.name, n.api.removeprefix("http://")) for n in net.nodes], prom, am)
    try:
        stack.start()
        net.wait_for("prometheus to see all up", lambda: sum(stack.targets_up().values()) == 4, 30)
        admin(net, 1, "/pause")
        net.kill(3, signal.SIGKILL)
        net.wait_for("prometheus to see node3 down", lambda: stack.targets_up().get("node3") is False, 30)
        rows = {r.name: r for r in collect(eps, prometheus_url=stack.prometheus_url, pid_of=lambda ep: _pid(homes[ep.name]))}
    finally:
        stack.stop()
    assert rows["node0"].up and rows["node0"].answering and rows["node0"].pid == net.nodes[0].pid
    assert rows["node0"].finalized_height is not None and rows["node0"].finalized_height >= 2
    assert rows["node0"].version and rows["node0"].protocol == 1 and rows["node0"].peers == 2
    assert rows["node0"].last_block_age_s is not None and rows["node0"].last_block_age_s < 30
    assert rows["node1"].paused is True
    assert rows["node3"].up is False and rows["node3"].answering is False and "not answering" in (rows["node3"].error or "")
    assert set(rows["node3"].to_json()) >= {
        "name", "host", "pid", "height", "finalized_height", "version", "protocol", "peers", "paused", "halted",
        "last_block_age_s", "up",
    }  # fmt: skip
    assert table(list(rows.values())).row_count == 4
