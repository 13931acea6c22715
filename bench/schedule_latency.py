"""Scheduled time -> the drill's first step: how late the scheduler service starts a due drill (target < 2 s).

    python bench/schedule_latency.py [--runs 10] [--lab DIR] [--lead-s 10]

Brings up a local 4-delegate lab (or uses the one at --lab), then runs the scheduler service's own code
(iotex_ops/schedule/service.py with the real engine driver and signals: gates, steady state checked ahead,
stop conditions) in-process, `--runs` times: each run is a first-aid schedule (hold_s 1, no single-delegate
check) due at a minute boundary. Cron has minutes, so instead of waiting up to a minute per run the service's
clock is moved forward to `--lead-s` + 2 s before each run's time (a clock object, as in the tests); the
latency is measured in real time: the first step's `step_start` in the journal minus the real instant the
clock read the scheduled time. Prints each run, then p50 and max, beside the speed reference.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._speed import reference_line
from iotex_ops.lab import lab as lab_mod
from iotex_ops.prom import Prometheus
from iotex_ops.runbook.events import StepStart
from iotex_ops.runbook.store import RunStore
from iotex_ops.schedule import parse
from iotex_ops.schedule.driver import EngineDriver, LiveSignals
from iotex_ops.schedule.model import Drills
from iotex_ops.schedule.records import SchedulerDB
from iotex_ops.schedule.service import Scheduler


class ShiftedClock:
    """Real time plus an offset that only grows (the service's clock; the bench jumps it forward)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def quiet(prom_url: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    with Prometheus(prom_url, timeout=3) as p:
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                rows = p.query('ALERTS{alertstate="firing"}')
                if not [r for r in rows if r["metric"].get("severity") != "info"]:
                    return
            time.sleep(1)
    raise SystemExit(f"alerts still firing after {timeout:.0f}s: the lab is not healthy")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--lab", type=Path, help="use the lab at this directory (default: bring one up and down)")
    ap.add_argument("--lead-s", type=float, default=10.0)
    args = ap.parse_args()
    print(reference_line(), flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="schedlat", dir="/tmp"))
    own = args.lab is None
    root = tmp / "lab" if own else args.lab
    if own:
        print(f"bringing up a lab at {root}", flush=True)
        state = lab_mod.up(4, "local", 1000, root)
    else:
        loaded = lab_mod.load_state(root)
        if loaded is None:
            raise SystemExit(f"no lab at {root}")
        state = loaded
    drills = Drills("bench")
    clock = ShiftedClock()
    store = RunStore(tmp / "state")
    driver = EngineDriver(Path(state.inventory), store)
    signals = LiveSignals(state.prometheus_url, Path(state.alertd_state_dir))
    db = SchedulerDB(tmp / "state" / "scheduler" / "bench.db")
    svc = Scheduler(drills=lambda: drills, suspended=set, driver=driver, signals=signals, db=db, clock=clock,
                    lead_s=args.lead_s, say=lambda s: print(f"  scheduler: {s}", flush=True))  # fmt: skip
    stop = threading.Event()
    serving = threading.Thread(target=svc.serve, args=(stop, 0.1), daemon=True)
    serving.start()
    latencies: list[float] = []
    try:
        for i in range(args.runs):
            quiet(state.prometheus_url)
            now = clock()
            due = (int(now + args.lead_s + 3) // 60 + 1) * 60  # a minute boundary at least lead + 3 s ahead
            at = datetime.fromtimestamp(due, UTC)
            name = f"bench-{i}-{int(due)}"
            doc = {"name": name, "drill": "first-aid", "cron": f"{at.minute} {at.hour} * * *", "timezone": "UTC",
                   "params": {"hold_s": 1, "blocks": 3, "single_check": False}, "timeout": "5m",
                   "start_deadline": "1m"}  # fmt: skip
            parsed, problems = parse({"schedules": [doc]})
            assert not problems, problems
            drills = parsed
            time.sleep(0.5)  # a tick sees the new schedule first (its cursor: now)
            clock.offset += (due - args.lead_s - 2) - clock()  # jump to lead + 2 s before its time
            real_due = due - clock.offset
            rid = f"{at:%Y%m%dT%H%M%SZ}-{name}"
            deadline = time.monotonic() + args.lead_s + 120
            while time.monotonic() < deadline:
                r = db.run(rid)
                if r is not None and r.status in ("ended", "not_started"):
                    break
                time.sleep(0.2)
            r = db.run(rid)
            if r is None or r.status != "ended" or not store.started(rid):
                print(f"run {i + 1}: {rid} did not run: {r}", flush=True)
                continue
            first = next(e for e in store.events(rid) if isinstance(e, StepStart))
            lat = first.ts - real_due
            latencies.append(lat)
            print(f"run {i + 1}: {rid}: first step {lat:.3f}s after its time ({r.result})", flush=True)
    finally:
        stop.set()
        serving.join(120)
        signals.close()
        driver.close()
        db.close()
        if own:
            lab_mod.down(root)
            shutil.rmtree(tmp, ignore_errors=True)
    if latencies:
        p50 = statistics.median(latencies)
        print(f"scheduled time -> first step over {len(latencies)} runs: p50 {p50:.3f}s, max {max(latencies):.3f}s "
              f"(target < 2 s)  [{reference_line()}]")  # fmt: skip


if __name__ == "__main__":
    main()
