"""Publish -> every delegate on the new release, through the release watcher, on a local lab of 4 delegates.

    python bench/releases.py [--runs 3] [--load-tps 40] [--keep]

Brings up a lab (its own directories under /tmp, local hosts, 1 s blocks) under a background load. Each run
publishes the lab's compatible release (0.1.1) as a patch on the lab's stable channel (a fresh channel and
watcher state, so the same release counts as new) and times one watcher tick under the lab's policy (patches
automatic): verify the signed manifest, fetch the artifact, hotfix-compatible one delegate at a time, every
delegate on 0.1.1. The way back to the base release is the runbook run directly (not timed). Prints per run
the wall time, the rollout's missed slots (target 0) and longest gap; then the median, the load's lost
actions and the machine's speed reference. The lab is taken down on the way out.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _speed import reference_line

from iotex_node import signed_release as sr
from iotex_ops import network as network_mod
from iotex_ops.lab import lab as lab_mod
from iotex_ops.releases import channel as channel_mod
from iotex_ops.releases import policy as policy_mod
from iotex_ops.releases.edge import EngineRollout
from iotex_ops.releases.watcher import Watcher
from iotex_ops.runbook import Engine, RunStore, loader
from iotex_ops.traffic import BackgroundLoad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--load-tps", type=float, default=40.0)
    ap.add_argument("--keep", action="store_true", help="leave the lab up (its directory is printed)")
    args = ap.parse_args()
    print(reference_line(), flush=True)
    d = Path(tempfile.mkdtemp(prefix="brel", dir="/tmp"))
    root, state_dir = d / "lab", d / "state"
    rows = []
    try:
        t0 = time.monotonic()
        st = lab_mod.up(delegates=4, hosts="local", root=root)
        print(f"lab up in {time.monotonic() - t0:.1f} s (4 delegates, local hosts)", flush=True)
        key = sr.PrivateKey.load(Path(st.publisher_key))
        tree, dist = Path(st.channel_dir), Path(st.release_dir)
        base, new = st.releases["base"], st.releases["compatible"]
        pol = policy_mod.load(Path(st.inventory).parent)  # the lab's: patches automatic, no window
        load = BackgroundLoad([n.api_url for n in st.nodes], Path(st.accounts_file), tps=args.load_tps, max_seconds=3600)
        load.start()
        try:
            for i in range(args.runs):
                # a fresh channel and watcher state per run: the same release published again as if new
                shutil.rmtree(tree / "stable", ignore_errors=True)
                shutil.rmtree(state_dir / "releases", ignore_errors=True)
                rollout = EngineRollout(st.inventory, state_dir)
                t = time.monotonic()
                channel_mod.publish(tree, dist / f"iotex-node-{new}.tar.gz", key, channel="stable", kind="patch")
                res = Watcher("lab", pol, rollout, state_dir).tick()
                wall = time.monotonic() - t
                m = rollout.last.measures if rollout.last else {}
                ok = res.result == "passed" and set(rollout.running().values()) == {new}
                rows.append((wall, m.get("missed_slots"), m.get("longest_gap_s"), ok))
                print(f"run {i + 1}: publish -> 4 delegates on {new}: {wall:.1f} s, missed slots {m.get('missed_slots')}, "
                      f"longest gap {m.get('longest_gap_s')} s, {res.result}", flush=True)  # fmt: skip
                with network_mod.load(st.inventory) as net:  # back to the base release (not timed)
                    back = Engine(RunStore(state_dir), yes=True, report=False).run(
                        loader.find("hotfix-compatible"), net, {"version": base}
                    )
                if str(back.result) != "passed":
                    print(f"the way back to {base} failed: {back.error}", flush=True)
                    break
        finally:
            load.stop()
        lost = load.lost(wait=30)
        walls = [r[0] for r in rows if r[3]]
        print(reference_line())
        if walls:
            print(f"publish -> every delegate on the new release: median {statistics.median(walls):.1f} s "
                  f"(min {min(walls):.1f}, max {max(walls):.1f}) over {len(walls)} runs on 4 local delegates")  # fmt: skip
        print(f"missed slots per rollout: {[r[1] for r in rows]} (target 0); longest gaps {[r[2] for r in rows]} s")
        print(f"load at {args.load_tps:g} TPS: {lost['accepted']} accepted, {lost['final']} final, {lost['lost']} lost")
        return 0 if rows and all(r[3] and r[1] == 0 for r in rows) else 1
    finally:
        if args.keep:
            print(f"lab left up at {root}")
        else:
            lab_mod.down(root)
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
