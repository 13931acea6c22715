"""Time to detect: when each alert a drill expects fired, relative to the drill's first step, while the drill's
maintenance window kept it from paging anybody.

    python bench/time_to_detect.py [--hold-s 20] [--runs 1] [--lab DIR]

Brings up a local 4-delegate lab (or uses the one at --lab), then runs first-aid (its pause held --hold-s, long
enough for the paused delegate to lag: the rehearsal's 1 s hold makes no alert fire) and hotfix-incompatible
(as the rehearsal runs it) through the engine, each in its maintenance window. Prints, per drill and run, the
`time_to_detect_s` the engine measured from Prometheus (per alert name), which expected alerts never fired,
whether any page was opened at the lab's receiver, and the speed reference.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._speed import reference_line
from iotex_ops import network as network_mod
from iotex_ops.lab import lab as lab_mod
from iotex_ops.paging.receiver import LabClient
from iotex_ops.rehearsal import drill_params
from iotex_ops.runbook import Engine, loader
from iotex_ops.runbook.store import RunStore


def run_drill(state: lab_mod.LabState, store: RunStore, name: str, params: dict[str, Any]) -> dict[str, Any]:
    books = loader.discover()
    with network_mod.load(state.inventory) as net:
        res = Engine(store, yes=True, lock_wait_s=60).run(books[name], net, params)
    detect = res.measures.get("time_to_detect_s") or {}
    return {
        "drill": name,
        "result": res.result,
        "detect": detect,
        "never": [a for a in books[name].expected_alerts if a not in detect],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hold-s", type=float, default=20.0, help="first-aid's pause (the rehearsal holds 1 s)")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--lab", type=Path, help="use the lab at this directory (default: a new one, removed after)")
    args = ap.parse_args()
    print(reference_line(), flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="ttd", dir="/tmp"))
    own = args.lab is None
    root = args.lab or tmp / "lab"
    try:
        state = lab_mod.up(root=root, say=lambda s: print(f"  lab: {s}", flush=True)) if own else lab_mod.load_state(root)
        assert state is not None, f"no lab at {root}"
        store = RunStore(tmp / "state")
        pager = LabClient.for_dir(state.pager_dir)
        before = {i["id"] for i in pager.incidents()}
        params = drill_params(state)
        rows = []
        for i in range(args.runs):
            for name, p in (("first-aid", {**params["first-aid"], "hold_s": args.hold_s}),
                            ("hotfix-incompatible", params["hotfix-incompatible"])):  # fmt: skip
                row = run_drill(state, store, name, p)
                rows.append(row)
                got = ", ".join(f"{a} {s:.2f} s" for a, s in sorted(row["detect"].items())) or "none fired"
                print(f"run {i + 1} {name}: {row['result']}; detected: {got}; never fired: {', '.join(row['never']) or '-'}")
                time.sleep(5)
            if i + 1 < args.runs:
                # hotfix-incompatible moved the lab to the next protocol's release; the next run's needs the base again
                print("  (further runs need a fresh lab: one run per lab)")
                break
        new = {i["id"] for i in pager.incidents()} - before
        print(f"pages opened at the receiver during the drills: {len(new)}")
        print(reference_line())
        return 0 if all(r["result"] == "passed" for r in rows) and not new else 1
    finally:
        if own:
            lab_mod.down(root)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
