"""IoTeX's active set on one machine: 24 delegate processes at a 5 s block interval for 5 minutes.

    python bench/delegates24.py [--delegates 24] [--block-interval-ms 5000] [--seconds 300]

Passes when every slot in the window was filled: each height finalized in round 0 (its scheduled
proposer's block), no missed slot in any delegate's productivity, blocks about one interval apart, and
all nodes agree on the final block. Prints per-node CPU and memory.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

from iotex_ops.lab import LocalNet


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--delegates", type=int, default=24)
    ap.add_argument("--block-interval-ms", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=300.0)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="iotex-bench-24-"))
    epoch_length = args.delegates * 15  # like IoTeX: each delegate proposes several times an epoch
    net = LocalNet.generate(
        root / "net",
        args.delegates,
        block_interval_ms=args.block_interval_ms,
        epoch_length=epoch_length,
        propose_timeout_ms=3000,
    )
    try:
        t0 = time.time()
        net.start()
        net.wait_height(1, timeout=180)
        startup = time.time() - t0
        # Measure from the first height every node has reached, once all are connected and running.
        net.wait_for("all nodes connected", lambda: all((c := net.chain(i)) and c["peers"] >= args.delegates - 1
                                                        for i in range(args.delegates)), 120)  # fmt: skip
        start_h = max(h for h in net.heights() if h is not None) + 1
        net.wait_height(start_h, timeout=60)
        procs = [psutil.Process(n.pid) for n in net.nodes if n.pid]
        cpu0 = [sum(p.cpu_times()[:2]) for p in procs]
        t_start = time.time()
        peak = [0] * len(procs)
        while time.time() - t_start < args.seconds:
            time.sleep(2)
            for i, p in enumerate(procs):
                peak[i] = max(peak[i], p.memory_info().rss)
        wall = time.time() - t_start
        cpu = [100.0 * (sum(p.cpu_times()[:2]) - c0) / wall for p, c0 in zip(procs, cpu0, strict=True)]
        end_h = min(h for h in net.heights() if h is not None)
        headers = [net.get(0, f"/v1/blocks/{h}")["header"] for h in range(start_h, end_h + 1)]
        rounds = [h["round"] for h in headers]
        intervals = [(b["timestamp_ms"] - a["timestamp_ms"]) / 1000 for a, b in itertools.pairwise(headers)]
        agree = len({net.block_hash(i, end_h) for i in range(args.delegates)}) == 1
        expected = int(wall * 1000 / args.block_interval_ms)
    finally:
        net.stop()
        shutil.rmtree(root, ignore_errors=True)
    missed = sum(rounds)
    result = {
        "machine": {"cpus": os.cpu_count(), "ram_gib": round(psutil.virtual_memory().total / 2**30, 1)},
        "delegates": args.delegates,
        "block_interval_ms": args.block_interval_ms,
        "window_s": round(wall, 1),
        "startup_to_first_block_s": round(startup, 1),
        "heights": [start_h, end_h],
        "blocks": len(headers),
        "slots_in_window": expected,
        "blocks_not_in_round_0": sum(1 for r in rounds if r),
        "missed_slots": missed,
        "block_interval_s": {
            "mean": round(statistics.mean(intervals), 3) if intervals else None,
            "max": round(max(intervals, default=0), 3),
        },
        "cpu_percent_of_one_core": {"mean": round(statistics.mean(cpu), 1), "max": round(max(cpu), 1)},
        "peak_rss_mib": {"mean": round(statistics.mean(peak) / 2**20, 1), "max": round(max(peak) / 2**20, 1)},
        "all_nodes_agree": agree,
    }
    print(json.dumps(result, indent=2))
    ok = agree and missed == 0 and len(headers) >= expected - 1
    print("PASS: every slot filled" if ok else "FAIL: slots were missed or nodes disagree")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
