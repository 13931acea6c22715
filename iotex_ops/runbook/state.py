"""What a run's events say about it: one fold, `fold(events) -> RunState`, that everything reading a run uses.

The engine resumes from it (completed steps and hosts, memos, approvals, the rollback phase), rolls back
from it (which hosts a step touched, which finished, which rollbacks already ran), the report arranges it,
the run store answers queries with it, the CLI prints it, and alertd reads a run's outcome from it.

`fold` is pure: no I/O, no clock, its input untouched, a new state each call. `RunState.apply(ev)` is the
same fold one event at a time, for a view that follows a run live (the engine's own, the CLI's printer).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from iotex_ops.runbook.events import (
    Approval,
    CheckRow,
    ContinuousFailed,
    Event,
    Gate,
    MaintenanceClose,
    MaintenanceOpen,
    Mark,
    Measures,
    Memo,
    Phase,
    Result,
    Resumed,
    RollbackEnd,
    RollbackStart,
    RollbackStop,
    RunEnd,
    RunFailing,
    RunStart,
    StaleLock,
    SteadyState,
    StepDone,
    StepEnd,
    StepSkip,
    StepStart,
    Verify,
)


@dataclass
class StepRun:
    """A step on one host (or a step that runs once): its attempts, the last one's checks and output."""

    step: str
    host: str | None
    attempts: int = 0
    started: float | None = None  # the first attempt's start
    ended: float | None = None  # the last attempt's end
    ok: bool | None = None  # None: an attempt is running, or the run died in it
    duration_s: float | None = None  # the attempt's; after a retry, from the first start to the last end
    verifications: list[CheckRow] = field(default_factory=list)  # the last attempt's
    output_tail: list[str] = field(default_factory=list)
    error: str | None = None
    failed_attempts: list[StepEnd] = field(default_factory=list)


@dataclass
class RollbackRun:
    step: str
    host: str | None
    what: str | None = None
    started: float | None = None
    ended: float | None = None
    ok: bool | None = None  # None: started, not ended (the run died in it)
    duration_s: float | None = None
    output_tail: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class RunState:
    """A run as its journal tells it. Every field is derived from the events, nothing else."""

    start: RunStart | None = None
    end: RunEnd | None = None
    last_ts: float | None = None  # the newest event's time
    events: int = 0  # how many were folded
    # steps
    phases: list[Phase] = field(default_factory=list)
    steps: dict[tuple[str, str | None], StepRun] = field(default_factory=dict)  # in the order they started
    step_ends: dict[str, StepDone] = field(default_factory=dict)  # per-host steps that ended, all hosts done
    running: dict[tuple[str, str | None], StepStart] = field(default_factory=dict)  # attempts not ended (yet)
    done_steps: set[str] = field(default_factory=set)  # steps that completed (once, or on all their hosts)
    done_hosts: dict[str, list[str]] = field(default_factory=dict)  # step -> hosts it completed on, in order
    started_hosts: dict[str, list[str]] = field(default_factory=dict)  # step -> hosts it touched, in order
    skipped: list[StepSkip] = field(default_factory=list)
    approvals: list[Approval] = field(default_factory=list)
    approved: set[str] = field(default_factory=set)
    memory: dict[str, Any] = field(default_factory=dict)  # what steps remembered (restored by a resume)
    marks: list[Mark] = field(default_factory=list)
    # the steady state, the failure and the rollback
    steady_state: list[SteadyState] = field(default_factory=list)
    gates: list[Gate] = field(default_factory=list)  # a scheduled run's safety gates, in their order
    continuous_failed: list[ContinuousFailed] = field(default_factory=list)
    failing: RunFailing | None = None  # the failure that began the rollback phase
    rollbacks: dict[tuple[str, str | None], RollbackRun] = field(default_factory=dict)
    rolled_back: set[str] = field(default_factory=set)  # keys ("step", "step@host") of rollbacks that passed
    rollback_stop: RollbackStop | None = None
    # the rest
    measures_event: Measures | None = None
    resumes: list[Resumed] = field(default_factory=list)
    stale_locks: list[StaleLock] = field(default_factory=list)
    # the drill's maintenance window: every open and close, and the silences not expired yet
    maintenance: list[MaintenanceOpen | MaintenanceClose] = field(default_factory=list)
    open_silences: list[str] = field(default_factory=list)
    # the moments worth a line on a plot, in order: marks, the steady state lost, the failure, the rollback's
    # start, rollbacks that failed
    moments: list[Event] = field(default_factory=list)

    # -- what the run is --

    @property
    def run_id(self) -> str | None:
        return self.start.run_id if self.start else None

    @property
    def runbook(self) -> str | None:
        return self.start.runbook if self.start else None

    @property
    def result(self) -> Result | None:
        """How it ended; None while it runs, or if it died (then it can be resumed)."""
        return self.end.result if self.end else None

    @property
    def finished(self) -> bool:
        return self.end is not None

    @property
    def error(self) -> str | None:
        """The run's error: its end's, or (unfinished) the failure that began its rollback phase."""
        if self.end is not None:
            return self.end.error
        return self.failing.error if self.failing else None

    @property
    def rollback_phase(self) -> bool:
        return self.failing is not None

    @property
    def started_at(self) -> float | None:
        return self.start.ts if self.start else None

    @property
    def ended_at(self) -> float | None:
        """The end's time; for a run without an end, its last event's."""
        return self.end.ts if self.end else self.last_ts

    @property
    def duration_s(self) -> float | None:
        """Wall time from the start to the end (or the last event)."""
        t0, t1 = self.started_at, self.ended_at
        return None if t0 is None or t1 is None else round(t1 - t0, 3)

    @property
    def measures(self) -> dict[str, Any]:
        if self.measures_event is not None:
            return dict(self.measures_event.values)
        return dict(self.end.measures) if self.end else {}

    @property
    def started_steps(self) -> list[str]:
        """The steps the rollback phase undoes (as the failure recorded them), oldest first."""
        return list(self.failing.started_steps) if self.failing else []

    def step_ok(self, step: str) -> bool | None:
        """A per-host step's own end (every host done): True, False, or None if it did not end."""
        done = self.step_ends.get(step)
        return None if done is None else done.ok

    # -- the fold --

    def apply(self, ev: Event) -> None:
        """Fold one more event in (the events of a journal, in order)."""
        self.events += 1
        if ev.ts and (self.last_ts is None or ev.ts > self.last_ts):
            self.last_ts = ev.ts
        handler = _HANDLERS.get(type(ev))
        if handler is not None:
            handler(self, ev)

    def _run_start(self, ev: RunStart) -> None:
        if self.start is None:
            self.start = ev

    def _run_end(self, ev: RunEnd) -> None:
        self.end = ev

    def _steady_state(self, ev: SteadyState) -> None:
        self.steady_state.append(ev)

    def _gate(self, ev: Gate) -> None:
        self.gates.append(ev)

    def _phase(self, ev: Phase) -> None:
        self.phases.append(ev)

    def _row(self, step: str, host: str | None) -> StepRun:
        row = self.steps.get((step, host))
        if row is None:
            row = self.steps[(step, host)] = StepRun(step, host)
        return row

    def _step_start(self, ev: StepStart) -> None:
        row = self._row(ev.step, ev.host)
        row.attempts += 1
        if row.started is None:
            row.started = ev.ts
        row.verifications = []  # a new attempt: its own checks
        self.running[(ev.step, ev.host)] = ev
        if ev.host is not None:
            hosts = self.started_hosts.setdefault(ev.step, [])
            if ev.host not in hosts:
                hosts.append(ev.host)

    def _verify(self, ev: Verify) -> None:
        self._row(ev.step, ev.host).verifications.append(ev.row)

    def _step_end(self, ev: StepEnd) -> None:
        row = self._row(ev.step, ev.host)
        self.running.pop((ev.step, ev.host), None)
        if row.started is None:
            row.started = ev.ts - (ev.duration_s or 0.0)
        row.ended, row.ok, row.error, row.output_tail = ev.ts, ev.ok, ev.error, list(ev.output_tail)
        row.duration_s = round(ev.ts - row.started, 3) if row.attempts > 1 else ev.duration_s
        if not ev.ok:
            row.failed_attempts.append(ev)
        elif ev.host is None:
            self.done_steps.add(ev.step)
        else:
            hosts = self.done_hosts.setdefault(ev.step, [])
            if ev.host not in hosts:
                hosts.append(ev.host)

    def _step_done(self, ev: StepDone) -> None:
        if any(s == ev.step for s, _ in self.steps):
            self.step_ends[ev.step] = ev
        else:  # a per-host step that selected no host: a row of its own, as a step that runs once
            row = self._row(ev.step, None)
            row.started = ev.ts - (ev.duration_s or 0.0)
            row.ended, row.ok, row.duration_s = ev.ts, ev.ok, ev.duration_s
        if ev.ok:
            self.done_steps.add(ev.step)

    def _step_skip(self, ev: StepSkip) -> None:
        self.skipped.append(ev)

    def _approval(self, ev: Approval) -> None:
        self.approvals.append(ev)
        if ev.approved:
            self.approved.add(ev.step)

    def _memo(self, ev: Memo) -> None:
        self.memory[ev.key] = ev.value

    def _mark(self, ev: Mark) -> None:
        self.marks.append(ev)
        self.moments.append(ev)

    def _continuous_failed(self, ev: ContinuousFailed) -> None:
        self.continuous_failed.append(ev)
        self.moments.append(ev)

    def _run_failing(self, ev: RunFailing) -> None:
        self.failing = ev
        self.moments.append(ev)

    def _rollback_start(self, ev: RollbackStart) -> None:
        if not any(isinstance(m, RollbackStart) for m in self.moments):
            self.moments.append(ev)
        self.rollbacks[(ev.step, ev.host)] = RollbackRun(ev.step, ev.host, ev.what, started=ev.ts)

    def _rollback_end(self, ev: RollbackEnd) -> None:
        rb = self.rollbacks.setdefault((ev.step, ev.host), RollbackRun(ev.step, ev.host))
        rb.ended, rb.ok, rb.duration_s, rb.output_tail, rb.error = ev.ts, ev.ok, ev.duration_s, list(ev.output_tail), ev.error
        if ev.ok:
            self.rolled_back.add(ev.where)
        else:
            self.moments.append(ev)

    def _rollback_stop(self, ev: RollbackStop) -> None:
        self.rollback_stop = ev

    def _measures(self, ev: Measures) -> None:
        self.measures_event = ev

    def _resumed(self, ev: Resumed) -> None:
        self.resumes.append(ev)

    def _stale_lock(self, ev: StaleLock) -> None:
        self.stale_locks.append(ev)

    def _maintenance_open(self, ev: MaintenanceOpen) -> None:
        self.maintenance.append(ev)
        self.open_silences.extend(s for s in ev.silences if s not in self.open_silences)

    def _maintenance_close(self, ev: MaintenanceClose) -> None:
        self.maintenance.append(ev)
        self.open_silences = [s for s in self.open_silences if s not in ev.silences]


_HANDLERS: dict[type[Event], Any] = {
    RunStart: RunState._run_start,
    RunEnd: RunState._run_end,
    SteadyState: RunState._steady_state,
    Gate: RunState._gate,
    Phase: RunState._phase,
    StepStart: RunState._step_start,
    Verify: RunState._verify,
    StepEnd: RunState._step_end,
    StepDone: RunState._step_done,
    StepSkip: RunState._step_skip,
    Approval: RunState._approval,
    Memo: RunState._memo,
    Mark: RunState._mark,
    ContinuousFailed: RunState._continuous_failed,
    RunFailing: RunState._run_failing,
    RollbackStart: RunState._rollback_start,
    RollbackEnd: RunState._rollback_end,
    RollbackStop: RunState._rollback_stop,
    Measures: RunState._measures,
    Resumed: RunState._resumed,
    StaleLock: RunState._stale_lock,
    MaintenanceOpen: RunState._maintenance_open,
    MaintenanceClose: RunState._maintenance_close,
}


def fold(events: Iterable[Event]) -> RunState:
    """The state of a run from its events, oldest first (a whole journal, or as much of it as exists)."""
    state = RunState()
    for ev in events:
        state.apply(ev)
    return state
