"""Crash consistency: kill -9 a delegate at random moments while the network commits blocks, many times.

A 4-delegate lab network runs under a steady stream of signed transfers. Again and again: wait a random
0.05-1.5 s, SIGKILL one delegate, restart it at once, wait until it answers and has caught up with the
others, then check that

- it started at all (a node refuses to start when its database cannot be opened or its state does not
  match the state root in its tip block's header),
- it lost nothing it had finalized (its height after restart is at least its height before the kill),
- its state root and finalized hash equal its peers' blocks at that height, and all four nodes have the
  same block and state root at their common height,
- no height ever had two different finalized blocks, on any node, for the whole run (checked again over
  the full history at the end, with every block's prev_hash linking to the block before it).

Usage: .venv/bin/python bench/crash_consistency.py [--kills 50] [--seed N] [--max-seconds 900]
Exits 0 when every restart was consistent, 1 when anything was not, 130 when interrupted. Every process
it started is stopped on the way out, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iotex_ops.errors import LabError
from iotex_ops.lab import LocalNet
from iotex_ops.traffic import LocalNetLoad

RESTART_TIMEOUT = 30.0  # kill -> API answering; a node that takes longer is as good as down
CATCHUP_TIMEOUT = 90.0  # API answering -> past the height its peers had then
# Lines a node logs when it refuses its database or stops to protect the chain.
_BAD_LOG_LINES = ("fatal:", "database is corrupt", "cannot be opened", "Traceback")


class OutOfTime(Exception):
    """The whole run went past --max-seconds."""


class Inconsistent(Exception):
    """A restart that was not consistent; the message says which node, which height, which values."""


@dataclass
class Kill:
    n: int
    node: str
    waited_s: float  # the random pause (0.05-1.5 s) between the previous check and this kill
    height_at_kill: int
    height_after_restart: int | None = None
    restart_s: float | None = None  # SIGKILL -> its API answers again
    catchup_s: float | None = None  # SIGKILL -> past the height its peers had when it came back
    problem: str | None = None


@dataclass
class CrashRun:
    kills: list[Kill] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    start_height: int = 0
    end_height: int = 0
    actions: int = 0  # actions in the blocks finalized during the run
    elapsed_s: float = 0.0
    seen: dict[int, str] = field(default_factory=dict)  # height -> the one block hash any node ever showed

    @property
    def consistent(self) -> int:
        return sum(1 for k in self.kills if k.problem is None)

    @property
    def ok(self) -> bool:
        return not self.problems and all(k.problem is None for k in self.kills)


# --- talking to nodes ------------------------------------------------------------------------------


def _get(net: LocalNet, i: int, path: str, attempts: int = 20) -> Any:
    """GET from a node that is up (the node client waits out its per-client rate limit itself)."""
    for attempt in range(attempts):
        try:
            return net.get(i, path, timeout=5.0)
        except (OSError, ValueError):  # NodeApiError is an OSError
            if attempt == attempts - 1:
                raise
            time.sleep(0.1)
    raise AssertionError("unreachable")


def _height(net: LocalNet, i: int) -> int | None:
    c = net.chain(i)
    return None if c is None else int(c["finalized_height"])


def _log_tail(net: LocalNet, i: int, lines: int = 12) -> str:
    path = net.nodes[i].log_path
    if path is None or not path.exists():
        return "(no log)"
    return "\n    ".join(path.read_text(errors="replace").splitlines()[-lines:])


def _check_running(net: LocalNet, i: int, what: str) -> None:
    n = net.nodes[i]
    if not n.running:
        code = n.proc.returncode if n.proc else None
        raise Inconsistent(f"{n.name} exited with code {code} {what}; its log ends:\n    {_log_tail(net, i)}")


def _remember(run: CrashRun, height: int, block_hash: str, who: str) -> None:
    first = run.seen.setdefault(height, block_hash)
    if first != block_hash:
        raise Inconsistent(f"fork: {who} shows block {height} as {block_hash[:16]}, another node showed {first[:16]}")


# --- one crash -------------------------------------------------------------------------------------


def _wait_restarted(net: LocalNet, i: int, killed_at: float) -> dict[str, Any]:
    while time.monotonic() - killed_at < RESTART_TIMEOUT:
        _check_running(net, i, "after restart: it refused to start")
        c = net.chain(i)
        if c is not None:
            return c
        time.sleep(0.05)
    raise Inconsistent(f"{net.nodes[i].name} did not answer within {RESTART_TIMEOUT:.0f}s of its restart")


def _wait_caught_up(net: LocalNet, i: int, target: int) -> None:
    deadline = time.monotonic() + CATCHUP_TIMEOUT
    while time.monotonic() < deadline:
        _check_running(net, i, "while catching up")
        h = _height(net, i)
        if h is not None and h >= target:
            return
        time.sleep(0.05)
    raise Inconsistent(f"{net.nodes[i].name} stayed below height {target} for {CATCHUP_TIMEOUT:.0f}s; heights {net.heights()}")


def check_agreement(net: LocalNet, victim: int, run: CrashRun) -> None:
    """The victim's tip equals its peers' block at that height; all nodes agree at their common height."""
    chains = []
    for i in range(len(net.nodes)):
        c = net.chain(i)
        if c is None:
            raise Inconsistent(f"{net.nodes[i].name} does not answer; heights {net.heights()}")
        chains.append(c)
    vname, vc = net.nodes[victim].name, chains[victim]
    vh = int(vc["finalized_height"])
    for j, c in enumerate(chains):
        if j == victim or int(c["finalized_height"]) < vh:
            continue
        b = _get(net, j, f"/v1/blocks/{vh}")
        if b["hash"] != vc["finalized_hash"] or b["header"]["state_root"] != vc["state_root"]:
            kind = "fork" if b["hash"] != vc["finalized_hash"] else "state"
            raise Inconsistent(
                f"{kind}: {vname} at height {vh} has block {vc['finalized_hash'][:16]} state root {vc['state_root'][:16]}, "
                f"{net.nodes[j].name} has block {b['hash'][:16]} state root {b['header']['state_root'][:16]}"
            )
    common = min(int(c["finalized_height"]) for c in chains)
    found = {}
    for i in range(len(net.nodes)):
        b = _get(net, i, f"/v1/blocks/{common}")
        found[net.nodes[i].name] = (b["hash"], b["header"]["state_root"])
        _remember(run, common, b["hash"], net.nodes[i].name)
    if len(set(found.values())) != 1:
        kind = "fork" if len({h for h, _ in found.values()}) > 1 else "state"
        raise Inconsistent(f"{kind}: nodes disagree at height {common}: { {k: (h[:16], r[:16]) for k, (h, r) in found.items()} }")


def crash_once(net: LocalNet, victim: int, n: int, waited_s: float, run: CrashRun) -> Kill:
    """SIGKILL `victim`, restart it, wait until it caught up, check it; the Kill says how it went."""
    name = net.nodes[victim].name
    before = _height(net, victim)
    k = Kill(n, name, waited_s, before if before is not None else -1)
    killed_at = time.monotonic()
    net.kill(victim, signal.SIGKILL)
    net.start_node(victim)
    try:
        c = _wait_restarted(net, victim, killed_at)
        k.restart_s = time.monotonic() - killed_at
        k.height_after_restart = int(c["finalized_height"])
        if before is not None and k.height_after_restart < before:
            raise Inconsistent(f"{name} lost finalized blocks: height {before} before the kill, {k.height_after_restart} after")
        # Its own tip block must carry the state root it computes from its state (Chain checks this at start).
        if k.height_after_restart > 0:
            own = _get(net, victim, f"/v1/blocks/{k.height_after_restart}")
            if own["header"]["state_root"] != c["state_root"] or own["hash"] != c["finalized_hash"]:
                raise Inconsistent(f"{name} restarted with state root {c['state_root'][:16]} but its tip block says "
                                   f"{own['header']['state_root'][:16]}")  # fmt: skip
        # Caught up: it has finalized a block that no node had finalized when it came back, so it
        # is following the chain again, not just serving what it had on disk.
        others = [h for j in range(len(net.nodes)) if j != victim and (h := _height(net, j)) is not None]
        _wait_caught_up(net, victim, max([*others, k.height_after_restart]) + 1)
        k.catchup_s = time.monotonic() - killed_at
        check_agreement(net, victim, run)
    except Inconsistent as exc:
        k.problem = str(exc)
    except (OSError, ValueError, KeyError) as exc:  # a node that stopped answering mid-check
        k.problem = f"{name}: checking it failed with {type(exc).__name__}: {exc}; heights {net.heights()}"
    return k


# --- the whole run ---------------------------------------------------------------------------------


def scan_history(net: LocalNet, run: CrashRun, top: int) -> None:
    """Every node's blocks 1..top: one hash per height, linked by prev_hash; count the run's actions."""
    for i in range(len(net.nodes)):
        name = net.nodes[i].name
        last = None
        for h in range(1, top + 1):
            b = _get(net, i, f"/v1/blocks/{h}")
            try:
                _remember(run, h, b["hash"], name)
            except Inconsistent as exc:
                run.problems.append(str(exc))
                return
            if last is not None and b["header"]["prev_hash"] != last:
                run.problems.append(f"{name}: block {h} does not link to block {h - 1}")
                return
            last = b["hash"]
            if i == 0 and h > run.start_height:
                run.actions += len(b["actions"])


def check_logs(net: LocalNet, run: CrashRun) -> None:
    for i, n in enumerate(net.nodes):
        if n.log_path is None or not n.log_path.exists():
            continue
        for line in n.log_path.read_text(errors="replace").splitlines():
            if any(bad in line for bad in _BAD_LOG_LINES):
                run.problems.append(f"{n.name} logged: {line.strip()[:300]} (log {net.nodes[i].log_path})")
                break


def run_crashes(
    net: LocalNet,
    kills: int,
    *,
    rng: random.Random,
    deadline: float,
    say: Callable[[str], None] = print,
) -> CrashRun:
    """Kill -9 and restart delegates `kills` times (or until `deadline`), then check the whole history."""
    run = CrashRun()
    started = time.monotonic()
    heights = [h for h in net.heights() if h is not None]
    run.start_height = min(heights, default=0)
    order = list(range(len(net.nodes)))
    for n in range(1, kills + 1):
        if time.monotonic() >= deadline:
            run.problems.append(f"time budget ran out after {n - 1} of {kills} kills")
            break
        if n % len(order) == 1:
            rng.shuffle(order)  # every node is killed equally often, in a random order
        victim = order[(n - 1) % len(order)]
        waited = rng.uniform(0.05, 1.5)
        time.sleep(waited)
        k = crash_once(net, victim, n, waited, run)
        run.kills.append(k)
        status = "ok" if k.problem is None else f"INCONSISTENT: {k.problem}"
        say(
            f"kill {n:3d}/{kills} {k.node} after {waited:4.2f}s at height {k.height_at_kill}: "
            f"back at {k.height_after_restart} in {_fmt(k.restart_s)}, caught up in {_fmt(k.catchup_s)}: {status}"
        )
        if k.problem is not None:
            break  # keep the evidence: the databases and logs stay as the failure left them
    heights = [h for h in net.heights() if h is not None]
    if len(heights) != len(net.nodes):
        run.problems.append(f"not every node answers at the end: heights {net.heights()}")
    run.end_height = min(heights, default=0)
    try:
        scan_history(net, run, run.end_height)
    except (OSError, ValueError, KeyError) as exc:
        run.problems.append(f"reading the history failed with {type(exc).__name__}: {exc}")
    check_logs(net, run)
    run.elapsed_s = time.monotonic() - started
    return run


def _fmt(s: float | None) -> str:
    return "-" if s is None else f"{s:.2f}s"


def machine() -> str:
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    cpus = f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))})"
    return f"{cpus}, {mem} RAM, {platform.platform()}, Python {platform.python_version()}"


def summary(run: CrashRun, kills: int, load: LocalNetLoad | None) -> str:
    restart = [k.restart_s for k in run.kills if k.restart_s is not None]
    catchup = [k.catchup_s for k in run.kills if k.catchup_s is not None]

    def mean_max(xs: list[float]) -> str:
        return f"mean {statistics.fmean(xs):.2f}s, max {max(xs):.2f}s" if xs else "-"

    problems = run.problems + [k.problem for k in run.kills if k.problem]
    lines = [
        "crash consistency: kill -9 of a delegate while a 4-delegate network commits blocks",
        f"  kills done:                 {len(run.kills)} of {kills}",
        f"  restarts consistent:        {run.consistent} of {len(run.kills)}",
        f"  kill -> API answering:      {mean_max(restart)}",
        f"  kill -> caught up:          {mean_max(catchup)}",
        f"  blocks finalized in run:    {run.end_height - run.start_height} (heights {run.start_height + 1}..{run.end_height})",
        f"  actions finalized in run:   {run.actions}",
        f"  forks seen:                 {sum(p.startswith('fork') for p in problems)} "
        f"(history of {len(run.seen)} blocks checked on every node)",
        f"  wall time:                  {run.elapsed_s:.0f}s",
        f"  machine:                    {machine()}",
    ]
    if load is not None:
        s = load.stats
        lines.append(f"  load:                       {len(load.keys)} senders, window {load.window}, "
                     f"{s.answered} posted (re-sends included), {s.accepted} admitted, "
                     f"{s.failed_requests} failed requests")  # fmt: skip
    inconsistent = any(k.problem for k in run.kills) or any(not p.startswith("time budget") for p in run.problems)
    result = "INCONSISTENT" if inconsistent else "CONSISTENT" if len(run.kills) == kills else "INCOMPLETE (out of time)"
    lines.append(f"  result:                     {result}")
    lines.extend(f"  problem: {p}" for p in problems)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=50, help="how many times to kill -9 a delegate (default 50)")
    p.add_argument("--seed", type=int, default=None, help="random seed for victims and kill moments (default: random)")
    p.add_argument("--max-seconds", type=float, default=900.0, help="give up (and fail) after this long (default 900)")
    p.add_argument("--accounts", type=int, default=8, help="funded accounts sending transfers (default 8)")
    p.add_argument("--window", type=int, default=16, help="transfers in flight per account (default 16)")
    p.add_argument("--keep", action="store_true", help="keep the network's directory (it is kept anyway on failure)")
    args = p.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    budget_end = time.monotonic() + args.max_seconds

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    def out_of_time(signum: int, frame: object) -> None:
        raise OutOfTime(f"the run exceeded --max-seconds {args.max_seconds:.0f}")

    # SIGINT explicitly too: a shell's background job inherits it ignored, and Python then never raises.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupted)
    # The hard bound; the kill loop itself stops up to a minute earlier so the history scan and summary fit.
    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(max(1, int(args.max_seconds)))
    root = Path(tempfile.mkdtemp(prefix="iotex-crash-"))
    print(f"seed {seed}; network in {root}", flush=True)
    net: LocalNet | None = None
    load: LocalNetLoad | None = None
    code = 1
    try:
        net = LocalNet.generate(root / "net", 4, accounts=args.accounts)
        net.start()
        net.wait_height(2, timeout=60)
        load = LocalNetLoad(net, window=args.window, seed=seed)
        load.start()
        net.wait_height(4, timeout=60)  # a few blocks with actions before the first kill
        run = run_crashes(
            net, args.kills, rng=rng, deadline=budget_end - min(60.0, args.max_seconds / 5), say=lambda s: print(s, flush=True)
        )
        load.stop()
        print(summary(run, args.kills, load), flush=True)
        code = 0 if run.ok and len(run.kills) == args.kills else 1
    except KeyboardInterrupt:
        print("interrupted: stopping every node", file=sys.stderr, flush=True)
        code = 130
    except (OutOfTime, LabError) as exc:
        print(f"failed: {exc}; stopping every node", file=sys.stderr, flush=True)
    finally:
        signal.alarm(0)
        # A second Ctrl-C must not leave nodes behind: finish stopping them first.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if load is not None:
            load.stop()
        if net is not None:
            net.stop()
        if code == 1 or args.keep:
            print(f"network directory kept (databases and node logs): {root}", flush=True)
        else:
            shutil.rmtree(root, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
