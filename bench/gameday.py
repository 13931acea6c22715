"""Game-day figures: per fault drill, the median over --runs runs of time to detect, to page and to recover.

    python bench/gameday.py [--runs 3] [--fault fault-kill --fault fault-freeze] [--freeze-s 6] [--lab DIR]

Brings up a local 4-delegate lab (or uses the one at --lab; a new one is taken down and removed after), then
runs each fault drill --runs times through `iotex_ops.faults.gameday.run` (a quiet network before each, the
victim drawn with seeds 1, 2, 3...), with the lab's own Prometheus, Alertmanager, alertd and PagerDuty
receiver: detect is fault -> alert firing (Prometheus ALERTS), page is fault -> incident at the receiver,
recover is fault -> the victim finalizing and signing again. Prints every run, the medians against the
targets (detect <= 3 s, recover <= 10 s for kill and freeze) and the speed reference before and after.
Exits 1 if a drill did not pass.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._speed import reference_line
from iotex_ops import network as network_mod
from iotex_ops.faults import core
from iotex_ops.faults import gameday as gd
from iotex_ops.lab import lab as lab_mod
from iotex_ops.runbook.store import RunStore

SHOWN = ("time_to_detect_s", "time_to_page_s", "time_to_recover_s")


def _n(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--fault", action="append", dest="faults", help="a fault drill (repeatable; default kill and freeze)")
    ap.add_argument("--freeze-s", type=float, default=12.0, help="fault-freeze's freeze_s")
    ap.add_argument("--lab", type=Path, help="use the lab at this directory (default: a new one, removed after)")
    args = ap.parse_args()
    faults = tuple(args.faults or gd.DEFAULT_FAULTS)
    print(reference_line(), flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="gdb", dir="/tmp"))
    own = args.lab is None
    root = args.lab or tmp / "lab"
    ok = True
    try:
        state = lab_mod.up(root=root, say=lambda s: print(f"  lab: {s}", flush=True)) if own else lab_mod.load_state(root)
        assert state is not None, f"no lab at {root}"
        store = RunStore(tmp / "state")
        results: dict[str, list[dict[str, float | None]]] = {f: [] for f in faults}
        with network_mod.load(state.inventory) as net:
            seed = 1
            for i in range(args.runs):
                for f in faults:
                    params = {"seed": seed, "tps": 0, **({"freeze_s": args.freeze_s} if f == "fault-freeze" else {})}
                    seed += 1
                    (o,) = gd.run(net, store, [f], {f: params}, say=lambda s: print(f"  {s}", flush=True))
                    ok = ok and o.result == "passed"
                    row = {k: o.measures.get(k) for k in SHOWN}
                    results[f].append(row)
                    figs = ", ".join(f"{core.FIGURES[k]} {_n(v)}" for k, v in row.items())
                    print(f"run {i + 1} {f} on {', '.join(o.measures.get('victims') or [])}: {o.result}; {figs}", flush=True)
        print(f"\nmedians over {args.runs} run(s) (targets: detect <= 3 s, recover <= 10 s):")
        for f, rows in results.items():
            meds = {k: core.median(r[k] for r in rows) for k in SHOWN}
            print(f"  {f:14s} detect {_n(meds['time_to_detect_s'])} s, page {_n(meds['time_to_page_s'])} s, "
                  f"recover {_n(meds['time_to_recover_s'])} s")  # fmt: skip
        print(reference_line())
        return 0 if ok else 1
    finally:
        if own:
            lab_mod.down(root)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
