"""The playbooks and `lab up`, old against new in one run: a tree of an older commit (its own venv) and this one.

    python bench/playbooks.py --old /path/to/old-worktree [--rounds 3] [--converged 3] [--modes local,netns]

Each tree, in turn, by its own Python (bench/_playbook_driver.py): a bare localnet start of 4 delegates to the
first block (keys, genesis, 4 node processes: what `iotex-ops localnet` does), `lab up` of 4 local hosts to
the first block finalized on every node, then converged runs of playbooks/site.yml on the lab (4 delegate
hosts and the monitoring host, nothing to change) with the time of every task on every host. A speed
reference goes with every figure; the machine is shared, so the old and new figures of one run are what to
compare, not figures of different runs. With --rounds K the two trees take turns K times (old, new, old, ...:
drift of the machine falls on both) and lab up's figures are the medians of the rounds, each round's lab up
set against the localnet of the same round; the converged runs are the first round's.
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

HERE = Path(__file__).resolve().parent
NEW = HERE.parent


def run_tree(
    tree: Path, args: argparse.Namespace, strategies: str, shared_interpreter: bool = False, converged: int | None = None
) -> dict[str, Any]:
    python = tree / ".venv" / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"{tree}: no .venv (run `make .venv/.installed` there)")
    base = Path(tempfile.mkdtemp(prefix="bpb", dir="/tmp"))
    env = {
        **os.environ,
        "LC_ALL": "C.UTF-8",
        "IOTEX_OPS_LAB_DIR": str(base / "default-lab"),
        "IOTEX_OPS_STATE_DIR": str(base / "state"),
        "IOTEX_OPS_CACHE_DIR": str(base / "cache"),  # a cold cache: the new tree builds its releases once, here
    }
    env.pop("IOTEX_OPS_HOME", None)
    runs = args.converged if converged is None else converged
    cmd = [str(python), str(HERE / "_playbook_driver.py"), "--root", str(base / "r"), "--converged", str(runs)]
    cmd += ["--localnet-runs", str(args.localnet_runs), "--modes", args.modes]
    if strategies:
        cmd += ["--strategies", strategies]
    if shared_interpreter:
        cmd += ["--shared-interpreter"]
    try:
        proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=3600)
        if proc.returncode != 0:
            raise SystemExit(f"{tree}: the driver failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
        return dict(json.loads(proc.stdout.strip().splitlines()[-1]))
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _merge_rounds(rounds: list[dict[str, Any]], modes: str) -> dict[str, Any]:
    """One tree's rounds as one document: every localnet start, lab up's figures the medians of the rounds
    (lab_up_ratios: each round's lab up over that round's localnet median), the rest from the first round."""
    med = statistics.median
    doc = dict(rounds[0])
    doc["localnet_first_block_s"] = [x for r in rounds for x in r["localnet_first_block_s"]]
    doc["modes"] = {}
    for mode in modes.split(","):
        m = dict(rounds[0]["modes"][mode])
        for key in ("lab_up_first_block_s", "lab_up_total_s"):
            m[key] = round(med(r["modes"][mode][key] for r in rounds), 2)
        m["lab_timings"] = {
            k: round(med(r["modes"][mode]["lab_timings"].get(k, 0.0) for r in rounds), 3) for k in m["lab_timings"]
        }
        m["lab_up_ratios"] = [
            round(r["modes"][mode]["lab_up_first_block_s"] / med(r["localnet_first_block_s"]), 2) for r in rounds
        ]
        doc["modes"][mode] = m
    return doc


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.1f}x" if a and b else "-"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", type=Path, required=True, help="a worktree of the older commit, with its own .venv")
    ap.add_argument("--converged", type=int, default=3, help="converged runs of site.yml per tree (median)")
    ap.add_argument("--localnet-runs", type=int, default=2)
    ap.add_argument("--strategies", default="", help="the new tree's converged runs under each of these strategies too")
    ap.add_argument("--modes", default="local", help="lab host modes, in turn: local and/or netns (root)")
    ap.add_argument("--rounds", type=int, default=1, help="old and new take turns this many times (lab up: medians)")
    ap.add_argument("--json", type=Path, help="also write both trees' raw figures here")
    ap.add_argument("--baseline", type=Path, help="a third tree (e.g. the commit the issue's targets are relative to)")
    ap.add_argument(
        "--also-shared", action="store_true", help="the new tree once more with one Mitogen interpreter for all local hosts"
    )
    args = ap.parse_args()
    print(reference_line(), flush=True)
    extra: list[tuple[str, dict[str, Any], str]] = []
    if args.baseline:
        base = run_tree(args.baseline.resolve(), args, "")
        extra.append((f"baseline {args.baseline}", base, reference_line()))
        print(f"baseline ({args.baseline}) done; {extra[-1][2]}", flush=True)
    old_rounds: list[dict[str, Any]] = []
    new_rounds: list[dict[str, Any]] = []
    for k in range(max(1, args.rounds)):
        first = k == 0
        old_rounds.append(run_tree(args.old.resolve(), args, "", converged=None if first else 0))
        ref_old = reference_line()
        print(f"round {k + 1}: old ({args.old}) done; {ref_old}", flush=True)
        new_rounds.append(run_tree(NEW, args, args.strategies if first else "", converged=None if first else 0))
        ref_new = reference_line()
        print(f"round {k + 1}: new ({NEW}) done; {ref_new}", flush=True)
    old, new = _merge_rounds(old_rounds, args.modes), _merge_rounds(new_rounds, args.modes)
    if args.rounds > 1:
        print("\nper round: lab up -> first block / localnet median of the same round")
        for mode in args.modes.split(","):
            for label, rounds in (("old", old_rounds), ("new", new_rounds)):
                cells = [
                    f"{r['modes'][mode]['lab_up_first_block_s']:.2f}s/{statistics.median(r['localnet_first_block_s']):.2f}s"
                    f"={r['modes'][mode]['lab_up_first_block_s'] / statistics.median(r['localnet_first_block_s']):.1f}x"
                    for r in rounds
                ]
                print(f"  {mode:6} {label}: " + "  ".join(cells))
    if args.also_shared:
        shared = run_tree(NEW, args, "", shared_interpreter=True)
        extra.append(("new, one shared Mitogen interpreter", shared, reference_line()))
        print(f"new, shared interpreter, done; {extra[-1][2]}", flush=True)
    if args.json:
        doc = {"old": old, "new": new, "speed": [ref_old, ref_new], "extra": {k: (v, r) for k, v, r in extra}}
        args.json.write_text(json.dumps(doc, indent=2))

    med = statistics.median
    ln_old, ln_new = med(old["localnet_first_block_s"]), med(new["localnet_first_block_s"])
    print(f"\n{'figure':48} {'old':>9} {'new':>9} {'old/new':>8}")
    print(f"{'localnet start -> first block (median)':48} {ln_old:8.2f}s {ln_new:8.2f}s {_ratio(ln_old, ln_new):>8}")
    if "releases_build_s" in new:
        print(f"new: the 3 drill releases, built once into the cache before lab up: {new['releases_build_s']['seconds']:.2f}s")
    for mode in args.modes.split(","):
        o, n = old["modes"][mode], new["modes"][mode]
        c_old, c_new = o["converged"][0], n["converged"][0]
        rows = [
            (f"lab up ({mode}) -> first block", o["lab_up_first_block_s"], n["lab_up_first_block_s"]),
            (f"lab up ({mode}), whole (alertd up)", o["lab_up_total_s"], n["lab_up_total_s"]),
            ("  of which site.yml (fresh install)", o["lab_timings"].get("playbook_s"), n["lab_timings"].get("playbook_s")),
            ("  of which node.yml to every node running", o["lab_timings"].get("nodes_s"), n["lab_timings"].get("nodes_s")),
            (f"converged site.yml, {mode} 4+1 hosts (median wall)", c_old["wall_median_s"], c_new["wall_median_s"]),
            ("  CPU of the run's processes (median)", c_old["cpu_median_s"], c_new["cpu_median_s"]),
        ]
        for name, a, b in rows:
            cells = [f"{v:8.2f}s" if v is not None else f"{'-':>9}" for v in (a, b)]
            print(f"{name:48} {cells[0]} {cells[1]} {_ratio(a, b):>8}")
        up_o, up_n = o["lab_up_first_block_s"], n["lab_up_first_block_s"]
        print(f"{'lab up / localnet, same run (target <= 4x)':48} {_ratio(up_o, ln_old):>9} {_ratio(up_n, ln_new):>9}")
        if len(n["lab_up_ratios"]) > 1:
            r_o, r_n = statistics.median(o["lab_up_ratios"]), statistics.median(n["lab_up_ratios"])
            print(f"{'  median of the rounds own ratios':48} {r_o:8.1f}x {r_n:8.1f}x")
        speedup = _ratio(c_old["wall_median_s"], c_new["wall_median_s"])
        print(f"{'converged site.yml old/new (target >= 4x)':48} {'':>9} {speedup:>9}")
        print(f"changed in the converged runs: old {c_old['changed']}, new {c_new['changed']}")
        print(f"host-task results per converged run: old {c_old['host_task_results']} ({c_old['not_skipped']} not skipped), "
              f"new {c_new['host_task_results']} ({c_new['not_skipped']} not skipped)")  # fmt: skip
        for c in n["converged"][1:]:
            err = f" ({c['error']})" if "error" in c else ""
            print(f"new, strategy {c['strategy']}: converged site.yml {c.get('wall_median_s', 0):.2f}s wall, "
                  f"{c.get('cpu_median_s', 0):.2f}s CPU, changed {c.get('changed')}{err}")  # fmt: skip
        for label, fresh in (("old", o["fresh_per_task_s"]), ("new", n["fresh_per_task_s"])):
            print(f"\n{label} ({mode}): seconds per task of lab up's site.yml (fresh install), summed over the hosts")
            for task, s in list(fresh.items())[:10]:
                print(f"  {s:6.2f}  {task}")
        for label, c in (("old", c_old), ("new", c_new)):
            print(f"\n{label} ({mode}): seconds per task, summed over the hosts (median of {args.converged} converged runs)")
            for task, s in list(c["per_task_s"].items())[:14]:
                print(f"  {s:6.2f}  {task}")
            print("  per host: " + ", ".join(f"{h} {s:.2f}s" for h, s in c["per_host_s"].items()))
    for label, doc, ref in extra:
        print(f"\n{label} ({ref}): localnet {med(doc['localnet_first_block_s']):.2f}s")
        for mode in args.modes.split(","):
            m, n = doc["modes"][mode], new["modes"][mode]
            c, cn = m["converged"][0], n["converged"][0]
            up, upn = m["lab_up_first_block_s"], n["lab_up_first_block_s"]
            play, playn = m["lab_timings"].get("playbook_s"), n["lab_timings"].get("playbook_s")
            print(f"  lab up ({mode}) -> first block {up:.2f}s (it/new {_ratio(up, upn)}), site.yml fresh {play:.2f}s "
                  f"(it/new {_ratio(play, playn)}), converged {c['wall_median_s']:.2f}s wall {c['cpu_median_s']:.2f}s CPU "
                  f"(it/new {_ratio(c['wall_median_s'], cn['wall_median_s'])}), changed {c['changed']}")  # fmt: skip
    print(f"\n{ref_old} (old run); {ref_new} (new run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
