"""Resume delegate: a delegate that was paused unexpectedly (`iotex-node admin pause`, or a pause left over
from a drill) resumes, and is verified unpaused and endorsing new blocks with its peers.

Started by `iotex-ops alertd` on DelegatePausedUnexpectedly (host=<the delegate>), or by hand. Resuming
is idempotent: a delegate that is not paused is left alone (the run still checks that it endorses, so that
"passed" always means "signing"). A halted delegate (its scheduled halt height reached, or a protocol
upgrade it cannot run) is never resumed by this runbook: a halt is a decision about the whole network,
and a person must make it; the run is refused before anything is touched. A standby is refused too:
activating it could make two nodes sign with one key.
"""

from __future__ import annotations

import time
from typing import Any

from iotex_ops.errors import OpsError
from iotex_ops.network import Delegate, NodeApiError
from iotex_ops.runbook import Check, CheckResult, Param, Runbook, RunContext, Step

API_TIMEOUT_S = 2.0


def target(ctx: RunContext) -> Delegate:
    return ctx.network.delegate(str(ctx.params["host"]))


def refusal(name: str, chain: dict[str, Any]) -> str | None:
    """Why this runbook must not resume the delegate, if it must not."""
    if chain.get("halted"):
        return (
            f"{name} is halted ({chain['halted']}), not just paused: resuming it is a decision about the whole network "
            "that a person must make (clear the halt with `iotex-node admin halt-at --clear`, or upgrade the node)"
        )
    if chain.get("standby"):
        return f"{name} is a standby: activating it (`iotex-node admin activate`) is a person's decision (one key, one signer)"
    return None


def preflight(ctx: RunContext) -> list[str]:
    host = str(ctx.params["host"])
    names = [d.name for d in ctx.delegates]
    if host not in names:
        return [f"{host!r} is not a delegate of {ctx.network.inventory.path}; its delegates: {', '.join(names)}"]
    d = target(ctx)
    try:
        c = d.chain(timeout=API_TIMEOUT_S)
    except NodeApiError as exc:
        return [
            f"{host} does not answer on its API ({exc}): it cannot be resumed; restart-node is for a node that does not answer"
        ]
    why = refusal(host, c)
    return [why] if why else []


def resume(ctx: RunContext) -> None:
    d = target(ctx)
    c = d.chain(timeout=API_TIMEOUT_S)  # afresh: the preflight's view may be old
    why = refusal(d.name, c)
    if why:
        raise OpsError(why)
    if not c.get("paused"):
        ctx.event("not_paused", host=d.name, height=c["finalized_height"])
        ctx.log(f"{d.name} is not paused: nothing to resume")
        return
    doc = d.admin("resume")
    if doc.get("paused"):
        raise OpsError(f"{d.name}: `iotex-node admin resume` answered, yet the node says it is still paused: {doc}")
    h = int(c["finalized_height"])
    # it must endorse a block above h+1: a delegate paused just now may have signed h+1 before its pause
    ctx.remember("since", h + 1)
    ctx.remember("resumed_at", time.time())
    ctx.event("resumed", host=d.name, height=h)
    ctx.log(f"{d.name} resumed at height {h}")


def endorsing(ctx: RunContext) -> CheckResult:
    d, since = target(ctx), ctx.recall("since")
    s = ctx.network.standing(d.name, since=since, timeout=API_TIMEOUT_S)
    problems = s.problems(int(ctx.params["max_lag"]), since)
    if problems:
        return CheckResult(False, s.to_json(), f"{d.name}: " + "; ".join(problems))
    at = ctx.recall("resumed_at")
    if at is not None and ctx.recall("endorsing_after_s") is None:
        ctx.remember("endorsing_after_s", round(time.time() - float(at), 3))
    return CheckResult(True, s.to_json())


def measure(ctx: RunContext) -> dict[str, Any]:
    return {"resumed": ctx.recall("since") is not None, "endorsing_after_s": ctx.recall("endorsing_after_s")}


RUNBOOK = Runbook(
    name="resume-delegate",
    summary="Resume a delegate paused unexpectedly (never a halted one), verify it is unpaused and endorsing",
    params=(
        Param("host", str, help="the paused delegate (an inventory host of the delegates group)"),
        Param("max_lag", int, default=3, help="blocks it may be behind its peers' finalized height", minimum=0),
    ),
    preflight=preflight,
    steps=(
        Step(
            "resume",
            resume,
            "`iotex-node admin resume` if it is paused (refused if halted or a standby)",
            timeout=60,
            verify=(
                Check("the delegate is unpaused, in step with its peers and endorsing", endorsing, timeout=30, interval=0.25),
            ),
        ),
    ),
    measure=measure,
    # blast radius (drill schedules): acts on the one delegate `host` (already out of consensus)
    out_of_consensus=1,
    lock_host_param="host",
)
