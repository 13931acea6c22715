"""The flood drill's figures: honest p99 submit->final without and with the flood, the flooded node's peak RSS
and open files, the 429s it answered, missed slots, recovery; and, with --solo, the same flood against a lone
node with its limits on and off (what the limits prevent).

    python bench/flood.py [--flood-s 20] [--baseline-s 15] [--tps 20] [--runs 1] [--lab DIR] [--solo]

Brings up a local 4-delegate lab (or uses the one at --lab) and runs runbooks/flood.py through the engine,
flooding the last delegate. --solo: a one-delegate node process flooded for 15 s with many connections, slow
clients, idle P2P sockets and batches of bad signatures, with the node's default limits, then every limit off
(iotex_ops/flood/solo.py). --no-lab: only that. Prints the speed reference first and last.
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
from iotex_ops.runbook import Engine, loader
from iotex_ops.runbook.store import RunStore


def drill(state: lab_mod.LabState, store: RunStore, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    book = loader.discover()["flood"]
    with network_mod.load(state.inventory) as net:
        res = Engine(store, yes=True, lock_wait_s=60).run(book, net, params)
    return str(res.result), dict(res.measures)


SOLO_S = 15.0


def solo(tmp: Path) -> None:
    from iotex_ops.flood.solo import LIMITS_OFF, flood_solo

    plan = {"attacks": ("connections", "slowloris", "p2p_idle", "batch"), "connections": 120, "slow_clients": 150,
            "p2p_sockets": 150}  # fmt: skip
    print(f"solo node, {SOLO_S:g} s flood (120 connections, 150 slow clients, 150 idle P2P sockets, 4 clients posting "
          "2000-action batches of bad signatures), default limits vs every limit off:")  # fmt: skip
    for name, overrides in (("limits on", {}), ("limits off", LIMITS_OFF)):
        r = flood_solo(tmp / name.replace(" ", "-"), overrides, SOLO_S, **plan)
        t = r["tally"]
        print(
            f"  {name:10}: 429 {t.statuses[429]}, 503 {t.statuses[503]}, other 5xx "
            f"{sum(v for k, v in t.statuses.items() if k >= 500 and k != 503)}, hangs {t.hangs}, slow client held "
            f"{t.slow_held_s:.1f} s, idle P2P socket held {t.p2p_held_s:.1f} s, peak open files {r['peak_fds']}, "
            f"peak RSS {r['peak_rss_mb']} MB, slowest honest GET /v1/chain {r['slowest_probe_s']} s, "
            f"blocks {r['blocks']}, ready {r['recovery_s']} s after",
            flush=True,
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flood-s", type=float, default=20.0)
    ap.add_argument("--baseline-s", type=float, default=15.0)
    ap.add_argument("--tps", type=float, default=20.0, help="honest transfers a second")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--lab", type=Path, help="use the lab at this directory (default: a new one, removed after)")
    ap.add_argument("--solo", action="store_true", help="also the lone node with limits on and off")
    ap.add_argument("--no-lab", action="store_true", help="only --solo")
    args = ap.parse_args()
    print(reference_line(), flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="fld", dir="/tmp"))
    own = args.lab is None and not args.no_lab
    root = args.lab or tmp / "lab"
    ok = True
    try:
        if args.solo:
            solo(tmp)
        if not args.no_lab:
            state = lab_mod.up(root=root, say=lambda s: print(f"  lab: {s}", flush=True)) if own else lab_mod.load_state(root)
            assert state is not None, f"no lab at {root}"
            store = RunStore(tmp / "state")
            params = {"flood_s": args.flood_s, "baseline_s": args.baseline_s, "tps": args.tps}
            for i in range(args.runs):
                result, m = drill(state, store, params)
                ok = ok and result == "passed"
                print(
                    f"run {i + 1} flood on {m.get('host')} ({args.flood_s:g} s, honest {args.tps:g} TPS): {result}; "
                    f"honest p99 {fmt(m.get('baseline_p99_s'))} s without, {fmt(m.get('flood_p99_s'))} s with the flood "
                    f"({m.get('baseline_n')} / {m.get('flood_n')} transfers); missed slots {m.get('baseline_missed_slots')} "
                    f"without, {m.get('missed_slots')} with; peak RSS {m.get('rss_peak_mb')} MB (from "
                    f"{m.get('rss_before_mb')}); peak open files {m.get('open_files_peak')}; 429s {m.get('count_429')}, "
                    f"503s {dict(m.get('statuses', {})).get('503', 0)}; hangs {m.get('hangs')}; slow client held "
                    f"{m.get('slow_held_s')} s; healthy {m.get('recovery_s')} s after; accepted {m.get('accepted_honest')}, "
                    f"lost {m.get('lost')}, displaced {m.get('displaced')} {m.get('displaced_codes') or ''}",
                    flush=True,
                )
                time.sleep(3)
        print(reference_line())
        return 0 if ok else 1
    finally:
        if own:
            lab_mod.down(root)
        shutil.rmtree(tmp, ignore_errors=True)


def fmt(v: object) -> str:
    return f"{v:.2f}" if isinstance(v, float) else str(v)


if __name__ == "__main__":
    raise SystemExit(main())
