"""The failover drill's figures on a fresh lab of 4 delegates at 1 s blocks with a hot standby of node3.

    python bench/failover.py [--runs 3] [--tps 300] [--mode kill|partition]

Each run is `iotex-ops runbook run failover` (mode kill: node3's primary gets SIGKILL, its standby is promoted,
the old primary comes back as the standby), then a switchover that hands the key back (its own figures are
printed too, not counted). `--mode partition` (root): the lab is a netns lab (`--hosts netns --standby node3`,
its prefix and subnet from $IOTEX_OPS_NETNS_PREFIX/_SUBNET), and the primary is cut off its peers while it runs
instead (demoted by the drill before the heal). Printed per run and as the median over the runs, beside their
targets:

    to signing     the fault (SIGKILL, or the cut) -> the moment the new primary signed its first precommit for
                   a block that became final (its signing record)                      target <= 10 s
    missed slots   the delegate's proposer slots that passed without its block, from the kill to that block
                                                                                        target <= 2
    fence gap      heights between the tip at the kill and the first height the new primary may sign
    lost           transfers accepted during the run (at --tps) that never became final  target 0
    double-signed  heights signed by both holders (every certificate + both signing records) target 0

and the machine's speed reference (bench/_speed.py). The lab is removed on the way out.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _speed import reference_line

from iotex_ops.lab import lab as lab_mod

IOTEX_OPS = str(Path(sys.executable).parent / "iotex-ops")


def drill(root: Path, state: Path, *args: str) -> dict[str, Any]:
    env = {**os.environ, "IOTEX_OPS_LAB_DIR": str(root), "IOTEX_OPS_STATE_DIR": str(state), "LC_ALL": "C.UTF-8"}
    res = subprocess.run(
        [IOTEX_OPS, "runbook", "run", "failover", "--yes", "--json", *args], env=env, capture_output=True, text=True, timeout=600
    )
    try:
        doc = json.loads(res.stdout)
    except ValueError:
        raise SystemExit(f"the drill printed no JSON (exit {res.returncode}): {res.stderr[-2000:]}") from None
    if doc.get("result") != "passed":
        raise SystemExit(f"the drill did not pass: {doc.get('result')}: {doc.get('error')}")
    return dict(doc["measures"])


def row(label: str, m: dict[str, Any]) -> str:
    gap = (m["fence"] - m["fault_height"]) if m.get("fence") is not None else None
    lost = m.get("lost_actions", "-")
    return (
        f"{label:14} to signing {m['time_to_signing_s']:6.2f} s   missed slots {m['missed_slots']}   fence gap {gap}   "
        f"lost {lost}   double-signed {m['double_signed_heights']}   "
        f"(fault at {m['fault_height']}, signed {m['first_signed_height']})"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tps", type=float, default=300.0)
    ap.add_argument("--mode", choices=("kill", "partition"), default="kill")
    args = ap.parse_args()
    hosts = "netns" if args.mode == "partition" else "local"
    if hosts == "netns" and os.geteuid() != 0:
        raise SystemExit("--mode partition needs the netns lab: run as root")
    d = Path(tempfile.mkdtemp(prefix="bfo", dir="/tmp"))
    root = d / "lab"
    try:
        print(f"bringing up a 4-delegate {hosts} lab with a hot standby of node3 ...", flush=True)
        state = lab_mod.up(4, hosts, 1000, root, standby="node3")
        print(f"lab up in {state.timings.get('up_to_first_block_s', 0):.1f}s (with the standby)", flush=True)
        runs: list[dict[str, Any]] = []
        for i in range(args.runs):
            m = drill(root, d / "state", "-e", "delegate=node3", "-e", f"mode={args.mode}", "-e", f"tps={args.tps:g}")
            runs.append(m)
            print(row(f"run {i + 1} {args.mode}", m), flush=True)
            back = drill(root, d / "state", "-e", "delegate=node3", "-e", "mode=switchover")
            print(row("  switchover", back), flush=True)
        print()
        med = statistics.median
        what = "kill -9 of the primary" if args.mode == "kill" else "the primary cut off its peers (netns)"
        print(f"failover ({what}, {args.tps:g} TPS of transfers), median of {len(runs)} runs:")
        print(f"  to signing     {med(r['time_to_signing_s'] for r in runs):.2f} s   (target <= 10 s)")
        missed = [r["missed_slots"] for r in runs]
        print(f"  missed slots   {med(missed):g}   max {max(missed)}   (target <= 2)")
        lost = sum(int(r.get("lost_actions") or 0) for r in runs)
        print(f"  lost actions   {lost} of {sum(int(r.get('accepted_actions') or 0) for r in runs)} accepted")
        print(f"  double-signed  {sum(int(r['double_signed_heights']) for r in runs)} heights")
        print(reference_line())
    finally:
        lab_mod.down(root)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
