"""The compatible hotfix, again and again on one lab: does a rolling restart of every delegate miss a slot?

    python bench/hotfix_runs.py [--runs 5] [--hosts local|netns] [--load-tps 20] [--keep]

Brings up a lab of 4 delegates at 1 s blocks (its own directories under /tmp), puts it under a background
load, then runs the `hotfix-compatible` runbook `--runs` times, switching every delegate, one at a time, to
the lab's compatible release and back to its base release in turn (each run restarts all four). Per run it
prints the runbook's own measures: the longest gap between finalized blocks during the rollout and the slots
missed (gaps over 1.5 block intervals), with the run's duration and result; then the totals, beside the
machine's speed reference, and after each run every delegate's own start-up moments (seconds since its
process was created: interpreter, imports, p2p, peers, caught_up, endorsement, api...). The lab is taken
down on the way out.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _speed import reference_line

from iotex_ops import network as network_mod
from iotex_ops.lab import lab as lab_mod
from iotex_ops.nodeapi import NodeApiError, NodeClient
from iotex_ops.runbook import Engine, RunStore, loader
from iotex_ops.traffic import BackgroundLoad


def _moments(client: NodeClient) -> dict[str, float]:
    """The node's own start-up moments (iotex_node_startup_seconds: seconds since its process was created)."""
    try:
        text = client.metrics()
    except NodeApiError:
        return {}
    return {m[1]: float(m[2]) for m in re.finditer(r'^iotex_node_startup_seconds\{phase="([a-z_]+)"\} (\S+)$', text, re.M)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--hosts", choices=("local", "netns"), default="local")
    ap.add_argument("--load-tps", type=float, default=20.0)
    ap.add_argument("--keep", action="store_true", help="leave the lab up (its directory is printed; `iotex-ops lab down --dir`)")
    args = ap.parse_args()
    print(reference_line(), flush=True)
    d = Path(tempfile.mkdtemp(prefix="bhf", dir="/tmp"))
    root, state_dir = d / "lab", d / "state"
    rows = []
    try:
        t0 = time.monotonic()
        state = lab_mod.up(delegates=4, hosts=args.hosts, root=root)
        print(f"lab up in {time.monotonic() - t0:.1f} s ({args.hosts} hosts)", flush=True)
        book = loader.discover()["hotfix-compatible"]
        versions = [state.releases["compatible"], state.releases["base"]]
        load = BackgroundLoad([n.api_url for n in state.nodes], Path(state.accounts_file), tps=args.load_tps, max_seconds=3600)
        load.start()
        time.sleep(2.0)
        try:
            for n in range(args.runs):
                version = versions[n % 2]
                engine = Engine(RunStore(state_dir), yes=True, lock_wait_s=60)
                with network_mod.load(Path(state.inventory)) as net:
                    res = engine.run(book, net, {"version": version})
                m = res.measures
                rows.append((res.result, res.duration_s, m.get("longest_gap_s"), m.get("missed_slots"), m.get("blocks_during")))
                gap, missed = m.get("longest_gap_s"), m.get("missed_slots")
                print(f"run {n + 1}: to {version}: {res.result} in {res.duration_s:.1f} s; longest gap {gap} s, "
                      f"missed slots {missed}, blocks {m.get('blocks_during')}"
                      + (f"; error: {res.error}" if res.error else ""), flush=True)  # fmt: skip
                for node in state.nodes:
                    moments = _moments(NodeClient(node.api_url, name=node.name, timeout=3))
                    print(f"  {node.name} restarted: " + ", ".join(f"{k} {v:.3f}" for k, v in moments.items()), flush=True)
        finally:
            load.stop()
        passed = sum(1 for r in rows if r[0] == "passed")
        missed = sum(int(r[3] or 0) for r in rows)
        longest = max((float(r[2] or 0) for r in rows), default=0.0)
        print(f"\n{len(rows)} hotfix-compatible runs ({4 * len(rows)} delegate restarts) under {args.load_tps:g} TPS: "
              f"{passed} passed; missed slots {missed} in all; longest gap {longest:.2f} s")  # fmt: skip
        print(reference_line())
        return 0 if passed == len(rows) and missed == 0 else 1
    finally:
        if args.keep:
            print(f"the lab stays up in {root}")
        else:
            lab_mod.down(root)
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
