"""A remediation runbook that always fails (the breaker test's)."""

from __future__ import annotations

from iotex_ops.errors import OpsError
from iotex_ops.runbook import Param, Runbook, RunContext, Step


def fail(ctx: RunContext) -> None:
    raise OpsError(f"{ctx.params['host']}: this remediation always fails")


RUNBOOK = Runbook(
    name="always-fails",
    summary="fail, for tests",
    params=(Param("host", str),),
    steps=(Step("fail", fail, "fail"),),
    lock_host_param="host",
)
