"""The runbook engine: runbooks as data (model), their runs (engine), typed run events (events) folded into a
run's state (state), the runs on disk (store), journals, locks, checks, reports."""

from iotex_ops.runbook.context import RunContext
from iotex_ops.runbook.engine import Engine, RunResult, StepFailed, plan
from iotex_ops.runbook.events import Result
from iotex_ops.runbook.model import REQUIRED, Check, CheckResult, Param, ParamError, Runbook, RunbookError, Step
from iotex_ops.runbook.state import RunState, fold
from iotex_ops.runbook.store import RunStore

__all__ = [
    "REQUIRED",
    "Check",
    "CheckResult",
    "Engine",
    "Param",
    "ParamError",
    "Result",
    "RunContext",
    "RunResult",
    "RunState",
    "RunStore",
    "Runbook",
    "RunbookError",
    "Step",
    "StepFailed",
    "fold",
    "plan",
]
