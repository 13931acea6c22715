"""Run a runbook: validate, lock, check the steady state, run and verify every step, roll back on failure.

The order of a run, every event of which goes to the journal first:

1. parameters typed and validated, inventory checked, preflight (read-only) checks: any problem refuses the
   run before any host is touched; destructive steps need `--yes` or an approver;
2. the network's lock; the steady state before;
3. each step: approval if destructive, the action (per host: serial or parallel), then its checks polled
   until they pass, with retries; the continuous checks are polled meanwhile;
4. on failure: the rollbacks of every started step, newest first, each journaled; one failing makes the
   run `rollback_failed` (exit 3), never `passed` or plain `failed`;
5. the steady state after, the runbook's measures, the report.

`resume RUN_ID` continues a run without a `run_end` (crashed, killed, interrupted) after its last completed
step or host, or finishes its rollback phase.

The engine is given the network (the caller opens and closes it) and a run store (store.py) that owns the
runs' directories; what it knows of a run it reads from the run's state (state.py), folded from the typed
events (events.py) it journals.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import getpass
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from iotex_ops import network as network_mod
from iotex_ops.errors import OpsError
from iotex_ops.network import Delegate, Network
from iotex_ops.runbook import journal as journal_mod
from iotex_ops.runbook import maintenance as maintenance_mod
from iotex_ops.runbook import params as params_mod
from iotex_ops.runbook.context import RunContext, _Shared
from iotex_ops.runbook.events import (
    Approval,
    CheckRow,
    ContinuousFailed,
    Event,
    MaintenanceClose,
    MaintenanceOpen,
    Measures,
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
from iotex_ops.runbook.lock import NetworkLock
from iotex_ops.runbook.maintenance import MaintenanceError, RunInfo, Window
from iotex_ops.runbook.model import Check, CheckResult, ParamError, Runbook, RunbookError, Step
from iotex_ops.runbook.state import RunState
from iotex_ops.runbook.store import RunDir, RunJournal, RunStore, default_state_dir

__all__ = ["Engine", "MaintenanceError", "RunResult", "StepFailed", "default_state_dir", "plan"]

# how long an abandoned action (timed out, or the steady state lost) may take to end before the engine moves on
ACTION_GRACE_S = 10.0
# at a drill's end, how long to wait for its expected alerts to stop firing (or pending) before its silences
# are expired, so that expiring them does not page for what the drill caused
SETTLE_S = 30.0
# after a rollback, how long the steady-state checks may take together (each check's own timeout otherwise:
# a minute and more, with a delegate down that alertd may not restart until the run ends)
AFTER_ROLLBACK_BUDGET_S = 15.0


class StepFailed(OpsError):
    def __init__(self, step: str, host: str | None, reason: str) -> None:
        super().__init__(step, host, reason)
        self.step, self.host, self.reason = step, host, reason

    def __str__(self) -> str:
        where = f"step {self.step}" + (f" on {self.host}" if self.host else "")
        return f"{where}: {self.reason}"


class _Aborted(Exception):
    """The continuous steady state was lost while a step ran."""


@dataclass
class RunResult:
    run_id: str
    runbook: str
    result: Result
    error: str | None
    duration_s: float
    run_dir: Path
    measures: dict[str, Any] = field(default_factory=dict)
    rollback_errors: list[str] = field(default_factory=list)
    report_html: Path | None = None
    report_json: Path | None = None

    @property
    def exit_code(self) -> int:
        return self.result.exit_code

    @property
    def journal(self) -> Path:
        return RunDir(self.run_dir).journal

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "runbook": self.runbook,
            "result": self.result,
            "error": self.error,
            "duration_s": round(self.duration_s, 3),
            "measures": self.measures,
            "rollback_errors": self.rollback_errors,
            "journal": str(self.journal),
            "report_html": str(self.report_html) if self.report_html else None,
            "report_json": str(self.report_json) if self.report_json else None,
        }


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, OpsError) else f"{type(exc).__name__}: {text}"


def _redacted_argv(runbook: Runbook) -> list[str]:
    """The command line, with the values of secret parameters (-e name=value) replaced by ***."""
    secret = {p.name for p in runbook.params if p.secret}
    out = []
    for a in sys.argv:
        prefix = next((p for p in ("--extra=", "-e") if a.startswith(p) and a != p), "")
        key, sep, _ = a[len(prefix) :].partition("=")
        out.append(f"{prefix}{key}=***" if sep and key.replace("-", "_") in secret else a)
    return out


def plan(runbook: Runbook, network: Network | None, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The steps as a dry run shows them: what runs where, what is checked, what undoes it. Touches nothing."""
    out = []
    for s in runbook.steps:
        pattern = params.get(s.param_hosts) if s.param_hosts else s.hosts
        if network is not None and (pattern or s.param_hosts):
            try:
                hosts = [d.name for d in network.select(str(pattern))] if pattern else []
            except OpsError as exc:
                hosts = [f"({exc})"]
        else:
            hosts = []
        out.append(
            {
                "step": s.name,
                "description": s.description,
                "hosts": hosts if (s.hosts or s.param_hosts) else None,
                "mode": ("one at a time" if s.serial else "in parallel") if (s.hosts or s.param_hosts) else "once",
                "verify": [c.description for c in s.verify],
                "timeout_s": s.timeout,
                "retries": s.retries,
                "rollback": s.rollback_description or (s.rollback.__name__ if s.rollback else None),
                "destructive": s.destructive,
                "conditional": s.when is not None,
            }
        )
    return out


class Engine:
    """Runs runbooks into a run store (default: the state dir's); one instance per command. `on_event` sees
    every event as it is journaled. `known_hosts` is for the network a `resume` opens itself.

    `maintenance`: the maintenance window of drills (runbooks with `expected_alerts`; runbook/maintenance.py).
    "auto" (the default): built from the network's inventory when it names an Alertmanager
    (`iotex_ops.schedule.maintenance.from_network`), none otherwise; a `Window`: that one; "off": none, and
    the run's journal says the drill's alerts were not silenced (`--no-maintenance`); None: none, nothing
    journaled (alertd's remediations). `maintenance_timeout_s`: how long its silences last before the grace
    (default: the runbook's own bound, `maintenance.run_timeout_s`; the scheduler gives a schedule's timeout)."""

    def __init__(
        self,
        store: RunStore | None = None,
        *,
        yes: bool = False,
        approve: Callable[[Step, list[str]], bool] | None = None,
        on_event: Callable[[Event], None] | None = None,
        known_hosts: Path | None = None,
        report: bool = True,
        action_grace_s: float = ACTION_GRACE_S,
        lock_wait_s: float = 0.0,
        maintenance: Window | str | None = "auto",
        maintenance_timeout_s: float | None = None,
        settle_s: float = SETTLE_S,
    ) -> None:
        if isinstance(maintenance, str) and maintenance not in ("auto", "off"):
            raise RunbookError(f"maintenance must be 'auto', 'off', a window or None, not {maintenance!r}")
        self.store = store if store is not None else RunStore()
        self.yes = yes
        self.approve = approve
        self.on_event = on_event
        self.known_hosts = known_hosts
        self.report = report
        self.action_grace_s = action_grace_s
        self.lock_wait_s = lock_wait_s
        self.maintenance = maintenance
        self.maintenance_timeout_s = maintenance_timeout_s
        self.settle_s = settle_s
        self._abort = threading.Event()
        self._abort_reason = ""

    # -- entry points --

    def prepare(self, runbook: Runbook, network: Network, given: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters typed, the network checked, the preflight passed: or a RunbookError/OpsError naming why."""
        typed = params_mod.validate(runbook, given)
        if not network.delegates:
            raise RunbookError(f"inventory {network.inventory.path} has no delegates")
        if runbook.preflight is not None:
            ctx = self._context(runbook, "preflight", typed, network, None, self.store.dir("preflight").path)
            try:
                problems = runbook.preflight(ctx)
            except OpsError as exc:
                problems = [str(exc)]
            if problems:
                raise ParamError(f"{runbook.name}: " + "; ".join(problems))
        return typed

    def check_steady_state(self, runbook: Runbook, network: Network, given: Mapping[str, Any]) -> SteadyState:
        """The runbook's steady-state checks on `network` now, journaled nowhere (a scheduler's gate): the event
        `run(..., steady_state=)` journals as the run's own steady state before. Raises what `prepare` raises."""
        typed = self.prepare(runbook, network, given)
        ctx = self._context(runbook, "steady-state", typed, network, None, self.store.dir("preflight").path)
        results = [(c, self._verify(c, ctx)) for c in runbook.steady_state]
        rows = tuple(CheckRow(c.description, r.ok, r.value, r.detail) for c, r in results)
        return SteadyState(phase="before", ok=all(r.ok for _, r in results), checks=rows)

    def run(
        self,
        runbook: Runbook,
        network: Network,
        given: Mapping[str, Any],
        run_id: str | None = None,
        *,
        preamble: Sequence[Event] = (),
        steady_state: SteadyState | None = None,
    ) -> RunResult:
        """Run `runbook` on `network` (the caller closes it) with the parameters `given`, into a new run.

        preamble: events journaled right after run_start (a scheduled run's gate verdicts). steady_state: the
        steady state before, already checked by the caller (`check_steady_state`, just before): journaled as
        the run's own instead of checking again (a failing one fails the run before any step, as always)."""
        typed = self.prepare(runbook, network, given)
        destructive = runbook.destructive_steps
        if destructive and not self.yes and self.approve is None:
            raise RunbookError(
                f"{runbook.name} has destructive steps ({', '.join(destructive)}): "
                "pass --yes, or run it from a terminal to confirm each"
            )
        run_id = run_id or f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{runbook.name}-{secrets.token_hex(3)}"
        run = self.store.dir(run_id)
        if run.path.exists():
            raise RunbookError(f"run {run_id} exists already ({run.path}): `iotex-ops runbook resume {run_id}` continues it")
        window = self._window(runbook, network)  # fails closed here, before the run exists, if Alertmanager is down
        try:
            return self._run(runbook, network, typed, run_id, window, preamble, steady_state)
        finally:
            self._release(window)

    def _run(
        self,
        runbook: Runbook,
        network: Network,
        typed: dict[str, Any],
        run_id: str,
        window: Window | None,
        preamble: Sequence[Event] = (),
        steady_state: SteadyState | None = None,
    ) -> RunResult:
        run = self.store.dir(run_id)
        with self._session(network, run_id, runbook, typed, lambda: self.store.create(run_id)) as (journal, previous):
            self._write(
                journal,
                RunStart(
                    run_id=run_id,
                    runbook=runbook.name,
                    runbook_source=runbook.source,
                    user=getpass.getuser(),
                    machine=socket.gethostname(),
                    pid=os.getpid(),
                    argv=tuple(_redacted_argv(runbook)),
                    inventory=str(network.inventory.path.resolve()),
                    network=network.id,
                    params=params_mod.redacted(runbook, typed),
                    delegates=tuple(d.name for d in network.delegates),
                    prometheus=network.prometheus_url,
                ),
            )
            if previous:
                self._write(journal, StaleLock(previous=previous))
            for ev in preamble:
                self._write(journal, ev)
            ctx = self._context(runbook, run_id, typed, network, journal, run.path)
            return self._drive(runbook, ctx, journal, RunState(), resumed=False, window=window, checked=steady_state)

    def _window(self, runbook: Runbook, net: Network) -> Window | None:
        """The maintenance window of a drill on `net` (checked: Alertmanager answers), or None."""
        if not runbook.expected_alerts or self.maintenance is None or self.maintenance == "off":
            return None
        if self.maintenance == "auto":
            # the one place the engine reaches the features' edges (Alertmanager, PagerDuty), lazily
            from iotex_ops.schedule.maintenance import from_network

            window: Window | None = from_network(net, self.store)
        else:
            assert not isinstance(self.maintenance, str)
            window = self.maintenance
        if window is not None:
            try:
                window.check()
            except BaseException:
                self._release(window)
                raise
        return window

    def _release(self, window: Window | None) -> None:
        """Close a window this engine built ("auto"); one it was given stays its owner's, for its next runs."""
        if window is not None and self.maintenance == "auto":
            window.close()

    @contextlib.contextmanager
    def _session(
        self, net: Network, run_id: str, runbook: Runbook, params: Mapping[str, Any], open_journal: Callable[[], RunJournal]
    ) -> Iterator[tuple[RunJournal, dict[str, Any] | None]]:
        """The run's lock and journal, for one run or resume.

        Locks live where the inventory says (`iotex_ops_lock_dir`), so that every process running against
        one network (an operator's drill, the remediation service) shares them whatever its state dir."""
        locks = Path(str(net.var("iotex_ops_lock_dir") or self.store.locks_dir)).expanduser()
        host = str(params[runbook.lock_host_param]) if runbook.lock_host_param else runbook.lock_scope
        lock = NetworkLock(locks, net.id, host)
        lock.acquire(run_id, runbook.name, wait_s=self.lock_wait_s)
        try:
            journal = open_journal()
        except BaseException:  # e.g. a full disk: the lock must not outlive the run that never began
            lock.release()
            raise
        try:
            yield journal, lock.previous
        finally:
            journal.close()
            lock.release()

    def resume(self, run_id: str, find_runbook: Callable[[str], Runbook], network: Network | None = None) -> RunResult:
        """Continue a run that has no end. `network`: the run's own (checked), else the engine opens the
        inventory the run was started with, and closes it after."""
        before = self.store.state(run_id)
        start = before.start
        assert start is not None  # the store refuses a journal without run_start
        if before.end is not None:
            raise RunbookError(f"run {run_id} already ended: {before.result} ({before.error or 'no error'})")
        runbook = find_runbook(start.runbook)
        if any(p.secret for p in runbook.params):
            raise RunbookError(f"{runbook.name} takes secret parameters, which the journal does not keep: run it again")
        typed = params_mod.validate(runbook, start.params)
        if network is not None and network.id != start.network:
            raise RunbookError(f"run {run_id} ran on network {start.network}, not on {network.id}")
        net = network if network is not None else network_mod.load(start.inventory, self.known_hosts)
        window: Window | None = None
        try:
            window = self._window(runbook, net)
            if window is None and before.open_silences and self.maintenance not in (None, "off"):
                raise MaintenanceError(
                    f"run {run_id} left silences {', '.join(before.open_silences)} and the inventory names no Alertmanager "
                    "to expire them: set iotex_alertmanager_url, or resume with --no-maintenance"
                )
            with self._session(net, run_id, runbook, typed, lambda: self.store.open(run_id)) as (journal, previous):
                self._write(
                    journal,
                    Resumed(
                        user=getpass.getuser(),
                        pid=os.getpid(),
                        done_steps=tuple(sorted(before.done_steps)),
                        done_hosts={s: tuple(h) for s, h in before.done_hosts.items()},
                        rollback_phase=before.rollback_phase,
                    ),
                )
                if previous:
                    self._write(journal, StaleLock(previous=previous))
                ctx = self._context(runbook, run_id, typed, net, journal, journal.run.path, memory=dict(before.memory))
                return self._drive(runbook, ctx, journal, before, resumed=True, window=window)
        finally:
            self._release(window)
            if network is None:
                net.close()

    # -- the run --

    def _context(
        self,
        runbook: Runbook,
        run_id: str,
        params: Mapping[str, Any],
        net: Network,
        journal: RunJournal | None,
        run_dir: Path,
        memory: dict[str, Any] | None = None,
    ) -> RunContext:
        shared = _Shared(memory or {}, cancel=self._abort)
        return RunContext(run_id, runbook.name, dict(params), net, journal, run_dir, shared)

    def _write(self, journal: RunJournal, ev: Event) -> Event:
        stamped = journal.append(ev)
        if self.on_event is not None:
            self.on_event(stamped)
        return stamped

    def _drive(
        self,
        rb: Runbook,
        ctx: RunContext,
        journal: RunJournal,
        prog: RunState,
        resumed: bool,
        window: Window | None = None,
        checked: SteadyState | None = None,
    ) -> RunResult:
        """`prog`: what the run had done before (a resume), empty for a new run. The maintenance window (if
        any) is opened before the first step and closed at the end, whatever happens in between. `checked`: a
        steady state the caller checked just before (a scheduled run's gate), journaled instead of checked again."""
        t0 = time.monotonic()
        # the context's journal writes go through the engine too, so that the live view sees memos and marks
        ctx.journal = _Tee(journal, self)
        m = _Maintenance(self, rb, ctx, journal, window, prog)
        try:
            failed = m.open(resumed)
            if failed is not None:
                return failed
            res = self._body(rb, ctx, journal, prog, resumed, t0, m, checked)
        except BaseException as exc:  # interrupted, or the engine itself failed: nothing stays silenced
            m.close(f"aborted: {_short(exc)}")
            raise
        m.announce_end(res)
        return res

    def _body(
        self,
        rb: Runbook,
        ctx: RunContext,
        journal: RunJournal,
        prog: RunState,
        resumed: bool,
        t0: float,
        m: _Maintenance,
        checked: SteadyState | None = None,
    ) -> RunResult:
        error: str | None = None
        failing = prog.failing
        started_steps: list[str] = []
        if failing is None:
            try:
                if not resumed:
                    self._steady_state(rb, ctx, journal, "before", strict=True, checked=checked)
                with self._continuous(rb, ctx, journal):
                    self._steps(rb, ctx, journal, prog, started_steps)
                self._steady_state(rb, ctx, journal, "after", strict=True)
            except Exception as exc:  # also a `when` or an approver that raises: roll back
                error = _short(exc)
                failing = RunFailing(
                    step=getattr(exc, "step", None),
                    host=getattr(exc, "host", None),
                    error=error,
                    started_steps=tuple(started_steps),
                )
                self._write(journal, failing)
        else:
            error = failing.error
            started_steps = list(failing.started_steps)
        rollback_errors: list[str] = []
        if failing is not None:
            rollback_errors = self._rollback(rb, ctx, journal, started_steps)
            # a record of how the rollback left the network, within one short budget: the run still holds the
            # network's lock, so alertd's remediation of whatever is down waits for the run's end
            self._steady_state(rb, ctx, journal, "after_rollback", strict=False, budget_s=AFTER_ROLLBACK_BUDGET_S)
        measures: dict[str, Any] = {}
        if rb.measure is not None:
            try:
                measures = dict(rb.measure(ctx))
            except Exception as exc:  # a measure that cannot be taken is reported, not fatal
                measures = {"error": _short(exc)}
        detected = m.detect()
        if detected is not None:
            measures["time_to_detect_s"] = detected
        if rb.measure is not None or detected is not None:
            self._write(journal, Measures(values=measures))
        m.settle()
        m.close("end")
        result = Result.PASSED if failing is None else (Result.ROLLBACK_FAILED if rollback_errors else Result.FAILED)
        if rollback_errors:
            error = f"{error}; ROLLBACK FAILED: " + "; ".join(rollback_errors)
        duration = time.monotonic() - t0
        self._write(journal, RunEnd(result=result, error=error, duration_s=round(duration, 3), measures=measures))
        res = RunResult(ctx.run_id, rb.name, result, error, duration, journal.run.path, measures, rollback_errors)
        if self.report:
            from iotex_ops.runbook import report

            try:
                res.report_html, res.report_json = report.write(journal.run, ctx.network.prometheus_url)
            except OpsError as exc:
                res.error = (res.error + "; " if res.error else "") + f"report not written: {exc}"
        return res

    def _steady_state(
        self,
        rb: Runbook,
        ctx: RunContext,
        journal: RunJournal,
        phase: str,
        strict: bool,
        checked: SteadyState | None = None,
        budget_s: float | None = None,
    ) -> None:
        if not rb.steady_state:
            return
        if checked is not None:
            rows = checked.checks
        else:
            end = None if budget_s is None else time.monotonic() + budget_s
            results = [(c, self._verify(c, ctx, end)) for c in rb.steady_state]
            rows = tuple(CheckRow(c.description, r.ok, r.value, r.detail) for c, r in results)
        ok = all(r.ok for r in rows)
        self._write(journal, SteadyState(phase=phase, ok=ok, checks=rows))
        if strict and not ok:
            bad = "; ".join(f"{r.check}: {r.detail or r.value}" for r in rows if not r.ok)
            raise StepFailed(f"steady state {phase}", None, bad)

    def _verify(self, check: Check, ctx: RunContext, end: float | None = None) -> CheckResult:
        """Probe until the check passes or its timeout (or `end`, a monotonic deadline, if sooner) passes."""
        deadline = time.monotonic() + check.timeout
        if end is not None:
            deadline = min(deadline, end)
        t0 = time.monotonic()
        while True:
            try:
                res = check.probe(ctx)
            except Exception as exc:  # a probe that raises is a failing probe, with the reason kept
                res = CheckResult(False, None, _short(exc))
            if res.ok or time.monotonic() >= deadline or self._abort.is_set():
                return CheckResult(res.ok, res.value, res.detail + ("" if res.ok else f" (after {time.monotonic() - t0:.1f}s)"))
            time.sleep(check.interval)

    class _Continuous:
        def __init__(self, engine: Engine, rb: Runbook, ctx: RunContext, journal: RunJournal) -> None:
            self.engine, self.rb, self.ctx, self.journal = engine, rb, ctx, journal
            self.stop = threading.Event()
            self.thread = threading.Thread(target=self.loop, name="continuous-checks", daemon=True)

        def loop(self) -> None:
            while not self.stop.wait(self.rb.continuous_interval):
                for c in self.rb.continuous:
                    try:
                        r = c.probe(self.ctx)
                    except Exception as exc:
                        r = CheckResult(False, None, _short(exc))
                    if not r.ok:
                        self.engine._abort_reason = f"{c.description}: {r.detail or r.value}"
                        self.engine._write(self.journal, ContinuousFailed(check=c.description, value=r.value, detail=r.detail))
                        self.engine._abort.set()
                        return

        def __enter__(self) -> None:
            if self.rb.continuous:
                self.thread.start()

        def __exit__(self, *exc: object) -> None:
            self.stop.set()
            if self.thread.is_alive():
                self.thread.join(timeout=30)

    def _continuous(self, rb: Runbook, ctx: RunContext, journal: RunJournal) -> Engine._Continuous:
        self._abort.clear()
        return Engine._Continuous(self, rb, ctx, journal)

    def _hosts(self, step: Step, ctx: RunContext) -> list[Delegate] | None:
        pattern = ctx.params.get(step.param_hosts) if step.param_hosts else step.hosts
        if not (step.hosts or step.param_hosts):
            return None
        return ctx.network.select(str(pattern)) if pattern else []

    def _steps(self, rb: Runbook, ctx: RunContext, journal: RunJournal, prog: RunState, started: list[str]) -> None:
        for step in rb.steps:
            if step.name in prog.done_steps:
                self._write(journal, StepSkip(step=step.name, reason="completed before the resume"))
                started.append(step.name)
                continue
            sctx = ctx.on(None, step.name)
            if step.when is not None and not step.when(sctx):
                self._write(journal, StepSkip(step=step.name, reason="its condition is false"))
                continue
            if step.destructive and step.name not in prog.approved:
                self._approval(step, ctx, journal)
            started.append(step.name)
            hosts = self._hosts(step, ctx)
            self._write(journal, Phase(step=step.name, label=step.phase or step.name, hosts=tuple(d.name for d in hosts or [])))
            t0 = time.monotonic()
            if hosts is None:
                self._attempts(step, sctx, journal)
            else:
                done = set(prog.done_hosts.get(step.name, []))
                todo = [d for d in hosts if d.name not in done]
                for d in hosts:
                    if d.name in done:
                        self._write(journal, StepSkip(step=step.name, host=d.name, reason="completed before the resume"))
                if step.serial:
                    for d in todo:
                        self._attempts(step, ctx.on(d, step.name), journal)
                else:
                    self._parallel(step, ctx, journal, todo)
                self._write(journal, StepDone(step=step.name, ok=True, duration_s=round(time.monotonic() - t0, 3)))

    def _parallel(self, step: Step, ctx: RunContext, journal: RunJournal, hosts: list[Delegate]) -> None:
        if not hosts:
            return
        failures: list[StepFailed] = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(32, len(hosts)), thread_name_prefix=step.name) as pool:
            futs = [pool.submit(self._attempts, step, ctx.on(d, step.name), journal) for d in hosts]
            for f in futs:
                exc = f.exception()
                if isinstance(exc, StepFailed):
                    failures.append(exc)
                elif exc is not None:
                    failures.append(StepFailed(step.name, None, _short(exc)))
        if failures:
            if len(failures) == 1:
                raise failures[0]
            raise StepFailed(
                step.name, ",".join(f.host or "?" for f in failures), "; ".join(f"{f.host}: {f.reason}" for f in failures)
            )

    def _approval(self, step: Step, ctx: RunContext, journal: RunJournal) -> None:
        hosts = [d.name for d in self._hosts(step, ctx) or []]
        if self.yes:
            self._write(journal, Approval(step=step.name, approved=True, by=getpass.getuser(), how="--yes"))
            return
        assert self.approve is not None  # run() refuses destructive runbooks without --yes or an approver
        ok = self.approve(step, hosts)
        self._write(journal, Approval(step=step.name, approved=ok, by=getpass.getuser(), how="interactive"))
        if not ok:
            raise StepFailed(step.name, None, "not approved by the operator")

    def _call(self, fn: Callable[[RunContext], Any], c: RunContext, timeout: float, what: str) -> Any:
        """Run an action in a worker thread: bounded by `timeout`, and stopped early if the steady state is lost."""
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = fn(c)
            except BaseException as exc:  # carried to the engine's thread
                box["error"] = exc

        t = threading.Thread(target=target, name=what, daemon=True)
        t.start()
        deadline = time.monotonic() + timeout
        while t.is_alive():
            t.join(0.1)
            if self._abort.is_set():
                self._settle(t, what)
                raise _Aborted(f"steady state lost during {what}: {self._abort_reason}")
            if time.monotonic() > deadline:
                left = self._settle(t, what)
                raise TimeoutError(f"{what} did not finish within {timeout:g}s" + (" (and is still running)" if left else ""))
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def _settle(self, t: threading.Thread, what: str) -> bool:
        """Give an action that is being abandoned a moment to end (its host commands have their own
        timeouts), so that a retry or a rollback rarely runs beside it; True if it is still running."""
        t.join(self.action_grace_s)
        return t.is_alive()

    def _attempts(self, step: Step, c: RunContext, journal: RunJournal) -> None:
        host = c.delegate_.name if c.delegate_ else None
        last = ""
        for attempt in range(1, step.retries + 2):
            c.lines = []
            self._write(journal, StepStart(step=step.name, host=host, attempt=attempt))
            t0 = time.monotonic()
            checks: list[CheckRow] = []
            try:
                value = self._call(step.action, c, step.timeout, f"{step.name}" + (f"@{host}" if host else ""))
                if value is not None:
                    c.log(f"-> {value}")
                for check in step.verify:
                    r = self._verify(check, c)
                    row = CheckRow(check.description, r.ok, r.value, r.detail)
                    checks.append(row)
                    self._write(
                        journal, Verify(step=step.name, host=host, check=row.check, ok=row.ok, value=row.value, detail=row.detail)
                    )
                    if not r.ok:
                        raise StepFailed(step.name, host, f"check failed: {check.description}: {r.detail or r.value}")
            except _Aborted as exc:
                self._end(journal, step, host, False, t0, c, checks, str(exc), attempt)
                raise
            except Exception as exc:
                last = exc.reason if isinstance(exc, StepFailed) else _short(exc)
                self._end(journal, step, host, False, t0, c, checks, last, attempt)
                if self._abort.is_set():
                    raise _Aborted(f"steady state lost during {step.name}: {self._abort_reason}") from None
                if attempt <= step.retries:
                    time.sleep(step.retry_delay)
                    continue
                raise StepFailed(step.name, host, last) from None
            self._end(journal, step, host, True, t0, c, checks, None, attempt)
            return
        raise StepFailed(step.name, host, last)  # pragma: no cover - the loop returns or raises

    def _end(
        self,
        journal: RunJournal,
        step: Step,
        host: str | None,
        ok: bool,
        t0: float,
        c: RunContext,
        checks: list[CheckRow],
        error: str | None,
        attempt: int,
    ) -> None:
        self._write(
            journal,
            StepEnd(
                step=step.name,
                host=host,
                ok=ok,
                attempt=attempt,
                duration_s=round(time.monotonic() - t0, 3),
                output_tail=tuple(journal_mod.tail(c.lines)),
                error=error,
            ),
        )

    def _rollback(self, rb: Runbook, ctx: RunContext, journal: RunJournal, started: list[str]) -> list[str]:
        """Undo the started steps, newest first, where the run's state says they touched (also before a
        resume), skipping rollbacks that already passed; the errors of those that failed."""
        errors: list[str] = []
        state = journal.snapshot()
        touched, finished, done = state.started_hosts, state.done_hosts, state.rolled_back
        for name in reversed(list(dict.fromkeys(started))):
            step = rb.step(name)
            if step.point_of_no_return:
                self._write(
                    journal,
                    RollbackStop(step=name, reason=f"{name} is the point of no return: nothing before it is undone; fix forward"),
                )
                errors.append(f"past the point of no return ({name}): the network needs a person")
                break
            if step.rollback is None:
                continue
            per_host = bool(step.hosts or step.param_hosts)
            hosts = touched.get(name, [])
            if step.rollback_hosts == "unfinished":
                hosts = [h for h in hosts if h not in finished.get(name, [])]
            targets: list[Delegate | None] = [ctx.network.delegate(h) for h in reversed(hosts)] if per_host else [None]
            for d in targets:
                key = name if d is None else f"{name}@{d.name}"
                if key in done:
                    continue
                c = ctx.on(d, name)
                self._write(journal, RollbackStart(step=name, host=d.name if d else None, what=step.rollback_description))
                t0 = time.monotonic()
                err = None
                for attempt in (1, 2):
                    try:
                        c.lines = []
                        self._abort.clear()
                        self._call(step.rollback, c, step.timeout, f"rollback {key}")
                        err = None
                        break
                    except Exception as exc:
                        err = _short(exc)
                        if attempt == 1:
                            time.sleep(step.retry_delay)
                self._write(
                    journal,
                    RollbackEnd(
                        step=name,
                        host=d.name if d else None,
                        ok=err is None,
                        duration_s=round(time.monotonic() - t0, 3),
                        output_tail=tuple(journal_mod.tail(c.lines)),
                        error=err,
                    ),
                )
                if err is not None:
                    errors.append(f"{key}: {err}")
        return errors


class _Tee:
    """The journal as a context sees it: what it appends also reaches the engine's live view."""

    def __init__(self, journal: RunJournal, engine: Engine) -> None:
        self._journal, self._engine = journal, engine
        self.path = journal.path

    def append(self, ev: Event) -> Event:
        return self._engine._write(self._journal, ev)


class _Maintenance:
    """One run's maintenance window as the engine drives it: opened after run_start (or, on a resume, after
    the interrupted run's silences are expired), its silence ids journaled, expired at the end or on an abort."""

    def __init__(
        self, engine: Engine, rb: Runbook, ctx: RunContext, journal: RunJournal, window: Window | None, prog: RunState
    ) -> None:
        self.engine, self.rb, self.ctx, self.journal, self.window = engine, rb, ctx, journal, window
        self.left = list(prog.open_silences)  # silences an interrupted run left (a resume)
        self.ids: list[str] = []
        self.all_ids: list[str] = []
        self.closed = True
        self.info: RunInfo | None = None

    def _info(self) -> RunInfo:
        net = self.ctx.network
        scope = maintenance_mod.scope(self.rb, [d.name for d in net.delegates], self.ctx.params)
        timeout = self.engine.maintenance_timeout_s
        if timeout is None:
            timeout = maintenance_mod.run_timeout_s(self.rb, len(scope.hosts))
        state = self.journal.snapshot()
        return RunInfo(run_id=self.ctx.run_id, drill=self.rb.name, network=net.id, scope=scope, timeout_s=timeout,
                       run_dir=self.journal.run.path, started_at=state.started_at or time.time())  # fmt: skip

    def open(self, resumed: bool) -> RunResult | None:
        """Open the window; a failed run (journaled, nothing touched) if it cannot be opened. On a resume the
        new silences are made before the interrupted run's are expired: no moment without them, when a flush
        of Alertmanager's would page (or start a remediation) for an alert the drill causes on purpose."""
        try:
            error = self._open()
        finally:
            self._expire_left()
        if error is None:
            return None
        self.engine._write(self.journal, RunEnd(result=Result.FAILED, error=error, duration_s=0.0))
        return RunResult(self.ctx.run_id, self.rb.name, Result.FAILED, error, 0.0, self.journal.run.path)

    def _expire_left(self) -> None:
        if not self.left:
            return
        w, left, self.left = self.window, self.left, []
        if w is None:
            self.engine._write(self.journal, MaintenanceClose(silences=(), reason="resume",
                               error=f"not expired (no maintenance window): {', '.join(left)}"))  # fmt: skip
        else:
            done, err = w.expire(left)
            self.engine._write(self.journal, MaintenanceClose(silences=tuple(done), reason="resume", error=err))

    def _open(self) -> str | None:
        """Open the silences; why they could not be, or None."""
        w = self.window
        if not self.rb.expected_alerts:
            return None
        if w is None:
            if self.engine.maintenance == "off":
                self.engine._write(self.journal, MaintenanceOpen(
                    alerts=tuple(sorted(self.rb.expected_alerts)),
                    note="--no-maintenance: the drill's expected alerts are not silenced and will page"))  # fmt: skip
            return None
        self.info = self._info()
        try:
            opened = w.open(self.info)
        except MaintenanceError as exc:
            return str(exc)
        self.engine._write(self.journal, opened)
        self.ids = list(opened.silences)
        self.all_ids += self.ids
        self.closed = False
        return None

    def detect(self) -> dict[str, float] | None:
        """Time to detect each expected alert that fired (from the first step's start); None: not measured."""
        if self.window is None or self.info is None:
            return None
        state = self.journal.snapshot()
        starts = [r.started for r in state.steps.values() if r.started is not None]
        fault = min(starts) if starts else None
        info = self.info = dataclasses.replace(self.info, fault_at=fault)
        try:
            return self.window.detect(info, time.time())
        except Exception:  # a measure that cannot be taken is not a failure of the drill
            return {}

    def settle(self) -> None:
        if self.window is not None and self.info is not None and not self.closed:
            with contextlib.suppress(Exception):
                self.window.settle(self.info, self.engine.settle_s)

    def close(self, reason: str) -> None:
        if self.closed or self.window is None:
            return
        self.closed = True
        try:
            done, err = self.window.expire(self.ids)
        except Exception as exc:  # never let expiring hide the run's own outcome
            done, err = [], _short(exc)
        with contextlib.suppress(Exception):
            self.engine._write(self.journal, MaintenanceClose(silences=tuple(done), reason=reason, error=err))

    def announce_end(self, res: RunResult) -> None:
        if self.window is None or self.info is None:
            return
        report = res.report_html.resolve().as_uri() if res.report_html else None
        with contextlib.suppress(Exception):
            self.window.announce_end(self.info, result=str(res.result), silences=self.all_ids, report=report)
