"""Non-compatible hotfix: the whole network halts at height H, installs a release that runs the next
protocol, activates that protocol from H+1 on every delegate, and resumes.

The protocol must be scheduled while the chain is still below H (a node refuses an activation at or below
its next height), so the order is: stage the release, halt at H, schedule the protocol at H+1 (the point of
no return: until then, clearing the halt undoes everything), wait for the halt, activate the release and
restart, clear the halt. After the point of no return the way out is forward (steps retry; a failure stops
the run loudly with the chain safely halted at H).
"""

from __future__ import annotations

from typing import Any

from iotex_ops.runbook import Check, CheckResult, Param, Runbook, RunContext, Step, checks
from iotex_ops.runbook import actions as act


def _next_protocol(ctx: RunContext) -> tuple[int, int]:
    cs = checks.chains(ctx)
    current = max(c["protocol_version"] for c in cs.values() if c)
    manifest = act.artifact_manifest(ctx, str(ctx.params["version"]))
    newer = [p for p in manifest["protocols"] if p > current]
    if not newer:
        v = ctx.params["version"]
        raise ValueError(f"release {v} runs protocols {manifest['protocols']}: none after the active protocol {current}")
    return current, min(newer)


def preflight(ctx: RunContext) -> list[str]:
    problems = []
    try:
        _next_protocol(ctx)
    except ValueError as exc:
        problems.append(str(exc))
    tip = checks.top_height(ctx)
    h = int(ctx.params["height"])
    if h and h <= tip + 2:
        problems.append(f"height {h} is in the past or too close: the chain is at {tip}; give a height above {tip + 2}")
    return problems


def plan_halt(ctx: RunContext) -> None:
    current, nxt = _next_protocol(ctx)
    tip = checks.top_height(ctx)
    h = int(ctx.params["height"]) or tip + int(ctx.params["halt_in"])
    ctx.remember("halt_height", h)
    ctx.remember("protocol", nxt)
    ctx.remember("previous", {d.name: act.running_release(d) for d in ctx.delegates})
    ctx.log(f"halt at {h}, protocol {current} -> {nxt} from {h + 1}")


def halt(ctx: RunContext) -> None:
    act.halt_at(ctx, ctx.delegate, int(ctx.recall("halt_height")))


def clear(ctx: RunContext) -> None:
    act.clear_halt(ctx, ctx.delegate)


def stage(ctx: RunContext) -> None:
    act.stage_release(ctx, str(ctx.params["version"]))


def halted_at_h(ctx: RunContext) -> CheckResult:
    h = int(ctx.recall("halt_height"))
    interval = ctx.delegates[0].chain()["block_interval_ms"] / 1000
    act.all_at(ctx, h, timeout=(h - checks.top_height(ctx)) * interval * 3 + 30)
    r = checks.all_stopped_at_one_height(steady_for=1.0).probe(ctx)
    if r.ok and r.value["height"] == h:
        ctx.remember("halted_at", act.block_time(ctx, h))
        ctx.event("chain_halted", height=h)
        return r
    return CheckResult(False, r.value, r.detail or f"stopped at {r.value}, not {h}")


def install(ctx: RunContext) -> None:
    act.activate_and_restart(ctx, ctx.delegate, str(ctx.params["version"]))


def schedule(ctx: RunContext) -> None:
    d, p, h = ctx.delegate, int(ctx.recall("protocol")), int(ctx.recall("halt_height"))
    doc = d.admin("schedule-protocol", str(p), "--height", str(h + 1))
    ctx.log(f"{d.name}: protocol {p} from {h + 1}: schedule {doc.get('protocol_schedule')}")


def new_protocol(ctx: RunContext) -> CheckResult:
    h, p = int(ctx.recall("halt_height")), int(ctx.recall("protocol"))
    act.all_at(ctx, h + 2, timeout=30)
    cs = checks.chains(ctx)
    got = {n: c["protocol_version"] if c else None for n, c in cs.items()}
    first = act.block_time(ctx, h + 1)
    block = ctx.delegates[0].api.block(h + 1, timeout=3.0)
    downtime = first - float(ctx.recall("halted_at"))
    ctx.remember("downtime_s", round(downtime, 3))
    ok = all(v == p for v in got.values()) and block.protocol == p
    return CheckResult(ok, {"protocols": got, "block_protocol": block.protocol, "downtime_s": round(downtime, 3)})


def measure(ctx: RunContext) -> dict[str, Any]:
    return {"halt_height": ctx.recall("halt_height"), "protocol": ctx.recall("protocol"), "downtime_s": ctx.recall("downtime_s")}


RUNBOOK = Runbook(
    name="hotfix-incompatible",
    summary="Halt every delegate at a height, install a release with the next protocol, activate it after that height, resume",
    params=(
        Param("version", str, help="the release that runs the next protocol (an artifact in node_release_dir)"),
        Param("height", int, default=0, help="halt height H (default: tip + halt_in)", minimum=0),
        Param("halt_in", int, default=8, help="blocks from now to the halt height, when height is not given", minimum=3),
    ),
    preflight=preflight,
    steady_state=(checks.finalizing(blocks=2, within=15), checks.agree()),
    steps=(
        Step("stage", stage, "install the release side by side on every delegate (not active yet)", timeout=600),
        Step("plan", plan_halt, "choose the halt height H and the next protocol"),
        Step(
            "halt-at",
            halt,
            "schedule a halt at H on every delegate",
            hosts="delegates",
            serial=False,
            destructive=True,
            rollback=clear,
            rollback_description="clear the halt: the chain continues on the old release",
            phase="halt at H",
        ),
        Step(
            "schedule-protocol",
            schedule,
            "activate the next protocol from H+1 on every delegate (point of no return)",
            hosts="delegates",
            serial=False,
            point_of_no_return=True,
            retries=1,
        ),
        Step(
            "wait-halted",
            lambda ctx: None,
            "wait until every delegate has finalized H and stopped",
            verify=(Check("every delegate halted at H with one hash", halted_at_h, timeout=120, interval=1),),
            timeout=10,
        ),
        Step(
            "install",
            install,
            "activate the new release and restart, on every delegate",
            hosts="delegates",
            serial=False,
            timeout=180,
            retries=2,
            phase="install",
        ),
        Step("resume", clear, "clear the halt on every delegate", hosts="delegates", serial=False, retries=2, phase="resume"),
        Step(
            "verify",
            lambda ctx: None,
            "the new protocol runs and the chain finalizes, every delegate agreeing",
            verify=(
                Check("the next protocol is active from H+1", new_protocol, timeout=60, interval=1),
                checks.finalizing(blocks=3, within=15),
                checks.agree(),
            ),
        ),
    ),
    measure=measure,
    # blast radius (drill schedules): halts every delegate at one height
    out_of_consensus=0,
    stops_chain=True,
    expected_alerts=("ChainStalled", "DelegateDown", "VersionSkew", "PeersLow", "DelegateLagging", "DelegateMissingSlots"),
)
