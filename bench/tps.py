"""Finalized actions per second on a 4-delegate lab network, with submit-to-finalized latency.

    python bench/tps.py [--tps 1200] [--seconds 60] [--delegates 4] [--profile]

Starts the network (one process per delegate, loopback, 1 s block interval), injects signed transfers
from a separate load-generator process for --seconds, watches finalized blocks on one node, and prints:
finalized TPS over the loaded window, p50/p99 latency from submit to the block being seen finalized,
CPU (% of one core) and peak RSS per node, and with --profile where a node's time goes (py-spy).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from iotex_ops.lab import LocalNet

HERE = Path(__file__).resolve().parent


def percentile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def summarize_profile(raw: Path, top: int = 25) -> list[tuple[str, float]]:
    """Self-time share per function from py-spy's collapsed stacks."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        k = int(n)
        total += k
        leaf = stack.split(";")[-1]
        func, _, where = leaf.partition(" (")
        counts[f"{func} ({where.rsplit(':', 1)[0]})"] += k
    return [(f, 100.0 * c / total) for f, c in counts.most_common(top)] if total else []


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tps", type=float, default=1200.0, help="offered load (actions/s)")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--delegates", type=int, default=4)
    ap.add_argument("--accounts", type=int, default=3000)
    ap.add_argument("--block-interval-ms", type=int, default=1000)
    ap.add_argument("--profile", action="store_true", help="sample node0 with py-spy for 20 s mid-run")
    ap.add_argument("--keep", action="store_true", help="keep the network directory")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="iotex-bench-tps-"))
    net = LocalNet.generate(
        root / "net",
        args.delegates,
        accounts=args.accounts,
        rate_limit=1e6,
        block_interval_ms=args.block_interval_ms,
        epoch_length=100,
        extra={"max_block_actions": 5000, "mempool_max_per_sender": 2000},
    )
    observed: dict[str, float] = {}
    blocks: list[tuple[int, int, float, int]] = []  # height, actions, seen at, block timestamp ms
    procs: dict[str, psutil.Process] = {}
    cpu0: dict[str, float] = {}
    peak_rss: dict[str, int] = collections.defaultdict(int)
    try:
        net.start()
        net.wait_height(2, timeout=60)
        for n in net.nodes:
            assert n.pid is not None
            procs[n.name] = psutil.Process(n.pid)
            ct = procs[n.name].cpu_times()
            cpu0[n.name] = ct.user + ct.system
        submits_file = root / "submits.json"
        height = net.chain(0)["finalized_height"]  # type: ignore[index]
        t_start = time.time()
        load = subprocess.Popen(
            [sys.executable, str(HERE / "loadgen.py"), "--net", str(net.root), "--tps", str(args.tps),
             "--seconds", str(args.seconds), "--out", str(submits_file)],
        )  # fmt: skip
        spy: subprocess.Popen[bytes] | None = None
        pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        spy_at = t_start + min(10.0, args.seconds / 3) if args.profile and Path(pyspy).exists() else None
        drain_until = None
        while True:
            now = time.time()
            if load.poll() is not None and drain_until is None:
                drain_until = now + 15
                load_wall = now - t_start
                cpu = {}
                for name, p in procs.items():
                    ct = p.cpu_times()
                    cpu[name] = 100.0 * (ct.user + ct.system - cpu0[name]) / load_wall
            if drain_until is not None and now > drain_until:
                break
            if now - t_start > args.seconds + 120:
                break
            if spy_at is not None and now >= spy_at:
                spy_at = None  # sample node0 mid-run, without pausing this observer
                spy = subprocess.Popen(
                    [pyspy, "record", "--pid", str(net.nodes[0].pid), "--duration", "20", "--rate", "200",
                     "--format", "raw", "--output", str(root / "profile.txt"), "--nonblocking"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            c = net.chain(0)
            if c is not None and c["finalized_height"] > height:
                seen = time.time()
                for h in range(height + 1, c["finalized_height"] + 1):
                    b = net.get(0, f"/v1/blocks/{h}", timeout=10)
                    for a in b["actions"]:
                        observed.setdefault(_hash_of(a), seen)
                    blocks.append((h, len(b["actions"]), seen, b["header"]["timestamp_ms"]))
                height = c["finalized_height"]
            for name, p in procs.items():
                with contextlib.suppress(psutil.Error):
                    peak_rss[name] = max(peak_rss[name], p.memory_info().rss)
            time.sleep(0.05)
        load.wait(timeout=60)
        if spy is not None:
            spy.wait(timeout=60)
        sub = json.loads(submits_file.read_text())
        heights_agree = len({net.block_hash(i, height) for i in range(len(net.nodes))}) == 1
    finally:
        net.stop()
    submits = {h: t for h, t in sub["submits"]}
    lat = [observed[h] - t for h, t in submits.items() if h in observed]
    loaded = [b for b in blocks if b[1] > 0]
    if len(loaded) >= 2:
        span = (loaded[-1][3] - loaded[0][3]) / 1000.0
        tps = sum(b[1] for b in loaded[1:]) / span if span > 0 else float("nan")
    else:
        span, tps = 0.0, float("nan")
    per_block = [b[1] for b in loaded]
    intervals = [(b[3] - a[3]) / 1000 for a, b in itertools.pairwise(blocks)]
    result: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "ram_gib": round(psutil.virtual_memory().total / 2**30, 1)},
        "delegates": args.delegates,
        "block_interval_ms": args.block_interval_ms,
        "offered_tps": args.tps,
        "load_seconds": args.seconds,
        "submitted": len(submits) + sub["rejected"] + sub["errors"],
        "accepted": len(submits),
        "rejected": sub["rejected"],
        "http_errors": sub["errors"],
        "finalized_of_accepted": len(lat),
        "finalized_tps": round(tps, 1),
        "loaded_window_s": round(span, 1),
        "actions_per_block": {"mean": round(statistics.mean(per_block), 1) if per_block else 0, "max": max(per_block, default=0)},
        "block_interval_s": {"p50": round(percentile(intervals, 0.5), 3), "max": round(max(intervals, default=0), 3)},
        "latency_s": {
            "p50": round(percentile(lat, 0.5), 3),
            "p99": round(percentile(lat, 0.99), 3),
            "max": round(max(lat, default=0), 3),
        },
        "cpu_percent_of_one_core_while_loaded": {k: round(v, 1) for k, v in cpu.items()},
        "peak_rss_mib": {k: round(v / 2**20, 1) for k, v in peak_rss.items()},
        "all_nodes_agree_at_tip": heights_agree,
    }
    print(json.dumps(result, indent=2))
    prof = root / "profile.txt"
    if prof.exists():
        print("\nnode0 self time (py-spy, 20 s under load):")
        for fn, share in summarize_profile(prof):
            print(f"  {share:5.1f}%  {fn}")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"kept {root}")
    return 0 if heights_agree else 1


def _hash_of(wire: dict[str, Any]) -> str:
    from iotex_node.sdk import action_hash

    return action_hash(wire)


if __name__ == "__main__":
    sys.exit(main())
