"""Compatible hotfix: a new release on every delegate, one at a time, while consensus never pauses.

The release is staged on every host first (side by side, not active), so each delegate's switch is only an
atomic link change and a restart, timed just after the delegate proposed a block. Each delegate must be back,
synced and endorsing before the next one goes. A delegate that does not come back healthy is switched back
to its previous release (waiting for its host if it is unreachable) and the run stops.
"""

from __future__ import annotations

from typing import Any

from iotex_ops.runbook import Param, Runbook, RunContext, Step, checks
from iotex_ops.runbook import actions as act


def preflight(ctx: RunContext) -> list[str]:
    version = str(ctx.params["version"])
    manifest = act.artifact_manifest(ctx, version)
    problems = []
    cs = checks.chains(ctx)
    active = {c["protocol_version"] for c in cs.values() if c}
    missing = sorted(p for p in active if p not in manifest["protocols"])
    if missing:
        problems.append(f"release {version} does not run protocol {missing} that the chain runs: not a compatible hotfix")
    return problems


def stage(ctx: RunContext) -> None:
    ctx.remember("window_start_height", checks.top_height(ctx))
    ctx.remember("previous", {d.name: act.running_release(d) for d in ctx.delegates})
    act.stage_release(ctx, str(ctx.params["version"]))


def upgrade(ctx: RunContext) -> None:
    d, version = ctx.delegate, str(ctx.params["version"])
    if act.running_release(d) == version:
        ctx.log(f"{d.name} already runs {version}")
        return
    h = act.wait_after_own_proposal(ctx, d, timeout=float(ctx.params["align_timeout_s"]))
    ctx.log(f"{d.name}: " + (f"proposed block {h}; switching now" if h else "no own proposal seen; switching anyway"))
    act.activate_and_restart(ctx, d, version)


def switch_back(ctx: RunContext) -> None:
    d = ctx.delegate
    prev = (ctx.recall("previous") or {}).get(d.name)
    try:
        running = act.running_release(d)
    except Exception:
        running = None
    if running is not None and running == prev:
        ctx.log(f"{d.name} runs its previous release {prev}: nothing to switch back")
        return
    act.switch_back_and_restart(ctx, d)
    ctx.log(f"{d.name}: back on its previous release ({prev})")


def max_gap(ctx: RunContext) -> float:
    c = ctx.delegates[0].chain()
    return float(ctx.params["max_gap_intervals"]) * c["block_interval_ms"] / 1000


def measure(ctx: RunContext) -> dict[str, Any]:
    start = int(ctx.recall("window_start_height", 0))
    gaps = checks.block_gaps(ctx, start) if start else []
    interval = ctx.delegates[0].chain()["block_interval_ms"] / 1000
    longest = max((g for _, g in gaps), default=0.0)
    return {
        "longest_gap_s": round(longest, 3),
        "missed_slots": sum(1 for _, g in gaps if g > interval * 1.5),
        "blocks_during": len(gaps),
        "downtime_s": round(max(0.0, longest - interval), 3),
    }


RUNBOOK = Runbook(
    name="hotfix-compatible",
    summary="Rolling upgrade to a compatible release, one delegate at a time, consensus never pausing",
    params=(
        Param("version", str, help="the release to roll out (an artifact in node_release_dir)"),
        # a gap of 3 intervals means at most one missed slot (a round change): consensus did not pause
        Param("max_gap_intervals", float, default=3.0, help="longest allowed gap between finalized blocks, in block intervals"),
        Param("align_timeout_s", float, default=15.0, help="how long to wait for a delegate's own proposal before restarting it"),
    ),
    preflight=preflight,
    steady_state=(checks.prometheus_sees_all(), checks.finalizing(blocks=2, within=15, via_prometheus=True), checks.agree()),
    continuous=(checks.finalizing(blocks=1, within=8),),
    continuous_interval=2.0,
    steps=(
        Step("stage", stage, "install the release side by side on every delegate (not active yet)", timeout=600, phase="stage"),
        Step(
            "upgrade",
            upgrade,
            "per delegate: after its own proposal, activate the release and restart it",
            hosts="delegates",
            serial=True,
            timeout=180,
            destructive=True,
            verify=(checks.participating(timeout=45),),
            rollback=switch_back,
            rollback_hosts="unfinished",
            rollback_description="switch a delegate that did not come back healthy to its previous release; restart it",
            phase="rolling upgrade",
        ),
        Step(
            "verify",
            lambda ctx: None,
            "every delegate on the release, agreeing, no long gap",
            verify=(checks.versions("version"), checks.agree(), checks.no_gap_longer_than(max_gap)),
            phase="verify",
        ),
    ),
    measure=measure,
    # blast radius (drill schedules): restarts one delegate at a time while consensus continues
    out_of_consensus=1,
    expected_alerts=("DelegateDown", "VersionSkew", "PeersLow", "DelegateLagging", "DelegateMissingSlots"),
)
