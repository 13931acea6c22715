"""Rollback and recovery: reverse the chain to height H on every delegate and continue from there.

Every node is stopped, backed up and rolled back with the node's own offline command (which checks the undo
records lead exactly to block H's state root and writes the removed actions to a file), then restarted. The
removed actions are re-submitted, and each must be final exactly once.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Mapping
from typing import Any

from iotex_ops.runbook import Check, CheckResult, Param, Runbook, RunContext, Step, checks
from iotex_ops.runbook import actions as act

BATCH = 500


def _target(ctx: RunContext, tip: int) -> int:
    to, blocks = int(ctx.params["to"]), int(ctx.params["blocks"])
    return to if to else tip - blocks


def preflight(ctx: RunContext) -> list[str]:
    to, blocks = int(ctx.params["to"]), int(ctx.params["blocks"])
    if bool(to) == bool(blocks):
        return ["give exactly one of to=H (the height to return to) or blocks=K (how many blocks to reverse)"]
    tip = checks.top_height(ctx)
    low = min(h for h in checks.finalized(ctx).values() if h is not None)
    h = _target(ctx, tip)
    if h < 1:
        return [f"cannot roll back to height {h}: the chain is at {tip} (height 1 is the lowest)"]
    if h >= low:
        return [f"height {h} is not in the past of every delegate (lowest finalized height {low})"]
    return []


def plan(ctx: RunContext) -> None:
    tip = checks.top_height(ctx)
    h = _target(ctx, tip)
    ctx.remember("target", h)
    ctx.remember("t_start", time.time())
    ctx.log(f"roll back from about {tip} to {h}")


def stop(ctx: RunContext) -> None:
    ctx.delegate.service("stop")


def start(ctx: RunContext) -> None:
    ctx.delegate.service("start")


def rollback(ctx: RunContext) -> None:
    d, h = ctx.delegate, int(ctx.recall("target"))
    res = d.node_cli(["rollback", "--home", d.home, "--to", str(h), "--yes", "--json"], timeout=300)
    doc = json.loads(res.stdout)
    ctx.log(f"{d.name}: removed {doc.get('removed_blocks')} blocks, {doc.get('removed_actions')} actions")
    ctx.log(f"{d.name}: backup {doc.get('backup')}")
    ctx.remember(f"actions_file:{d.name}", doc.get("actions_file"))


def continued(ctx: RunContext) -> CheckResult:
    h = int(ctx.recall("target"))
    act.all_at(ctx, h + 1, timeout=60)
    first = act.block_time(ctx, h + 1)
    took = first - float(ctx.recall("t_start"))
    ctx.remember("to_first_block_s", round(took, 3))
    ctx.event("first_new_block", height=h + 1)
    return CheckResult(True, {"first_new_block": h + 1, "seconds_from_start": round(took, 3)})


def _key(wire: Mapping[str, Any]) -> str:
    return json.dumps(wire, sort_keys=True, separators=(",", ":"))


def resubmit(ctx: RunContext) -> None:
    wires: dict[str, dict[str, Any]] = {}
    for d in ctx.delegates:
        path = ctx.recall(f"actions_file:{d.name}")
        if not path:
            continue
        out = d.run(f"cat {shlex.quote(str(path))}", timeout=30).stdout
        for line in out.splitlines():
            if line.strip():
                w = json.loads(line)
                wires.setdefault(_key(w), w)
    # the displaced actions, by their canonical JSON, for the exactly-once check (a file: there may be many)
    keys_file = ctx.run_dir / "resubmitted.jsonl"
    keys_file.write_text("".join(k + "\n" for k in wires))
    actions = list(wires.values())
    target = ctx.delegates[0]
    refused = 0
    known = 0
    for i in range(0, len(actions), BATCH):
        result = target.api.submit_batch(actions[i : i + BATCH], timeout=30)
        for r in result.results:
            if not r.accepted and r.code == "duplicate":
                known += 1  # the node put it back in its mempool itself (its journal, after the rollback)
            elif not r.accepted:
                refused += 1
                ctx.log(f"refused: {r.code} ({r.field or '-'}): {r.message or ''}"[:200])
    ctx.remember("resubmitted", len(actions))
    ctx.remember("refused", refused)
    ctx.log(f"re-submitted {len(actions)} displaced actions ({known} already pending again, {refused} refused)")


def final_once(ctx: RunContext) -> CheckResult:
    keys = set((ctx.run_dir / "resubmitted.jsonl").read_text().split())
    h = int(ctx.recall("target"))
    d = ctx.delegates[0]
    tip = d.chain()["finalized_height"]
    seen: dict[str, int] = {}
    for height in range(h + 1, tip + 1):
        for a in d.api.block(height, timeout=3.0).actions or ():
            k = _key(a)
            if k in keys:
                seen[k] = seen.get(k, 0) + 1
    twice = sum(1 for n in seen.values() if n != 1)
    missing = len(keys) - len(seen)
    value = {"displaced": len(keys), "final_once": len(seen) - twice, "twice": twice, "not_final": missing}
    return CheckResult(not twice and not missing, value, "" if not (twice or missing) else f"{missing} not final, {twice} twice")


def measure(ctx: RunContext) -> dict[str, Any]:
    return {
        "target_height": ctx.recall("target"),
        "to_first_block_s": ctx.recall("to_first_block_s"),
        "resubmitted": ctx.recall("resubmitted"),
        "downtime_s": ctx.recall("to_first_block_s"),
    }


RUNBOOK = Runbook(
    name="rollback-recovery",
    summary="Back up, stop every delegate, roll each back to height H, restart, re-submit the displaced actions",
    params=(
        Param("to", int, default=0, help="the height to return to", minimum=0),
        Param("blocks", int, default=0, help="or: how many blocks to reverse", minimum=0),
    ),
    preflight=preflight,
    steady_state=(checks.finalizing(blocks=2, within=15), checks.agree()),
    steps=(
        Step("plan", plan, "fix the target height H"),
        Step(
            "stop",
            stop,
            "stop every node",
            hosts="delegates",
            serial=False,
            destructive=True,
            rollback=start,
            rollback_description="start the node again",
            phase="stopped",
        ),
        Step(
            "rollback",
            rollback,
            "back up, then roll the node back to H (offline)",
            hosts="delegates",
            serial=False,
            timeout=300,
            destructive=True,
            point_of_no_return=True,
            phase="rollback",
        ),
        Step("start", start, "start every node", hosts="delegates", serial=False, phase="restarted"),
        Step(
            "continue",
            lambda ctx: None,
            "the chain continues from H with every delegate agreeing",
            verify=(
                Check("a new block H+1 is finalized", continued, timeout=90, interval=1),
                checks.agree(),
                checks.finalizing(blocks=2, within=15),
            ),
        ),
        Step(
            "resubmit",
            resubmit,
            "re-submit the removed actions",
            phase="re-submit",
            verify=(Check("each re-submitted action is final exactly once", final_once, timeout=60, interval=1),),
        ),
    ),
    measure=measure,
    # blast radius (drill schedules): stops every delegate
    out_of_consensus=0,
    stops_chain=True,
    expected_alerts=("ChainStalled", "DelegateDown", "PeersLow", "DelegateLagging", "DelegateMissingSlots"),
)
