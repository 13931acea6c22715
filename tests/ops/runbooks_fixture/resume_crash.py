"""A runbook for the resume tests: step 2 (per host, one at a time) kills its own process on d2, once.

Every step appends what it did to the file `out`; the marker file beside it says the crash happened."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from iotex_ops.runbook import Param, Runbook, RunContext, Step


def _append(ctx: RunContext, text: str) -> None:
    with Path(ctx.params["out"]).open("a", encoding="utf-8") as f:
        f.write(text + "\n")


def first(ctx: RunContext) -> None:
    ctx.remember("token", f"from-{os.getpid()}")
    _append(ctx, "step1")


def per_host(ctx: RunContext) -> None:
    marker = Path(ctx.params["out"]).with_name("resume-crash.marker")
    if ctx.delegate.name == "d2" and not marker.exists():
        marker.write_text("crashed once\n")
        os.kill(os.getpid(), signal.SIGKILL)
    _append(ctx, f"step2@{ctx.delegate.name}")


def third(ctx: RunContext) -> None:
    _append(ctx, "step3")


def fourth(ctx: RunContext) -> None:
    _append(ctx, f"step4 token={ctx.recall('token')}")


RUNBOOK = Runbook(
    name="resume-crash",
    summary="four steps; the second kills its own process on d2 the first time",
    params=(Param("out", str, help="file the steps append to"),),
    steps=(
        Step("step1", first, "remember a token"),
        Step("step2", per_host, "per host, one at a time", hosts="delegates", serial=True),
        Step("step3", third, "third"),
        Step("step4", fourth, "write the remembered token"),
    ),
)
