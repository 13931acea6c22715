"""The load tool against 4 local delegates, several node variants side by side in one run.

    python bench/journal_load.py --tps 1000 --seconds 60 [--variant new:fsync --variant old=DIR:fsync ...]
                                 [--rounds 1] [--profile SECONDS]

A variant is `LABEL[=NODE_SOURCE_DIR]:DURABILITY`: the node code (the directory that holds the `iotex_node`
package, put first on the nodes' PYTHONPATH; default: this tree) and `[mempool] durability` on every node.
Each variant gets a fresh LocalNet (as bench/tps.py makes it: 1 s blocks, rate limit off, 3,000 funded
accounts) and the same load (`iotex_ops.traffic.load.run`, what `iotex-ops load run` does); rounds alternate
the variants so that a busy machine hurts them alike. Printed per run: the speed reference (bench/_speed.py,
taken just before), finalized TPS, p50/p99 submit->final, the p99 wait for an answer, CPU per node, and node0's
journal commits/s and writes per commit (its /metrics, when the code exports them). `--profile S`: py-spy
(every thread, idle included) samples node0 from its start to S seconds into the load, and its top frames are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _speed import reference_line  # noqa: E402 - beside this script
from tps import summarize_profile  # noqa: E402

from iotex_node import config as config_mod  # noqa: E402
from iotex_ops.lab import LocalNet  # noqa: E402
from iotex_ops.traffic import load as load_mod  # noqa: E402
from iotex_ops.traffic import read_accounts  # noqa: E402

PYSPY = os.environ.get("PYSPY", "/tmp/pyspy/bin/py-spy")


def journal_counters(api: str) -> dict[str, float]:
    try:
        text = urllib.request.urlopen(api + "/metrics", timeout=5).read().decode()  # noqa: S310 - the lab's http URL
    except OSError:
        return {}
    out = {}
    for name in ("commits", "writes", "commit_seconds"):
        m = re.search(rf"^iotex_mempool_journal_{name}_total (\S+)$", text, re.M)
        if m:
            out[name] = float(m.group(1))
    return out


def run_variant(label: str, src: str | None, durability: str, args: argparse.Namespace) -> dict[str, Any]:
    ref = reference_line()
    root = Path(tempfile.mkdtemp(prefix=f"iotex-bench-jl-{label}-"))
    net = LocalNet.generate(
        root / "net",
        4,
        accounts=3000,
        rate_limit=1e6,
        block_interval_ms=1000,
        epoch_length=100,
        extra={"max_block_actions": 5000, "mempool_max_per_sender": 2000},
    )
    for n in net.nodes:
        cfg = config_mod.load(n.home)
        cfg.mempool_durability = durability
        cfg.write()
    env = {"PYTHONPATH": src} if src else {}
    prof = root / "profile.txt"
    spied: int | None = None
    try:
        if args.profile:
            # py-spy cannot attach to a running node here; it starts node0 as its child instead, and samples
            # from the start for the start-up (~10 s) and `--profile` seconds of the load
            wrapper = root / "pyspy-python.sh"
            wrapper.write_text(
                f"#!/bin/sh\nexec {PYSPY} record --rate 100 --threads --idle --format raw --output {prof} "
                f'--nonblocking --duration {int(args.profile) + 12} -- {net.python} "$@"\n'
            )
            wrapper.chmod(0o755)
            python, net.python = net.python, str(wrapper)
            spied = net.start_node(0, env=env).pid
            net.python = python
        for i in range(len(net.nodes)):
            net.start_node(i, env=env)
        net.wait_height(2, timeout=60)
        spec = load_mod.LoadSpec(
            targets=[load_mod.Target(n.name, n.api) for n in net.nodes],
            tps=args.tps,
            duration_s=args.seconds,
            funded=read_accounts(net.root, at_least=2),
            use_funded=True,
            seed=args.seed,
            batch=max(1, int(args.tps / 10)),
            drain_s=args.drain,
        )
        before = journal_counters(net.nodes[0].api)
        doc = load_mod.run(spec)
        after = journal_counters(net.nodes[0].api)
    finally:
        net.stop()
        if spied is not None:  # node0's session (py-spy and the node it started): nothing of it outlives the run
            with contextlib.suppress(ProcessLookupError):
                os.killpg(spied, signal.SIGKILL)
    res: dict[str, Any] = {
        "variant": label,
        "durability": durability,
        "speed_ref": ref,
        "offered_tps": doc["offered_tps"],
        "finalized_tps": doc["finalized_tps"],
        "final/accepted/offered": f"{doc['finalized']}/{doc['accepted']}/{doc['offered']}",
        "p50": doc["latency_s"]["p50"],
        "p99": doc["latency_s"]["p99"],
        "answer_p99": (doc.get("answer_s") or {}).get("p99"),
        "block_interval": doc["block_interval_s"],
        "cpu": {k: v.get("cpu_percent") for k, v in doc["nodes"].items()},
    }
    if after and before:
        commits = after["commits"] - before["commits"]
        writes = after["writes"] - before["writes"]
        res["node0_journal"] = {
            "commits": commits,
            "writes_per_commit": round(writes / commits, 1) if commits else None,
            "seconds_in_commits": round(after["commit_seconds"] - before["commit_seconds"], 2),
        }
    if prof.exists():
        res["profile"] = [f"{share:5.1f}%  {fn}" for fn, share in summarize_profile(prof, top=int(args.top))]
    if args.keep:
        res["root"] = str(root)
    else:
        shutil.rmtree(root, ignore_errors=True)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tps", type=float, default=1000.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--drain", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--variant", action="append", help="LABEL[=NODE_SOURCE_DIR]:DURABILITY (repeatable)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--profile", type=float, default=0.0, help="py-spy node0 for this many seconds mid-run")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    variants = []
    for v in args.variant or ["new:fsync"]:
        head, _, durability = v.rpartition(":")
        label, _, src = head.partition("=")
        variants.append((label, src or None, durability))
    for r in range(args.rounds):
        for label, src, durability in variants:
            res = run_variant(label, src, durability, args)
            res["round"] = r + 1
            print(json.dumps(res, indent=1), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
