"""The runbook engine: runbooks as data (model), their runs (engine), typed run events (events) folded into a
run's state (state), the runs on disk (store), journals, locks, checks, reports."""

from __future__ import annotations

from typing import TYPE_CHECKING

from iotex_ops import lazy

if TYPE_CHECKING:
    from iotex_ops.runbook.context import RunContext
    from iotex_ops.runbook.engine import Engine, RunResult, StepFailed, plan
    from iotex_ops.runbook.events import Result
    from iotex_ops.runbook.model import REQUIRED, Check, CheckResult, Param, ParamError, Runbook, RunbookError, Step
    from iotex_ops.runbook.state import RunState, fold
    from iotex_ops.runbook.store import RunStore

# Each name is imported when first used (PEP 562): a module of the engine (events, model, state, store) comes
# without the engine, its checks and the host layer (paramiko) that `Engine` and `RunContext` bring.
_WHERE = {
    "RunContext": "context",
    "Engine": "engine",
    "RunResult": "engine",
    "StepFailed": "engine",
    "plan": "engine",
    "Result": "events",
    "REQUIRED": "model",
    "Check": "model",
    "CheckResult": "model",
    "Param": "model",
    "ParamError": "model",
    "Runbook": "model",
    "RunbookError": "model",
    "Step": "model",
    "RunState": "state",
    "fold": "state",
    "RunStore": "store",
}


__getattr__ = lazy.exports(__name__, _WHERE)


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
