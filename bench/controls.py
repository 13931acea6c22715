"""How fast the operator controls act on a 4-delegate lab network (1 s blocks).

    python bench/controls.py [--rounds 3]

Prints, per round and as medians:
- pause -> halted: from the first pause command until the finalized height stops moving for good
  (the time of the last new block, measured on every node);
- resume -> first new block: from the first resume command until any node finalizes a new block;
- halt-at-H -> all halted: from scheduling H = tip + 3 until every node reports "halted at H"
  (about three block intervals of that is the chain legitimately reaching H).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from iotex_node import admin as admin_mod
from iotex_node import config as config_mod
from iotex_ops.lab import LocalNet


def _admin(net: LocalNet, i: int, path: str, body: dict[str, object] | None = None) -> dict[str, object]:
    return dict(admin_mod.call(config_mod.load(net.nodes[i].home), "POST" if path != "/status" else "GET", path, body))


def _max_height(net: LocalNet) -> int:
    return max(h for h in net.heights() if h is not None)


def measure_pause(net: LocalNet, quiet: float = 3.0) -> tuple[float, float]:
    """(seconds from the first pause until the last block finalized, 0 if none; seconds to pause all)."""
    height = _max_height(net)
    t0 = time.monotonic()
    for i in range(len(net.nodes)):
        _admin(net, i, "/pause", {})
    issued = time.monotonic() - t0
    last_change = t0
    while time.monotonic() - last_change < quiet:
        h = _max_height(net)
        if h != height:
            height, last_change = h, time.monotonic()
        time.sleep(0.02)
    return last_change - t0, issued


def measure_resume(net: LocalNet) -> float:
    h0 = _max_height(net)
    t0 = time.monotonic()
    for i in range(len(net.nodes)):
        _admin(net, i, "/resume", {})
    while _max_height(net) <= h0:
        if time.monotonic() - t0 > 60:
            raise SystemExit(f"no block finalized within 60 s of resuming at height {h0}; network kept in {net.root}")
        time.sleep(0.01)
    return time.monotonic() - t0


def measure_halt(net: LocalNet) -> tuple[float, int]:
    target = _max_height(net) + 3
    t0 = time.monotonic()
    for i in range(len(net.nodes)):
        _admin(net, i, "/halt", {"height": target})
    n = len(net.nodes)
    while sum(1 for i in range(n) if _admin(net, i, "/status")["halted"] == f"halted at {target}: scheduled") < n:
        time.sleep(0.02)
    elapsed = time.monotonic() - t0
    for i in range(n):
        _admin(net, i, "/halt", {"clear": True})
    return elapsed, target


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="iotex-bench-controls-"))
    results: dict[str, list[float]] = {
        "pause_commands_all_nodes_s": [],
        "pause_to_halted_s": [],
        "resume_to_first_block_s": [],
        "halt_at_h_to_all_halted_s": [],
    }
    try:
        net = LocalNet.generate(root / "net", 4, block_interval_ms=1000)
        with net:
            net.start()
            net.wait_height(3, timeout=60)
            for _ in range(args.rounds):
                halted, issued = measure_pause(net)
                results["pause_to_halted_s"].append(halted)
                results["pause_commands_all_nodes_s"].append(issued)
                results["resume_to_first_block_s"].append(measure_resume(net))
                time.sleep(2)
                elapsed, _target = measure_halt(net)
                results["halt_at_h_to_all_halted_s"].append(elapsed)
                time.sleep(2)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    out = {
        "machine": {"cpus": os.cpu_count()},
        "delegates": 4,
        "block_interval_ms": 1000,
        "rounds": args.rounds,
        **{k: {"median": round(statistics.median(v), 3), "all": [round(x, 3) for x in v]} for k, v in results.items()},
        "notes": [
            "pause_to_halted is from the first pause command to the last block finalized after it (0: none was)",
            "halt-at-H includes ~3 block intervals of the chain legitimately reaching H = tip + 3",
        ],
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
