"""A flood against a lone one-delegate node process (no lab): how the same flood goes with the node's limits
on and with them off (every limit set very high). Used by tests/ops/test_flood_limits.py and bench/flood.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from iotex_node import config, testnet
from iotex_ops.flood import attacks as fa
from iotex_ops.flood.plan import FloodPlan, loopback_sources
from iotex_ops.nodeapi import NodeApiError, NodeClient

NODE = str(Path(sys.executable).parent / "iotex-node")
# every flood limit of the node (docs/node.md, "Limits under a flood") set so high that it never applies
LIMITS_OFF: dict[str, Any] = {
    "header_timeout_s": 3600.0,
    "body_timeout_s": 3600.0,
    "max_connections": 1_000_000,
    "max_connections_per_client": 1_000_000,
    "rate_limit_per_second": 1e9,
    "rate_limit_burst": 1_000_000_000,
    "max_handshakes": 1_000_000,
    "max_handshakes_per_ip": 1_000_000,
    "handshake_timeout_s": 3600.0,
}


def proc_usage(pid: int) -> tuple[float, int]:
    """A process's RSS (MB) and open files."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    rss = next(int(ln.split()[1]) for ln in status if ln.startswith("VmRSS"))
    return rss / 1024, len(os.listdir(f"/proc/{pid}/fd"))


def flood_solo(root: Path, overrides: dict[str, Any], duration_s: float, **plan: Any) -> dict[str, Any]:
    """Start a one-delegate node under `root` with config `overrides`, flood it for `duration_s` (`plan`: the
    FloodPlan's counts and attacks), and say what happened to it: the attackers' tally, the node's peak open
    files and RSS, the longest an honest GET /v1/chain took during the flood, blocks finalized during the flood,
    and how soon after it /readyz answered ready. The node is stopped before this returns."""
    (home,) = testnet.generate(testnet.TestnetSpec(delegates=1, out=root, accounts=0))
    cfg = config.load(home)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    cfg.write()
    cfg = config.load(home)
    with (root / "node.log").open("w") as log:
        proc = subprocess.Popen([NODE, "run", "--home", str(home)], stdout=log, stderr=subprocess.STDOUT)
        try:
            return _flood(proc, cfg, root, duration_s, plan)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _flood(
    proc: subprocess.Popen[bytes], cfg: config.NodeConfig, root: Path, duration_s: float, kw: dict[str, Any]
) -> dict[str, Any]:
    api = NodeClient(f"http://{cfg.api_listen}", timeout=2)
    deadline = time.monotonic() + 30
    c = None
    while time.monotonic() < deadline:
        c = api.try_chain(timeout=1)
        if c is not None and c.finalized_height >= 1:
            break
        time.sleep(0.2)
    if c is None or c.finalized_height < 1:
        raise RuntimeError(f"the node did not start: {(root / 'node.log').read_text()[-2000:]}")
    api_host, api_port = cfg.api_listen.rsplit(":", 1)
    p2p_host, p2p_port = cfg.p2p_listen.rsplit(":", 1)
    plan = FloodPlan(
        api_host=api_host, api_port=int(api_port), p2p_host=p2p_host, p2p_port=int(p2p_port), duration_s=duration_s,
        sources=loopback_sources(api_host, 8), **{"max_rps": 5000.0, **kw},
    )  # fmt: skip
    target = fa.Target(c.chain_id, c.min_fee or 1, c.genesis_hash or "", [], c.finalized_height)
    samples: list[tuple[float, int]] = []
    probes: list[float] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            samples.append(proc_usage(proc.pid))
            t = time.monotonic()
            try:
                api.chain(timeout=5)
                probes.append(time.monotonic() - t)
            except NodeApiError:
                probes.append(5.0)
            stop.wait(0.2)

    h0 = api.chain().finalized_height
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        tally = fa.run_niced(plan, target)
    finally:
        stop.set()
        watcher.join(10)
    h1 = api.try_chain(timeout=5)
    started = time.monotonic()
    while time.monotonic() - started < 10:
        try:
            if api.get_json("/readyz", timeout=1).get("status") == "ready":
                break
        except NodeApiError:
            pass
        time.sleep(0.1)
    return {
        "tally": tally,
        "peak_fds": max(f for _, f in samples),
        "peak_rss_mb": round(max(r for r, _ in samples), 1),
        "slowest_probe_s": round(max(probes), 3),
        "blocks": (h1.finalized_height if h1 else h0) - h0,
        "recovery_s": round(time.monotonic() - started, 3),
    }
