"""Fault drills for game days (issue 17): a pure core (victim choice, the f bound, stop conditions, the
scorecard), the edges that read and break the world, and `FaultDrill`, the builder every fault runbook uses.
docs/gameday.md says how to run them and how to add a fault."""

from iotex_ops.faults.core import FaultError, f_bound
from iotex_ops.faults.drill import COMMON_PARAMS, Fault, FaultDrill

__all__ = ["COMMON_PARAMS", "Fault", "FaultDrill", "FaultError", "f_bound"]
