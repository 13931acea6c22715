"""A harmless runbook for the dashboard's tests: it watches each delegate's chain for a moment, one after
the other, verifying that its finalized height grows; it changes nothing, so that it runs on the shared lab
beside anything else (and the runs page has live steps and verification values to show)."""

from __future__ import annotations

import time

from iotex_ops.runbook import Check, CheckResult, Param, Runbook, RunContext, Step


def note_height(ctx: RunContext) -> None:
    ctx.remember(f"h0-{ctx.delegate.name}", ctx.delegate.chain()["finalized_height"])
    time.sleep(float(ctx.params["pause_s"]))  # long enough for a person (and a test) to see the step run


def grows(ctx: RunContext) -> CheckResult:
    h = int(ctx.delegate.chain()["finalized_height"])
    return CheckResult(h > int(ctx.recall(f"h0-{ctx.delegate.name}")), value=h)


RUNBOOK = Runbook(
    name="dashboard-watch",
    summary="watch each delegate's finalized height grow (changes nothing)",
    params=(Param("pause_s", float, default=1.5, help="how long each step watches"),),
    steps=(
        Step(
            "watch",
            note_height,
            "note the height, wait",
            hosts="delegates",
            serial=True,
            verify=(Check("finalized height grows", grows, timeout=20),),
        ),
    ),
)
