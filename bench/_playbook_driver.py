"""One tree's side of bench/playbooks.py, run by that tree's own Python (so that it imports that tree's
iotex_ops): a bare localnet start to the first block, `lab up` (local hosts) to the first block, then
converged runs of playbooks/site.yml on the lab's 4 delegate hosts and its monitoring host. Prints one JSON
document. Only library calls that the tree of commit 327a202 has too.

    python bench/_playbook_driver.py --root /tmp/x [--converged 3] [--strategies free,linear]
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import resource
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def localnet_first_block(root: Path, delegates: int) -> float:
    from iotex_ops.lab import LocalNet

    t0 = time.monotonic()
    net = LocalNet.generate(root, delegates, block_interval_ms=1000)
    try:
        net.start()
        net.wait_height(1, timeout=120)
        return time.monotonic() - t0
    finally:
        net.stop()


def _task_times(events: list[dict[str, Any]]) -> list[tuple[str, str, str, float, str]]:
    """(role, task, host, seconds, status) of every result (ansible-runner times each host's result)."""
    out = []
    kinds = {"runner_on_ok": "ok", "runner_on_failed": "failed", "runner_on_skipped": "skipped"}
    for ev in events:
        status = kinds.get(str(ev.get("event")))
        data = ev.get("event_data") or {}
        if status is None or "duration" not in data:
            continue
        if status == "ok" and (data.get("res") or {}).get("changed"):
            status = "changed"
        out.append((str(data.get("role") or ""), str(data.get("task")), str(data.get("host")), float(data["duration"]), status))
    return out


def converged(inventory: Path, runs_dir: Path, runs: int, strategy: str | None) -> dict[str, Any]:
    from iotex_ops.ansible import run_playbook

    kw: dict[str, Any] = {}
    if strategy is not None:
        if "strategy" not in inspect.signature(run_playbook).parameters:
            return {"error": "this tree's run_playbook takes no strategy"}
        kw["strategy"] = strategy
    walls, cpus, changed = [], [], []
    per_task: dict[str, list[float]] = defaultdict(list)
    per_host: dict[str, list[float]] = defaultdict(list)
    modules: list[int] = []
    tasks: list[int] = []
    for _ in range(runs):
        events: list[dict[str, Any]] = []
        c0, t0 = _cpu(), time.monotonic()
        res = run_playbook("site.yml", inventory, runs_dir=runs_dir, on_event=events.append, **kw)
        walls.append(time.monotonic() - t0)
        cpus.append(_cpu() - c0)
        changed.append(sum(res.changed.values()))
        times = _task_times(events)
        modules.append(sum(1 for t in times if t[4] != "skipped"))
        tasks.append(len(times))
        run_task: dict[str, float] = defaultdict(float)
        run_host: dict[str, float] = defaultdict(float)
        for role, task, host, seconds, _status in times:
            run_task[f"{role + ': ' if role else ''}{task}"] += seconds
            run_host[host] += seconds
        for k, v in run_task.items():
            per_task[k].append(v)
        for k, v in run_host.items():
            per_host[k].append(v)
    med = statistics.median
    return {
        "strategy": strategy or "(tree default)",
        "wall_s": [round(w, 2) for w in walls],
        "wall_median_s": round(med(walls), 2),
        "cpu_median_s": round(med(cpus), 2),
        "changed": changed,
        "host_task_results": tasks[-1],
        "not_skipped": modules[-1],
        # summed over the hosts, median over the runs
        "per_task_s": dict(sorted(((k, round(med(v), 3)) for k, v in per_task.items()), key=lambda kv: -kv[1])),
        "per_host_s": {k: round(med(v), 2) for k, v in sorted(per_host.items())},
    }


def _share_interpreter(lab_mod: Any) -> None:
    """Wrap the lab's inventory so that every local host uses the shared ansible_python_interpreter of `all`."""
    inventory = lab_mod._inventory

    def shared(*a: Any, **kw: Any) -> dict[str, Any]:
        doc: dict[str, Any] = inventory(*a, **kw)
        for group in doc["all"]["children"].values():
            for hv in group["hosts"].values():
                if hv.get("ansible_connection") == "local":
                    hv.pop("ansible_python_interpreter", None)
        return doc

    lab_mod._inventory = shared


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--delegates", type=int, default=4)
    ap.add_argument("--localnet-runs", type=int, default=2)
    ap.add_argument("--converged", type=int, default=3)
    ap.add_argument("--strategies", default="", help="comma-separated; empty: the tree's default only")
    ap.add_argument("--modes", default="local", help="host modes of the lab: local, netns (root)")
    ap.add_argument(
        "--shared-interpreter",
        action="store_true",
        help="local hosts share one path to the modules' Python (one Mitogen interpreter for all, as before issue 13's "
        "per-host interpreters): the lab's inventory without its per-host ansible_python_interpreter",
    )
    args = ap.parse_args()
    from iotex_ops.lab import lab as lab_mod

    if args.shared_interpreter:
        _share_interpreter(lab_mod)

    out: dict[str, Any] = {"python": sys.executable, "cwd_tree": str(Path(lab_mod.__file__).resolve().parents[2])}
    args.root.mkdir(parents=True, exist_ok=True)
    ln = [localnet_first_block(args.root / f"localnet{i}", args.delegates) for i in range(args.localnet_runs)]
    out["localnet_first_block_s"] = [round(x, 2) for x in ln]
    if hasattr(lab_mod, "build_releases"):  # a tree with the release cache: built once, before `lab up`
        dist = args.root / "prime"
        dist.mkdir()
        t_rel = time.monotonic()
        built = lab_mod.build_releases(dist, lab_mod.DRILL_RELEASES)
        out["releases_build_s"] = {"seconds": round(time.monotonic() - t_rel, 2), "built": built}
    strategies: list[str | None] = [s for s in args.strategies.split(",") if s] or [None]  # type: ignore[misc]
    out["modes"] = {}
    for mode in args.modes.split(","):
        root = args.root / f"lab-{mode}"
        m: dict[str, Any] = {}
        out["modes"][mode] = m
        t0, c0 = time.monotonic(), _cpu()
        try:
            fresh: list[dict[str, Any]] = []
            state = lab_mod.up(args.delegates, mode, 1000, root, on_event=fresh.append)
            per_task: dict[str, float] = defaultdict(float)
            for role, task, _host, seconds, _status in _task_times(fresh):
                per_task[f"{role + ': ' if role else ''}{task}"] += seconds
            m["fresh_per_task_s"] = dict(sorted(((k, round(v, 2)) for k, v in per_task.items()), key=lambda kv: -kv[1]))
            m["lab_up_first_block_s"] = round(float(state.timings.get("up_to_first_block_s", time.monotonic() - t0)), 2)
            m["lab_up_total_s"] = round(time.monotonic() - t0, 2)
            m["lab_up_children_cpu_s"] = round(_cpu() - c0, 2)
            m["lab_timings"] = state.timings
            runs_dir = args.root / f"bench-runs-{mode}"
            m["converged"] = (
                [converged(Path(state.inventory), runs_dir, args.converged, s) for s in strategies] if args.converged else []
            )
        finally:
            t1 = time.monotonic()
            lab_mod.down(root)
            m["lab_down_s"] = round(time.monotonic() - t1, 2)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("LC_ALL", "C.UTF-8")
    sys.exit(main())
