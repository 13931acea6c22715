"""The node's own gauges that the alert rules read: disk space of the data directory, the operator address."""

from __future__ import annotations

import shutil
from collections import namedtuple
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from iotex_node import metrics as metrics_mod
from iotex_node.metrics import DISK_REFRESH_S, Metrics
from tests.node.test_api import make_testnet, start_node

Usage = namedtuple("Usage", "total used free")


def _value(m: Metrics, name: str) -> float | None:
    return m.registry.get_sample_value(name)


def test_disk_gauges_read_the_data_directory_filesystem_at_most_every_few_seconds(tmp_path: Path, monkeypatch) -> None:
    calls: list[Path] = []

    def usage(path: Path) -> Usage:
        calls.append(Path(path))
        return Usage(1000, 100 * len(calls), 1000 - 100 * len(calls))

    monkeypatch.setattr(metrics_mod.shutil, "disk_usage", usage)
    m = Metrics()
    m.refresh_disk(tmp_path, now=100.0)
    assert (_value(m, "iotex_disk_free_bytes"), _value(m, "iotex_disk_size_bytes")) == (900, 1000)
    m.refresh_disk(tmp_path, now=100.0 + DISK_REFRESH_S / 2)  # a scrape every second must not statvfs every second
    assert calls == [tmp_path] and _value(m, "iotex_disk_free_bytes") == 900
    m.refresh_disk(tmp_path, now=100.0 + DISK_REFRESH_S)
    assert len(calls) == 2 and _value(m, "iotex_disk_free_bytes") == 800


def test_an_unreadable_data_directory_keeps_the_last_disk_values(tmp_path: Path) -> None:
    m = Metrics()
    m.refresh_disk(tmp_path, now=0.0)
    free = _value(m, "iotex_disk_free_bytes")
    m.refresh_disk(tmp_path / "gone", now=DISK_REFRESH_S * 2)
    assert free and _value(m, "iotex_disk_free_bytes") == free


@pytest.mark.slow  # a node in this process (HTTP API)
async def test_metrics_expose_disk_space_of_the_data_directory_and_the_operator_address(tmp_path: Path) -> None:
    net = make_testnet(tmp_path / "net")
    node = await start_node(net.homes[0])
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
            http.get(node.api_url + "/metrics") as resp,
        ):
            text = await resp.text()
    finally:
        await node.stop()
    samples = {s.name: s for f in text_string_to_metric_families(text) for s in f.samples}
    real = shutil.disk_usage(node.cfg.path(node.cfg.database).parent)
    assert samples["iotex_disk_size_bytes"].value == real.total
    assert samples["iotex_disk_free_bytes"].value == pytest.approx(real.free, rel=0.01)
    assert samples["iotex_node_info"].labels["address"] == node.key.address
