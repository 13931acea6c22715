"""The runbook engine: runbooks as data (model), their runs (engine), typed run events (events) folded into a
run's state (state), the runs on disk (store), journals, locks, checks, reports."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


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
