"""The runbook engine: runbooks as data (model), their runs (engine), journals, locks, checks, reports."""

from iotex_ops.runbook.context import RunContext
from iotex_ops.runbook.engine import Engine, RunResult, StepFailed, plan
from iotex_ops.runbook.model import REQUIRED, Check, CheckResult, Param, ParamError, Runbook, RunbookError, Step

__all__ = [
    "REQUIRED",
    "Check",
    "CheckResult",
    "Engine",
    "Param",
    "ParamError",
    "RunContext",
    "RunResult",
    "Runbook",
    "RunbookError",
    "Step",
    "StepFailed",
    "plan",
]
