"""The disk and database fault drills on the shared local lab (issue 17): fault-disk-full (the victim's data
volume, a tmpfs of its own, filled below the node's guard and then to its last byte: writes pause, the
database stays whole, the node comes back by itself) and fault-corrupt-db (pages of a stopped node's database
overwritten: it refuses to start naming the file; rebuild-node's steps restore it). Each leaves the lab
healthy. With `-s` the figures are printed.

The lab's alertd keeps running: the drills hold the network's lock, so its remediations wait (deferred), and
the pages it sends meanwhile are checked for links a reader can open (127.0.0.1, where Prometheus listens)."""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from iotex_ops import network
from iotex_ops.lab import lab as lab_mod
from iotex_ops.paging.receiver import LabClient
from iotex_ops.runbook import Engine, RunResult, loader
from iotex_ops.runbook.events import Result
from iotex_ops.runbook.store import RunStore
from tests.ops.conftest import SharedLab

pytestmark = [
    pytest.mark.slow,
    pytest.mark.network,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="the lab needs the Debian prometheus package"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the drill mounts a tmpfs for the victim's data: root only"),
]


@pytest.fixture(scope="module")
def lab(shared_lab: SharedLab) -> Iterator[lab_mod.LabState]:
    yield shared_lab.get()


def run(lab: lab_mod.LabState, state: Path, name: str, **params: Any) -> RunResult:
    with network.load(lab.inventory) as n:
        return Engine(RunStore(state), yes=True, report=False).run(loader.find(name), n, params)


def wait_healthy(lab: lab_mod.LabState, name: str, timeout: float = 90) -> None:
    with network.load(lab.inventory) as net:
        deadline = time.monotonic() + timeout
        while True:
            problems = net.standing(name).problems(max_lag=2)
            if not problems:
                return
            assert time.monotonic() < deadline, f"{name} not healthy: {problems}"
            time.sleep(0.25)


def mounts() -> str:
    return Path("/proc/mounts").read_text()


def test_fault_disk_full_pauses_writes_keeps_the_database_whole_and_comes_back(lab: lab_mod.LabState, tmp_path: Path) -> None:
    victim = lab.nodes[-1].name
    t0 = time.monotonic()
    try:
        res = run(lab, tmp_path, "fault-disk-full", host=victim, hold_s=3.0)
        assert res.result is Result.PASSED, res.error
        m = dict(res.measures)
        print(f"\nfault-disk-full on {victim}: {m} ({time.monotonic() - t0:.1f}s)")
        assert m["db_check"]["ok"] is True and m["db_check"]["problems"] == []
        assert m["pause_s"] is not None and m["pause_s"] < 5
        assert m["resume_s"] is not None and m["resume_s"] < 30
        full = m["full"]
        assert full["free"] < 1024 * 1024  # the volume was really full
        assert full["peers_to"] > full["peers_from"]  # the others finalized meanwhile
    finally:
        assert "fault-disk-full" not in mounts()  # the drill's volume is gone, whatever happened
        wait_healthy(lab, victim)


def test_fault_corrupt_db_is_refused_by_name_and_rebuilt(lab: lab_mod.LabState, tmp_path: Path) -> None:
    victim = lab.nodes[1].name
    t0 = time.monotonic()
    try:
        res = run(lab, tmp_path, "fault-corrupt-db", host=victim)
        assert res.result is Result.PASSED, res.error
        m = dict(res.measures)
        print(f"\nfault-corrupt-db on {victim}: {m} ({time.monotonic() - t0:.1f}s)")
        assert m["detect_s"] < 15
        assert "chain.db" in m["refusal"] and "damaged" in m["refusal"]
        assert m["db_check"]["ok"] is True
    finally:
        wait_healthy(lab, victim)


def test_pages_sent_during_the_drills_link_to_where_prometheus_listens(lab: lab_mod.LabState) -> None:
    # Prometheus makes its alerts' links (generatorURL) from its external URL: the address it listens on
    with urllib.request.urlopen(lab.prometheus_url + "/api/v1/status/flags", timeout=5) as resp:  # noqa: S310
        flags = json.loads(resp.read())["data"]
    assert urlsplit(flags["web.external-url"]).hostname == "127.0.0.1", flags["web.external-url"]
    links = [link for i in LabClient.for_dir(lab.pager_dir).incidents() for link in i.get("links") or []]
    prom = [link["href"] for link in links if "Prometheus" in link.get("text", "")]
    print(f"\n{len(prom)} Prometheus link(s) in the lab's pages: {sorted(set(prom))[:3]}")
    assert {urlsplit(h).hostname for h in prom} <= {"127.0.0.1"}, prom
