"""The real Prometheus and Alertmanager watching real nodes: targets up, a dead node alerts."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import urllib.request

import pytest

from iotex_node.testnet import free_ports
from iotex_ops.monitoring import MonitoringStack, Target, stop_from_pidfiles

pytestmark = [
    pytest.mark.slow,
    pytest.mark.network,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="Debian package prometheus is not installed"),
]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_prometheus_scrapes_every_node_and_a_killed_node_raises_an_alert(localnet_factory, tmp_path) -> None:
    net = localnet_factory(4)
    net.start()
    net.wait_height(1, timeout=60)
    prom_port, am_port = free_ports(2)
    stack = MonitoringStack(
        tmp_path / "mon",
        [Target(n.name, n.api.removeprefix("http://")) for n in net.nodes],
        prom_port,
        am_port,
    )
    try:
        stack.start()
        net.wait_for("prometheus to see all 4 up", lambda: stack.targets_up() == {f"node{i}": True for i in range(4)}, 30)
        heights = stack.query("iotex_finalized_height")
        assert len(heights) == 4 and all(float(r["value"][1]) >= 1 for r in heights)
        net.kill(2, signal.SIGKILL)

        def alert_firing() -> bool:
            with urllib.request.urlopen(stack.alertmanager_url + "/api/v2/alerts", timeout=2) as resp:  # noqa: S310
                alerts = json.loads(resp.read())
            return any(a["labels"].get("alertname") == "DelegateDown" and a["labels"].get("host") == "node2" for a in alerts)

        net.wait_for("DelegateDown for node2 in Alertmanager", alert_firing, 30)
        # both bind to loopback only
        assert all(
            f"127.0.0.1:{p}" in line
            for p, line in ((prom_port, _args(stack, "prometheus")), (am_port, _args(stack, "alertmanager")))
        )
    finally:
        stack.stop()
    assert not _listening(prom_port) and not _listening(am_port)


def test_stop_from_pidfiles_only_stops_what_the_stack_started(tmp_path) -> None:
    prom_port, am_port = free_ports(2)
    stack = MonitoringStack(tmp_path / "mon", [], prom_port, am_port)
    stack.start()
    try:
        started = sorted(stack.pids().values())
        assert len(started) == 2
        assert sorted(stop_from_pidfiles(tmp_path / "mon")) == started
    finally:
        stack.stop()
    assert not _listening(prom_port) and not _listening(am_port)
    (tmp_path / "mon" / "prometheus.pid").write_text("1\n")  # pid 1 is not a prometheus: never signalled
    assert stop_from_pidfiles(tmp_path / "mon") == []


def _args(stack: MonitoringStack, name: str) -> str:
    pid = stack.pids()[name]
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        return fh.read().replace(b"\0", b" ").decode()
