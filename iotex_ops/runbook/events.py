"""A run's journal events, typed: one frozen dataclass per kind, and how each is read from and written to disk.

On disk an event is one JSON object per line of `journal.jsonl`: `{"seq": N, "ts": UNIX_S, "event": KIND, ...}`
with the kind's fields after the envelope. That format is unchanged by this module: `to_doc(from_doc(d))` gives
back `d` for every event the engine has written, so journals written before the events were typed still
resume and report. A kind this version does not know is read as `Unknown` (and ignored by the fold) rather
than refused, and so is a known kind whose required fields are missing (optional ones get neutral defaults).
Only a malformed `run_end` is refused: a run must not look unfinished (and be resumed) because of it.

`Result` is how a run ends, shared by the engine, the run store, the CLI and alertd. The journal only ever
holds the first three; `refused` and `deferred` are what a caller (alertd, the CLI's exit status) says of a
run that never began.

The events, in the order a run writes them:

| kind | class | written when |
| --- | --- | --- |
| `run_start` | RunStart | first: who, where, the network, the (redacted) parameters |
| `stale_lock` | StaleLock | the network's lock was taken over from a dead holder |
| `resumed` | Resumed | a `resume` began; what was done before |
| `gate` | Gate | a scheduled run's safety gate and its verdict (the scheduler service, before the run acts) |
| `steady_state` | SteadyState | the steady-state checks before, after, after the rollback |
| `approval` | Approval | a destructive step was approved (or not) |
| `phase` | Phase | a step begins: its label on the plot, its hosts |
| `step_start` | StepStart | an attempt of a step (on a host) begins |
| `verify` | Verify | one check of an attempt |
| `step_end` | StepEnd | an attempt ends (it has `attempt` and `output_tail`) |
| `step_end` | StepDone | a per-host step ends, all its hosts done (no `attempt`) |
| `step_skip` | StepSkip | a step (or a host of it) is skipped: its condition, or done before a resume |
| `memo` | Memo | a step remembers a value (restored by resume) |
| `mark` | Mark | a named moment with values (e.g. `chain_halted`) |
| `continuous_failed` | ContinuousFailed | a continuous check failed: the step in progress is aborted |
| `run_failing` | RunFailing | the run failed: the rollback phase begins |
| `rollback_start`, `rollback_end` | RollbackStart, RollbackEnd | one rollback (of a step, on a host) |
| `rollback_stop` | RollbackStop | the point of no return: nothing before it is undone |
| `maintenance_open` | MaintenanceOpen | a drill's silences were created (ids) and its start announced |
| `maintenance_close` | MaintenanceClose | the run's silences were expired (at its end, on a resume, after an abort) |
| `measures` | Measures | the runbook's measures (and a drill's time to detect per expected alert) |
| `run_end` | RunEnd | last: the result |
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from iotex_ops.runbook import journal as journal_mod
from iotex_ops.runbook.model import RunbookError


class Result(StrEnum):
    """How a run ended. A str: `Result.PASSED == "passed"`, and it is written to JSON and SQLite as its value."""

    PASSED = "passed"
    FAILED = "failed"  # failed, and every rollback that ran passed
    ROLLBACK_FAILED = "rollback_failed"  # a rollback failed or was stopped: the network needs a person
    REFUSED = "refused"  # never began: bad parameters, a failed preflight (nothing touched)
    DEFERRED = "deferred"  # never began: the network (or the host) was locked by another run

    @property
    def exit_code(self) -> int:
        """The exit status of `iotex-ops runbook run|resume`: 0 passed, 1 failed, 2 refused, 3 rollback failed."""
        return _EXIT[self]

    @property
    def ok(self) -> bool:
        return self is Result.PASSED


_EXIT = {Result.PASSED: 0, Result.FAILED: 1, Result.REFUSED: 2, Result.DEFERRED: 2, Result.ROLLBACK_FAILED: 3}
RUN_RESULTS = (Result.PASSED, Result.FAILED, Result.ROLLBACK_FAILED)  # those a journal's run_end can hold


@dataclass(frozen=True)
class CheckRow:
    """One check's outcome, as `verify` and `steady_state` carry it."""

    check: str
    ok: bool
    value: Any = None
    detail: str = ""

    def to_doc(self) -> dict[str, Any]:
        return {"check": self.check, "ok": self.ok, "value": self.value, "detail": self.detail}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> CheckRow:
        return cls(str(doc.get("check")), bool(doc.get("ok")), doc.get("value"), doc.get("detail", ""))


@dataclass(frozen=True, kw_only=True)
class Event:
    """The envelope: `seq` (1, 2, ... within a journal) and `ts` (unix seconds) are set when it is journaled."""

    kind: ClassVar[str] = ""
    seq: int = 0
    ts: float = 0.0

    def fields(self) -> dict[str, Any]:
        """The fields after the envelope, in the order they are written."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("seq", "ts")}

    @classmethod
    def _from(cls, doc: Mapping[str, Any]) -> Event:
        return cls(**_pick(cls, doc))

    @property
    def where(self) -> str:
        """`step` or `step@host`, for events that have them."""
        step, host = getattr(self, "step", None), getattr(self, "host", None)
        return f"{step}" + (f"@{host}" if host else "")


def _pick(cls: type, doc: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in doc.items() if k in names and k != "event"}


def _strs(v: Any) -> tuple[str, ...]:
    return tuple(str(x) for x in v or ())


def _opt(v: Any) -> str | None:
    return None if v is None else str(v)


@dataclass(frozen=True, kw_only=True)
class RunStart(Event):
    kind: ClassVar[str] = "run_start"
    run_id: str
    runbook: str
    runbook_source: str = ""
    user: str = ""
    machine: str = ""
    pid: int = 0
    argv: tuple[str, ...] = ()  # with secret parameters masked; never shown in reports
    inventory: str = ""
    network: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)  # redacted
    delegates: tuple[str, ...] = ()
    prometheus: str | None = None

    @classmethod
    def _from(cls, doc: Mapping[str, Any]) -> RunStart:
        d = _pick(cls, doc)
        return cls(
            **{
                **d,
                "run_id": str(doc.get("run_id") or ""),
                "runbook": str(doc.get("runbook") or ""),
                "argv": _strs(doc.get("argv")),
                "params": dict(doc.get("params") or {}),
                "delegates": _strs(doc.get("delegates")),
            }
        )


@dataclass(frozen=True, kw_only=True)
class StaleLock(Event):
    kind: ClassVar[str] = "stale_lock"
    previous: Mapping[str, Any] = field(default_factory=dict)  # the dead holder: run_id, pid, user, machine...


@dataclass(frozen=True, kw_only=True)
class Resumed(Event):
    kind: ClassVar[str] = "resumed"
    user: str = ""
    pid: int = 0
    done_steps: tuple[str, ...] = ()
    done_hosts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    rollback_phase: bool = False

    @classmethod
    def _from(cls, doc: Mapping[str, Any]) -> Resumed:
        return cls(
            **{
                **_pick(cls, doc),
                "done_steps": _strs(doc.get("done_steps")),
                "done_hosts": {str(k): _strs(v) for k, v in (doc.get("done_hosts") or {}).items()},
                "rollback_phase": bool(doc.get("rollback_phase")),
            }
        )


@dataclass(frozen=True, kw_only=True)
class SteadyState(Event):
    kind: ClassVar[str] = "steady_state"
    phase: str  # before | after | after_rollback
    ok: bool
    checks: tuple[CheckRow, ...] = ()

    def fields(self) -> dict[str, Any]:
        return {"phase": self.phase, "ok": self.ok, "checks": [c.to_doc() for c in self.checks]}

    @classmethod
    def _from(cls, doc: Mapping[str, Any]) -> SteadyState:
        checks = tuple(CheckRow.from_doc(c) for c in doc.get("checks") or () if isinstance(c, Mapping))
        return cls(seq=doc.get("seq", 0), ts=doc.get("ts", 0.0), phase=str(doc.get("phase")), ok=bool(doc.get("ok")),
                   checks=checks)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class Gate(Event):
    """A safety gate the scheduler service passed before starting the run (docs/schedules.md): its name, its
    verdict and why. Journaled right after run_start, in the gates' order; a failing gate starts no run (its
    verdict is in the scheduler's records instead)."""

    kind: ClassVar[str] = "gate"
    gate: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class Approval(Event):
    kind: ClassVar[str] = "approval"
    step: str
    approved: bool
    by: str = ""
    how: str = ""  # --yes | interactive


@dataclass(frozen=True, kw_only=True)
class Phase(Event):
    kind: ClassVar[str] = "phase"
    step: str
    label: str
    hosts: tuple[str, ...] = ()

    @classmethod
    def _from(cls, doc: Mapping[str, Any]) -> Phase:
        step = str(doc.get("step"))
        return cls(seq=doc.get("seq", 0), ts=doc.get("ts", 0.0), step=step, label=str(doc.get("label") or step),
                   hosts=_strs(doc.get("hosts")))  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class StepStart(Event):
    kind: ClassVar[str] = "step_start"
    step: str
    host: str | None = None
    attempt: int = 1


@dataclass(frozen=True, kw_only=True)
class Verify(Event):
    kind: ClassVar[str] = "verify"
    step: str
    host: str | None = None
    check: str
    ok: bool
    value: Any = None
    detail: str = ""

    @property
    def row(self) -> CheckRow:
        return CheckRow(self.check, self.ok, self.value, self.detail)


@dataclass(frozen=True, kw_only=True)
class StepEnd(Event):
    """An attempt of a step (on a host, or once) ended."""

    kind: ClassVar[str] = "step_end"
    step: str
    host: str | None = None
    ok: bool
    attempt: int = 1
    duration_s: float = 0.0
    output_tail: tuple[str, ...] = ()
    error: str | None = None

    @classmethod
    def _from(cls, doc: Mapping[str, Any]) -> StepEnd:
        return cls(**{**_pick(cls, doc), "step": str(doc.get("step")), "ok": bool(doc.get("ok")),
                      "attempt": int(doc.get("attempt") or 1), "output_tail": _strs(doc.get("output_tail"))})  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class StepDone(Event):
    """A per-host step ended, every host done: written as `step_end` with no host and no attempt."""

    kind: ClassVar[str] = "step_end"
    step: str
    host: None = None
    ok: bool = True
    duration_s: float = 0.0


@dataclass(frozen=True, kw_only=True)
class StepSkip(Event):
    kind: ClassVar[str] = "step_skip"
    step: str
    host: str | None = None  # written only when a host of the step is skipped
    reason: str = ""

    def fields(self) -> dict[str, Any]:
        d = super().fields()
        if self.host is None:
            del d["host"]
        return d


@dataclass(frozen=True, kw_only=True)
class Memo(Event):
    kind: ClassVar[str] = "memo"
    step: str | None = None
    key: str
    value: Any = None


@dataclass(frozen=True, kw_only=True)
class Mark(Event):
    """A named moment for the report; its values are written beside `step` and `name`."""

    kind: ClassVar[str] = "mark"
    step: str | None = None
    name: str
    values: Mapping[str, Any] = field(default_factory=dict)

    def fields(self) -> dict[str, Any]:
        return {"step": self.step, "name": self.name, **self.values}

    @classmethod
    def _from(cls, doc: Mapping[str, Any]) -> Mark:
        values = {k: v for k, v in doc.items() if k not in ("seq", "ts", "event", "step", "name")}
        return cls(seq=doc.get("seq", 0), ts=doc.get("ts", 0.0), step=_opt(doc.get("step")), name=str(doc.get("name")),
                   values=values)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class ContinuousFailed(Event):
    kind: ClassVar[str] = "continuous_failed"
    check: str
    value: Any = None
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class RunFailing(Event):
    kind: ClassVar[str] = "run_failing"
    step: str | None = None
    host: str | None = None
    error: str = ""
    started_steps: tuple[str, ...] = ()  # what the rollback phase undoes, newest last

    @classmethod
    def _from(cls, doc: Mapping[str, Any]) -> RunFailing:
        return cls(seq=doc.get("seq", 0), ts=doc.get("ts", 0.0), step=_opt(doc.get("step")), host=_opt(doc.get("host")),
                   error=str(doc.get("error") or ""), started_steps=_strs(doc.get("started_steps")))  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class RollbackStart(Event):
    kind: ClassVar[str] = "rollback_start"
    step: str
    host: str | None = None
    what: str | None = None


@dataclass(frozen=True, kw_only=True)
class RollbackEnd(Event):
    kind: ClassVar[str] = "rollback_end"
    step: str
    host: str | None = None
    ok: bool
    duration_s: float = 0.0
    output_tail: tuple[str, ...] = ()
    error: str | None = None

    @classmethod
    def _from(cls, doc: Mapping[str, Any]) -> RollbackEnd:
        return cls(**{**_pick(cls, doc), "step": str(doc.get("step")), "ok": bool(doc.get("ok")),
                      "output_tail": _strs(doc.get("output_tail"))})  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class RollbackStop(Event):
    kind: ClassVar[str] = "rollback_stop"
    step: str
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class MaintenanceOpen(Event):
    """A drill's maintenance window opened: the Alertmanager silences of the alerts it expects on the hosts it
    touches (their ids, to expire them at the end, on a resume, or as a dead run's), and the change event sent.
    With `--no-maintenance` (or an unreachable Alertmanager and that flag) `silences` is empty and `note` says why."""

    kind: ClassVar[str] = "maintenance_open"
    silences: tuple[str, ...] = ()
    alerts: tuple[str, ...] = ()  # the expected alert names silenced
    hosts: tuple[str, ...] = ()  # the hosts the per-host alerts are silenced on
    alertmanager: str = ""
    ends_at: str = ""  # the silences' end (RFC 3339): the run's timeout plus a grace
    announced: bool = False  # a change event was queued for PagerDuty
    note: str = ""

    @classmethod
    def _from(cls, doc: Mapping[str, Any]) -> MaintenanceOpen:
        return cls(**{**_pick(cls, doc), "silences": _strs(doc.get("silences")), "alerts": _strs(doc.get("alerts")),
                      "hosts": _strs(doc.get("hosts"))})  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class MaintenanceClose(Event):
    """Silences of this run expired: at its end, before a resume reopens the window, or after an abort."""

    kind: ClassVar[str] = "maintenance_close"
    silences: tuple[str, ...] = ()  # the ids expired
    reason: str = ""  # end | resume | aborted
    error: str | None = None  # what could not be expired (Alertmanager unreachable): they end at their end time

    @classmethod
    def _from(cls, doc: Mapping[str, Any]) -> MaintenanceClose:
        return cls(**{**_pick(cls, doc), "silences": _strs(doc.get("silences"))})


@dataclass(frozen=True, kw_only=True)
class Measures(Event):
    kind: ClassVar[str] = "measures"
    values: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class RunEnd(Event):
    kind: ClassVar[str] = "run_end"
    result: Result
    error: str | None = None
    duration_s: float = 0.0
    measures: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def _from(cls, doc: Mapping[str, Any]) -> RunEnd:
        raw = doc.get("result")
        try:
            result = Result(str(raw))
            if result not in RUN_RESULTS:
                raise ValueError(raw)
        except ValueError:
            raise RunbookError(f"run_end (seq {doc.get('seq')}) has an unknown result {raw!r}") from None
        return cls(**{**_pick(cls, doc), "result": result, "measures": dict(doc.get("measures") or {})})


@dataclass(frozen=True, kw_only=True)
class Unknown(Event):
    """An event of a kind this version does not know (a newer engine's, or a runbook's own): kept, not folded."""

    name: str
    values: Mapping[str, Any] = field(default_factory=dict)

    def fields(self) -> dict[str, Any]:
        return dict(self.values)


_TYPES: tuple[type[Event], ...] = (RunStart, StaleLock, Resumed, Gate, SteadyState, Approval, Phase, StepStart, Verify, StepEnd,
                                   StepSkip, Memo, Mark, ContinuousFailed, RunFailing, RollbackStart, RollbackEnd,
                                   RollbackStop, MaintenanceOpen, MaintenanceClose, Measures, RunEnd)  # fmt: skip
KINDS: dict[str, type[Event]] = {c.kind: c for c in _TYPES}  # step_end: StepEnd, or StepDone (see from_doc)


def from_doc(doc: Mapping[str, Any]) -> Event:
    """The typed event of one journal line (already JSON-decoded)."""
    kind = str(doc.get("event"))
    if kind == "step_end" and "attempt" not in doc and "output_tail" not in doc and doc.get("host") is None:
        cls: type[Event] = StepDone
    elif kind in KINDS:
        cls = KINDS[kind]
    else:
        return _unknown(kind, doc)
    if cls is RunEnd:
        return cls._from(doc)  # never ignored: a run that ended must not look unfinished (and be resumed)
    try:
        return cls._from(doc)
    except (TypeError, ValueError):  # a required field missing or of another type: kept, not folded
        return _unknown(kind, doc)


def _unknown(kind: str, doc: Mapping[str, Any]) -> Unknown:
    values = {k: v for k, v in doc.items() if k not in ("seq", "ts", "event")}
    return Unknown(seq=int(doc.get("seq") or 0), ts=float(doc.get("ts") or 0.0), name=kind, values=values)


def to_doc(ev: Event) -> dict[str, Any]:
    """The journal line of an event, envelope first; `from_doc(to_doc(ev)) == ev`."""
    kind = ev.name if isinstance(ev, Unknown) else ev.kind
    return {"seq": ev.seq, "ts": ev.ts, "event": kind, **ev.fields()}


def parse(docs: Iterable[Mapping[str, Any]]) -> list[Event]:
    return [from_doc(d) for d in docs]


def load(path: Path) -> list[Event]:
    """The typed events of a journal file (a line torn by a crash is skipped); RunbookError if it does not exist."""
    docs = journal_mod.read(path)
    try:
        return parse(docs)
    except RunbookError as exc:
        raise RunbookError(f"{path}: {exc}") from None
