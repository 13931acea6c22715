"""First aid: pause the whole chain, check that it stopped at one height with every delegate agreeing,
resume it, check that blocks come at their normal rate again with no fork and no lost transaction.
Then, unless single=false, pause and resume one delegate while the others keep finalizing."""

from __future__ import annotations

import time
from typing import Any

from iotex_ops.runbook import Check, CheckResult, Param, Runbook, RunContext, Step, checks
from iotex_ops.runbook import actions as act


def pause(ctx: RunContext) -> None:
    doc = ctx.delegate.admin("pause")
    ctx.log(f"{ctx.delegate.name}: paused={doc.get('paused')} at {doc.get('finalized_height')}")


def resume(ctx: RunContext) -> None:
    doc = ctx.delegate.admin("resume")
    ctx.log(f"{ctx.delegate.name}: paused={doc.get('paused')}")


STEADY_S = 2.0


def note_stop(ctx: RunContext) -> None:
    """Wait until no delegate finalizes for STEADY_S and all agree, then record that height.

    A block in flight when the pause lands is still finalized a moment later, so the height read right
    after the pause can be one short; the gaps measured after resuming would then start with the pause."""
    stopped = checks.all_stopped_at_one_height(steady_for=STEADY_S)
    deadline = time.monotonic() + stopped.timeout
    while not (r := stopped.probe(ctx)).ok:
        if time.monotonic() >= deadline:
            raise TimeoutError(f"the chain did not stop at one height within {stopped.timeout:g}s: {r.detail or r.value}")
        ctx.wait(0.2)  # gives way at once to a stop condition
    h = int(r.value["height"])
    ctx.remember("stopped_height", h)
    ctx.remember("stopped_hash", r.value["hash"])
    ctx.remember("stopped_at", act.block_time(ctx, h))
    ctx.event("chain_paused", height=h)


def still_stopped(ctx: RunContext) -> CheckResult:
    """Every delegate answers at the recorded stopped height with one hash (its prefix as recorded)."""
    h, prefix = int(ctx.recall("stopped_height")), str(ctx.recall("stopped_hash"))
    now = checks.chains(ctx)
    heights = {n: (c["finalized_height"] if c else None) for n, c in now.items()}
    ok = all(c and c["finalized_height"] == h and str(c["finalized_hash"]).startswith(prefix) for c in now.values())
    return CheckResult(ok, {"height": h, "heights": heights}, "" if ok else f"not every delegate is still at {h}")


def hold(ctx: RunContext) -> None:
    ctx.wait(float(ctx.params["hold_s"]))


def note_resume(ctx: RunContext) -> None:
    ctx.remember("resumed_at", time.time())


def normal_from(gaps: list[float], n: int, limit: float) -> int | None:
    """How many blocks came before the first `n` in a row whose mean gap is at most `limit`; None: no such run yet."""
    for i in range(len(gaps) - n + 1):
        if sum(gaps[i : i + n]) / n <= limit:
            return i
    return None


def back_to_normal(ctx: RunContext) -> CheckResult:
    """After resuming: the next block comes, then `blocks` in a row at the genesis interval (x1.5).

    The check retries over new blocks: a first few slower ones (delegates that reconnect after a long pause)
    are counted in `slow_blocks`, not judged forever. Judging only the first `blocks` after the resume, a retry
    would read the same ones again and could never pass."""
    stopped = int(ctx.recall("stopped_height"))
    c = ctx.delegates[0].chain()
    interval = c["block_interval_ms"] / 1000
    n = int(ctx.params["blocks"])
    act.all_at(ctx, stopped + 1 + n, timeout=30 + n * interval * 3)
    gaps = [g for h, g in checks.block_gaps(ctx, stopped + 1) if h > stopped + 1]
    first = act.block_time(ctx, stopped + 1)
    downtime = first - float(ctx.recall("stopped_at"))
    ctx.remember("downtime_s", round(downtime, 3))
    slow = normal_from(gaps, n, interval * 1.5)
    window = gaps[slow : slow + n] if slow is not None else gaps[-n:]
    rate = sum(window) / len(window) if window else 0.0
    value = {"downtime_s": round(downtime, 3), "mean_interval_s": round(rate, 3), "blocks": len(window),
             "slow_blocks": slow, "gaps_s": [round(g, 3) for g in (gaps[: slow + n] if slow is not None else gaps)]}  # fmt: skip
    if slow is None:
        return CheckResult(False, value, f"blocks slower than normal: the last {n} after {stopped + 1} came "
                           f"{rate:.2f}s apart, at most {interval * 1.5:g}s expected")  # fmt: skip
    ctx.remember("slow_blocks", slow)
    return CheckResult(True, value)


def single_window(ctx: RunContext) -> None:
    ctx.remember("window_start_height", checks.top_height(ctx))


def pause_one(ctx: RunContext) -> None:
    d = ctx.network.delegate(str(ctx.params["single"]) or ctx.delegates[-1].name)
    ctx.remember("single_delegate", d.name)
    d.admin("pause")
    ctx.log(f"{d.name} paused; the others keep finalizing")


def resume_one(ctx: RunContext) -> None:
    name = ctx.recall("single_delegate")
    if name:
        ctx.network.delegate(str(name)).admin("resume")
        ctx.log(f"{name} resumed")


def single_back(ctx: RunContext) -> CheckResult:
    d = ctx.network.delegate(str(ctx.recall("single_delegate")))
    return checks.participating().probe(ctx.on(d))


def _single(ctx: RunContext) -> bool:
    return bool(ctx.params["single_check"])


def measure(ctx: RunContext) -> dict[str, Any]:
    return {
        "downtime_s": ctx.recall("downtime_s"),
        "stopped_height": ctx.recall("stopped_height"),
        "slow_blocks_after_resume": ctx.recall("slow_blocks"),
    }


RUNBOOK = Runbook(
    name="first-aid",
    summary="Pause the chain on every delegate, verify it stopped at one agreed height, resume, verify normal production",
    params=(
        Param("hold_s", float, default=3.0, help="seconds to keep the chain paused", minimum=0),
        Param("blocks", int, default=5, help="blocks that must come at the normal rate after resuming", minimum=1),
        Param("single", str, default="", help="delegate for the single pause/resume (default: the last one)"),
        Param("single_check", bool, default=True, help="also pause/resume one delegate while the chain runs"),
    ),
    steady_state=(checks.prometheus_sees_all(), checks.finalizing(blocks=2, within=15, via_prometheus=True), checks.agree()),
    steps=(
        Step(
            "pause-all",
            pause,
            "pause every delegate (admin pause)",
            hosts="delegates",
            serial=False,
            rollback=resume,
            rollback_description="resume the delegate",
            destructive=True,
            phase="paused",
        ),
        Step(
            "verify-stopped",
            note_stop,
            "record the height the chain stopped at",
            verify=(
                Check(
                    f"the chain stopped: no delegate finalized for {STEADY_S:g}s, all at one height and hash",
                    still_stopped,
                    timeout=2,
                ),
            ),
        ),
        Step("hold", hold, "keep the chain paused for hold_s seconds"),
        Step("resume-all", resume, "resume every delegate (admin resume)", hosts="delegates", serial=False, phase="resumed"),
        Step(
            "verify-normal",
            note_resume,
            "production back at the normal rate, no fork",
            verify=(Check("blocks resume at the genesis interval", back_to_normal, timeout=60, interval=1), checks.agree()),
        ),
        Step(
            "single-pause",
            pause_one,
            "pause one delegate; the others keep finalizing",
            when=_single,
            rollback=resume_one,
            rollback_description="resume that delegate",
            phase="single pause",
            verify=(checks.finalizing(blocks=3, within=15),),
        ),
        Step(
            "single-resume",
            resume_one,
            "resume it; it endorses again",
            when=_single,
            verify=(Check("the delegate endorses again", single_back, timeout=30, interval=0.5), checks.agree()),
        ),
    ),
    measure=measure,
    # blast radius (drill schedules): pauses every delegate together, then one alone while the rest finalize
    out_of_consensus=1,
    stops_chain=True,
    expected_alerts=("ChainStalled", "DelegatePausedUnexpectedly", "DelegateLagging", "DelegateMissingSlots"),
)
