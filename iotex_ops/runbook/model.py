"""What a runbook is: plain data a runbook module declares (no I/O here).

A runbook module in runbooks/ defines `RUNBOOK = Runbook(...)`:

    RUNBOOK = Runbook(
        name="first-aid",
        summary="Pause the whole chain, check it stopped at one height, resume it",
        params=(Param("single", str, default="", help="also pause/resume this one delegate"),),
        steady_state=(checks.finalizing(blocks=2, within=15),),
        steps=(
            Step("pause", pause_all, "pause every delegate", hosts="delegates", serial=False,
                 verify=(checks.all_halted_at_one_height(),), rollback=resume, destructive=True),
            ...
        ),
    )

Every callable takes the run's context (`RunContext`); in a step with `hosts`, the context is the one of the
host being worked on (`ctx.delegate`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from iotex_ops.errors import OpsError

if TYPE_CHECKING:
    from iotex_ops.runbook.context import RunContext


class RunbookError(OpsError):
    """A runbook cannot be loaded, its parameters are wrong, or its run cannot start or continue."""


class ParamError(RunbookError):
    """A parameter is unknown, missing or invalid; nothing has run."""


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Param:
    """A typed parameter, given as `-e name=value` (or a rehearsal's own value)."""

    name: str
    type: type = str
    default: Any = REQUIRED
    help: str = ""
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    secret: bool = False  # shown as *** in journals and reports

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    value: Any = None
    detail: str = ""


@dataclass(frozen=True)
class Check:
    """A verification: `probe` is polled until it passes or `timeout` seconds have passed."""

    description: str
    probe: Callable[[RunContext], CheckResult]
    timeout: float = 30.0
    interval: float = 0.5


@dataclass(frozen=True)
class Step:
    """One ordered step: an action, the checks that prove it worked, and how to undo it.

    hosts: None runs the action once; otherwise an inventory pattern ("delegates", "d1", "delegates:!d3"),
    and the action runs per host, one at a time (serial, each host's checks passing before the next) or all
    in parallel. `param_hosts` names a parameter holding that pattern instead."""

    name: str
    action: Callable[[RunContext], Any]
    description: str
    hosts: str | None = None
    param_hosts: str | None = None
    serial: bool = True
    verify: tuple[Check, ...] = ()
    timeout: float = 120.0
    retries: int = 0
    retry_delay: float = 2.0
    rollback: Callable[[RunContext], Any] | None = None
    rollback_description: str = ""
    # per-host steps: roll back every host the step touched ("touched"), or only those where it did not
    # complete ("unfinished": a rolling upgrade keeps the hosts that went well)
    rollback_hosts: str = "touched"
    destructive: bool = False
    # once this step has started, a failure rolls back nothing before it: the way out is forward
    point_of_no_return: bool = False
    when: Callable[[RunContext], bool] | None = None  # skipped when this says False
    phase: str | None = None  # label of the report plot's phase this step starts (default: the step's name)


@dataclass(frozen=True)
class Runbook:
    name: str
    summary: str
    steps: tuple[Step, ...]
    params: tuple[Param, ...] = ()
    steady_state: tuple[Check, ...] = ()
    # polled during the whole run; one failing stops the run (and rolls back)
    continuous: tuple[Check, ...] = ()
    continuous_interval: float = 1.0
    # read-only checks of the parameters against the network (a height in the past, an unknown release):
    # each returns problems; any problem refuses the run before any host is touched
    preflight: Callable[[RunContext], list[str]] | None = None
    # what the run measured for its report (downtime, blocks finalized...), computed after the steps
    measure: Callable[[RunContext], Mapping[str, Any]] | None = None
    doc: str = ""
    # the parameter naming the one host this runbook acts on (a remediation): its run then locks that host
    # and shares the network with other such runs, instead of locking the whole network as a drill does
    lock_host_param: str | None = None
    # the blast radius, for drill schedules (iotex_ops/schedule/check.py): the most delegates the runbook takes
    # out of consensus at once while the chain is meant to keep finalizing (None: not declared, and then it
    # cannot be scheduled), and whether it stops the whole chain on purpose (every delegate paused, halted or
    # stopped together: allowed alone, never beside another drill)
    out_of_consensus: int | None = None
    stops_chain: bool = False
    # the alerts this runbook causes on purpose on the hosts it touches (alert names of
    # iotex_ops/alerting/rules.py): a drill's maintenance window silences them there, and any other alert that
    # fires during the run is a stop condition for a scheduled drill
    expected_alerts: tuple[str, ...] = ()
    # a fault drill (iotex_ops/faults/): the alerts its fault causes on purpose and that must reach alertd (never
    # silenced: the drill tests the alert -> page -> remediation loop); a scheduled run's stop conditions expect
    # them on the delegates
    fault_alerts: tuple[str, ...] = ()
    # a run that must let remediations run meanwhile (a fault drill: alertd mends its victim): it takes the
    # network's lock shared, as a remediation does, and this named lock exclusively (one such run at a time),
    # instead of the whole network's lock; other drills still exclude it
    lock_scope: str | None = None
    source: str = field(default="", compare=False)

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise RunbookError(f"runbook {self.name} has no step {name!r}")

    @property
    def destructive_steps(self) -> list[str]:
        return [s.name for s in self.steps if s.destructive]
