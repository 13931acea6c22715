"""Finalized actions per second on a 4-delegate lab network, with submit-to-finalized latency.

    python bench/tps.py [--tps 1200] [--seconds 60] [--delegates 4] [--profile]

Starts the network (one process per delegate, loopback, 1 s block interval) and runs the load tool's run
(`iotex_ops.traffic.load`, what `iotex-ops load run` does) against it for --seconds from the network's
funded accounts, then prints: finalized TPS from the chain's blocks, p50/p99 latency from submit to the
block being seen finalized, CPU (% of one core) and peak RSS per node (the nodes' process_* gauges), and
with --profile where a node's time goes (py-spy). A speed reference line (bench/_speed.py) comes first.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import psutil

from iotex_ops.lab import LocalNet
from iotex_ops.traffic import load as load_mod
from iotex_ops.traffic import read_accounts

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _speed import reference_line  # noqa: E402 - beside this script


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
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--profile", action="store_true", help="sample node0 with py-spy for 20 s mid-run")
    ap.add_argument("--keep", action="store_true", help="keep the network directory")
    args = ap.parse_args()
    print(reference_line(), flush=True)

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
    spy: subprocess.Popen[bytes] | None = None
    try:
        net.start()
        net.wait_height(2, timeout=60)
        spec = load_mod.LoadSpec(
            targets=[load_mod.Target(n.name, n.api) for n in net.nodes],
            tps=args.tps,
            duration_s=args.seconds,
            funded=read_accounts(net.root, at_least=2),
            use_funded=True,  # the genesis funds every account: no payment round first
            seed=args.seed,
            batch=100,
            drain_s=15,
        )
        pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        timer = None
        if args.profile and Path(pyspy).exists():

            def sample() -> None:
                nonlocal spy
                spy = subprocess.Popen(
                    [pyspy, "record", "--pid", str(net.nodes[0].pid), "--duration", "20", "--rate", "200",
                     "--format", "raw", "--output", str(root / "profile.txt"), "--nonblocking"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip

            # the accounts' nonces are read first (a few seconds), then the load: sample node0 mid-run
            timer = threading.Timer(10.0 + min(10.0, args.seconds / 3), sample)
            timer.start()
        doc = load_mod.run(spec)
        if timer is not None:
            timer.cancel()
        tip = net.chain(0)["finalized_height"]  # type: ignore[index]
        heights_agree = len({net.block_hash(i, tip) for i in range(len(net.nodes))}) == 1
        if spy is not None:
            spy.wait(timeout=60)
    finally:
        net.stop()
    nodes: dict[str, Any] = doc["nodes"]
    result: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "ram_gib": round(psutil.virtual_memory().total / 2**30, 1)},
        "delegates": args.delegates,
        "block_interval_ms": args.block_interval_ms,
        "offered_tps": args.tps,
        "load_seconds": args.seconds,
        "submitted": doc["offered"],
        "accepted": doc["accepted"],
        "rejected": doc["refused"] - doc["refused_by_reason"].get("no_answer", 0),
        "http_errors": doc["refused_by_reason"].get("no_answer", 0),
        "finalized_of_accepted": doc["finalized"],
        "finalized_tps": doc["finalized_tps"],
        "max_actions_per_block": doc["max_actions_per_block"],
        "block_interval_s": doc["block_interval_s"],
        "latency_s": {k: doc["latency_s"][k] for k in ("p50", "p95", "p99", "max")},
        "cpu_percent_of_one_core_while_loaded": {k: v.get("cpu_percent") for k, v in nodes.items()},
        "peak_rss_mib": {k: v.get("rss_peak_mib") for k, v in nodes.items()},
        "all_nodes_agree_at_tip": heights_agree,
        "seed": doc["seed"],
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


if __name__ == "__main__":
    sys.exit(main())
