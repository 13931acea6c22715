"""A runbook for the resume tests: step c fails; b's rollback kills its own process on d2, once.

Actions and rollbacks append what they did to the file `out`."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from iotex_ops.runbook import Param, Runbook, RunContext, Step


def _append(ctx: RunContext, text: str) -> None:
    with Path(ctx.params["out"]).open("a", encoding="utf-8") as f:
        f.write(text + "\n")


def do_a(ctx: RunContext) -> None:
    _append(ctx, "a")


def undo_a(ctx: RunContext) -> None:
    _append(ctx, "rb-a")


def do_b(ctx: RunContext) -> None:
    _append(ctx, f"b@{ctx.delegate.name}")


def undo_b(ctx: RunContext) -> None:
    marker = Path(ctx.params["out"]).with_name("rollback-crash.marker")
    if ctx.delegate.name == "d2" and not marker.exists():
        marker.write_text("crashed once\n")
        os.kill(os.getpid(), signal.SIGKILL)
    _append(ctx, f"rb-b@{ctx.delegate.name}")


def do_c(ctx: RunContext) -> None:
    _append(ctx, "c")
    raise RuntimeError("c broke")


def undo_c(ctx: RunContext) -> None:
    _append(ctx, "rb-c")


RUNBOOK = Runbook(
    name="rollback-crash",
    summary="c fails; the rollback of b dies on d2 the first time",
    params=(Param("out", str, help="file the steps append to"),),
    steps=(
        Step("a", do_a, "a", rollback=undo_a, retry_delay=0.01),
        Step("b", do_b, "b per host", hosts="delegates", rollback=undo_b, retry_delay=0.01),
        Step("c", do_c, "c fails", rollback=undo_c, retry_delay=0.01),
    ),
)
