"""Restart every delegate, one after another, under load, again and again: the chain must never stall.

    python bench/restarts.py [--trials 20] [--interval-ms 250] [--settle 3] [--max-seconds 900]

A 4-delegate network at 250 ms blocks runs under a steady stream of signed transfers. Each trial
SIGTERMs the delegates in turn (waiting for each to exit, then 0-1 s more, so that the ones still up go
on through steps and rounds without a quorum), which leaves them stopped at different points of a
height and round, then starts all four. Per trial it prints:

- stall: from the moment the last of the four was started until a block above the height they stopped
  at is final (it includes the nodes' own start-up, about a second of Python imports here);
- rounds: the round in which that first block was decided (0 = its first proposer's round);
- heights: where the nodes stopped, and the block that ended the stall.

This is how the restart stall of issue 11 was found: before the sign log, 3 of 6 such trials stalled for
good (round 0, prevote step, "refusing to sign prevote ... would contradict an earlier signature").
Exits 1 if any trial stalled longer than --stall-limit seconds. Every process it started is stopped on
the way out.
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from _speed import reference_line

from iotex_ops.lab import LocalNet
from iotex_ops.traffic import LocalNetLoad


@dataclass
class Trial:
    stopped_at: list[int]
    stall_s: float  # -1 when the chain did not move within the limit
    first_height: int
    rounds: int


def restart_all(net: LocalNet, *, rng: random.Random, max_gap: float = 1.0, limit: float = 60.0) -> Trial:
    """SIGTERM each delegate in turn (0..max_gap s apart, so that those still running go on through steps
    and rounds without a quorum), start all, and time until a new block is final."""
    stopped_at: list[int] = []
    for i in range(len(net.nodes)):
        c = net.chain(i)
        net.kill(i, signal.SIGTERM)
        if c is not None:
            stopped_at.append(int(c["finalized_height"]))
        time.sleep(rng.uniform(0, max_gap))
    top = max(stopped_at, default=0)
    for i in range(len(net.nodes)):
        net.start_node(i)
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        for i in range(len(net.nodes)):
            c = net.chain(i)
            if c is not None and c["finalized_height"] > top:
                stall = time.monotonic() - t0
                block = net.get(i, f"/v1/blocks/{top + 1}")
                return Trial(stopped_at, stall, top + 1, int(block["certificate"]["round"]))
        time.sleep(0.05)
    return Trial(stopped_at, -1.0, top + 1, -1)


def run_trials(
    net: LocalNet, trials: int, *, settle: float, deadline: float, say: Callable[[str], None], seed: int = 0
) -> list[Trial]:
    rng = random.Random(seed)
    out: list[Trial] = []
    for n in range(trials):
        if time.monotonic() > deadline:
            say(f"stopping after {n} trials: the time limit is reached")
            break
        time.sleep(settle)  # blocks with transfers in them, and nodes at some step of a height
        t = restart_all(net, rng=rng)
        out.append(t)
        stall = "STALLED" if t.stall_s < 0 else f"{t.stall_s:5.2f} s"
        say(f"trial {n + 1:2d}: stopped at {t.stopped_at}, stall {stall}, block {t.first_height} in round {t.rounds}")
        if t.stall_s < 0:
            break
        net.wait_height(t.first_height, timeout=60)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--interval-ms", type=int, default=250)
    ap.add_argument("--settle", type=float, default=3.0, help="seconds of load between trials")
    ap.add_argument("--stall-limit", type=float, default=30.0)
    ap.add_argument("--max-seconds", type=float, default=900.0)
    args = ap.parse_args()
    print(reference_line())
    root = Path(tempfile.mkdtemp(prefix="brs", dir="/tmp"))
    net = LocalNet.generate(root / "net", 4, block_interval_ms=args.interval_ms, accounts=20)
    try:
        net.start()
        net.wait_height(15, timeout=120)
        with LocalNetLoad(net, window=8, interval=0.25, seed=11) as load:
            trials = run_trials(net, args.trials, settle=args.settle, deadline=time.monotonic() + args.max_seconds, say=print)
        stalls = [t.stall_s for t in trials if t.stall_s >= 0]
        stalled = [t for t in trials if t.stall_s < 0 or t.stall_s > args.stall_limit]
        print(
            f"\n{len(trials)} restart-all trials at {args.interval_ms} ms blocks under load "
            f"({load.stats.accepted} transfers accepted): "
            f"stall median {statistics.median(stalls or [0]):.2f} s, longest {max(stalls, default=0):.2f} s; "
            f"rounds used max {max(t.rounds for t in trials)}, "
            f"trials needing a round change {sum(t.rounds > 0 for t in trials)}; "
            f"stalled beyond {args.stall_limit:.0f} s: {len(stalled)} (a stall ends the run)"
        )
        return 1 if stalled else 0
    finally:
        net.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
