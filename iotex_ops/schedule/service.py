"""The scheduler service: runs due drills by themselves, safely (docs/schedules.md, "The scheduler service").

Each tick (`Scheduler.tick`, every ~0.2 s) it

1. reads the drills file (again when it changed) and the suspensions;
2. for each schedule, asks `timing.decide` about the occurrences since the newest one it handled: what did
   not run is recorded (missed, skipped: never silently), and the one to run is CLAIMED in the service's
   state (`records.SchedulerDB`) under its run id (`timing.run_id`) in the same transaction that moves the
   cursor, before anything acts;
3. advances the claimed runs: the safety gates in a fixed order, failing closed, then the engine.

The gates (`GATES`): schedule enabled and not suspended; approved where required (else the run waits, to its
start deadline: then "missed: not approved"); no open incident at alertd; no firing alert (the drill has not
started, so it caused none); the network's steady state (the runbook's own checks, evaluated up to `lead_s`
before the scheduled time so that the run starts on time); the network's lock free (overlap: forbid records
"skipped: overlap", queue waits to the deadline). A gate that cannot be evaluated fails, saying why. Every
verdict is journaled in the run (`Gate` events after run_start); a run that does not start gets a record
with the verdicts instead.

During a run, the stop conditions are polled every `poll_s` (1 s): an alert firing or an incident open that
the drill does not expect (another alert name, or a host it does not touch) aborts the drill through the
engine's rollbacks (see `StopConditions`); the alert pages as usual.

Restart safety: a claimed run is found again at start (`recover`): ended in the run store -> noted; begun but
not ended -> resumed through the engine's resume (not started twice); never begun -> gated again (it still
has its start deadline). The two sides the service talks to are protocols, so that every decision is tested
with `iotex_ops.testing.FakeClock` and fakes: `Driver` (the engine, the lock, the runbooks) and `Signals`
(alerts and incidents). The real ones are in `iotex_ops/schedule/driver.py`.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from iotex_ops.durations import fmt_duration
from iotex_ops.errors import OpsError
from iotex_ops.runbook.events import Gate, Result, SteadyState
from iotex_ops.runbook.model import Runbook
from iotex_ops.schedule.model import Drills, Schedule, ScheduleError
from iotex_ops.schedule.records import ApprovalRow, SchedulerDB
from iotex_ops.schedule.timing import ChainTime, decide, next_run, occurrences, run_id

GATES = ("schedule", "approval", "incidents", "alerts", "steady_state", "lock")
LEAD_S = 10.0  # the steady state is checked up to this long before a run's time
POLL_S = 1.0  # stop conditions are polled this often during a run
STOP_FAILURES = 3  # stop conditions that cannot be read this many times in a row stop the run (fail closed)


@dataclass(frozen=True)
class Alert:
    """A firing alert (Prometheus' ALERTS) or an open incident (alertd's store)."""

    name: str
    host: str = ""  # "" for an alert about the whole network (ChainStalled)
    severity: str = ""
    source: str = "prometheus"  # prometheus | alertd

    def describe(self) -> str:
        where = f" on {self.host}" if self.host else ""
        return f"{self.name}{where}" + (f" ({self.source})" if self.source != "prometheus" else "")


def counts(a: Alert) -> bool:
    """Whether an alert can stop or hold a drill: everything but the info-level heartbeat (Watchdog)."""
    return a.severity != "info" and a.name != "Watchdog"


class Signals(Protocol):
    """What the gates and the stop conditions read: raise (anything) when it cannot be read."""

    def firing_alerts(self) -> list[Alert]: ...

    def open_incidents(self) -> list[Alert]: ...


@dataclass(frozen=True)
class Outcome:
    result: Result
    error: str | None = None


class Driver(Protocol):
    """What runs drills: the runbooks, the network's lock, the engine. `run`/`resume` block until the run ends;
    `stop` is polled by the run (every POLL_S) and returns why it must stop, or None."""

    def runbook(self, name: str) -> Runbook: ...

    def hosts(self, runbook: Runbook, params: Mapping[str, Any]) -> set[str]: ...

    def steady_state(self, runbook: Runbook, params: Mapping[str, Any]) -> SteadyState: ...

    def lock_holder(self) -> str | None: ...

    def journal(self, run_id: str) -> tuple[str, Result | None]: ...

    def expire_dead_windows(self) -> list[str]: ...

    def run(
        self,
        runbook: Runbook,
        params: Mapping[str, Any],
        run_id: str,
        preamble: tuple[Gate, ...],
        steady_state: SteadyState | None,
        stop: Callable[[], str | None],
    ) -> Outcome: ...

    def resume(self, run_id: str, stop: Callable[[], str | None]) -> Outcome: ...


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _iso(t: float) -> str:
    return _utc(t).strftime("%Y-%m-%d %H:%M:%S UTC")


class StopConditions:
    """Polled during a run: the first unexpected alert or incident is why it stops (None: carry on).

    Expected: an alert name of `Runbook.expected_alerts` on a host the drill touches (or about the whole
    network). Anything else that counts (not the info heartbeat) stops it. Signals that cannot be read
    STOP_FAILURES times in a row stop it too (fail closed)."""

    def __init__(self, signals: Signals, expected: set[str], hosts: set[str]) -> None:
        self.signals, self.expected, self.hosts = signals, expected, hosts
        self.failures = 0

    def unexpected(self, a: Alert) -> bool:
        if not counts(a):
            return False
        return a.name not in self.expected or bool(a.host and a.host not in self.hosts)

    def __call__(self) -> str | None:
        try:
            seen = [*self.signals.firing_alerts(), *self.signals.open_incidents()]
        except Exception as exc:
            self.failures += 1
            if self.failures >= STOP_FAILURES:
                return f"the stop conditions cannot be evaluated ({self.failures} times in a row): {exc}"
            return None
        self.failures = 0
        bad = [a for a in seen if self.unexpected(a)]
        if not bad:
            return None
        return "unexpected alert: " + ", ".join(sorted({a.describe() for a in bad}))


class Scheduler:
    """One network's scheduler. `tick()` does one round; `serve(stop)` ticks until `stop` is set.

    drills: the drills file now (re-read by the caller when it changed; raise ScheduleError when unreadable).
    suspended: the names of the suspended schedules now. clock: unix seconds (FakeClock in tests).
    background: run drills in a thread (the service); False runs them inside `tick` (tests)."""

    def __init__(
        self,
        *,
        drills: Callable[[], Drills],
        suspended: Callable[[], set[str]],
        driver: Driver,
        signals: Signals,
        db: SchedulerDB,
        clock: Callable[[], float] = time.time,
        lead_s: float = LEAD_S,
        background: bool = True,
        chain: Callable[[datetime], ChainTime | None] | None = None,
        say: Callable[[str], None] = lambda s: None,
    ) -> None:
        self.drills, self.suspended, self.driver, self.signals, self.db = drills, suspended, driver, signals, db
        self.clock, self.lead_s, self.background, self.say = clock, lead_s, background, say
        self.chain = chain
        self.active: str | None = None  # the run id this service is driving now
        self._thread: threading.Thread | None = None
        self._warm: dict[str, tuple[float, SteadyState | str]] = {}  # run id -> (when, steady state or why not)
        # the db's connection, between the tick and the run's thread (reentrant: a run inside `tick` in tests)
        self._lock = threading.RLock()

    # -- start --

    def start(self) -> None:
        """At service start: expire what dead runs left, then pick up the runs a previous service claimed."""
        self._expire_dead_windows()
        self.recover()

    def _expire_dead_windows(self) -> None:
        """Expire the maintenance windows (Alertmanager silences) that drill runs no process runs any more left
        behind (a service killed mid-drill, a crashed `runbook run`): a run resumed next opens its own again.
        An Alertmanager that does not answer is logged, not fatal: each run's own window fails closed."""
        try:
            expired = self.driver.expire_dead_windows()
        except Exception as exc:  # the service keeps its schedule; each drill's window checks Alertmanager itself
            self.say(f"could not expire the silences of dead drill runs: {exc}")
            return
        if expired:
            self.say(f"expired {len(expired)} silence(s) left by dead drill runs: {', '.join(expired)}")

    def recover(self) -> None:
        """The runs a previous service claimed and did not finish: ended -> noted; begun -> resumed (not
        started again); never begun -> due again (gated again, within their start deadline)."""
        now = self.clock()
        for r in self.db.runs(("due", "waiting", "running")):
            try:
                state, result = self.driver.journal(r.run_id)
            except Exception as exc:
                self.say(f"{r.run_id}: its journal cannot be read ({exc}); left as {r.status}")
                continue
            if state == "ended":
                self.db.set_run(r.run_id, now, status="ended", result=str(result))
                self.say(f"{r.run_id}: ended ({result}) before this service started")
            elif state == "unfinished":
                self.db.set_run(r.run_id, now, status="running", reason="interrupted: resumed after a restart of the scheduler")
                self.say(f"{r.run_id}: interrupted when the service stopped: it will be resumed")
            elif r.status == "running":
                # handed to the engine, but nothing journaled: nothing acted; gated again
                self.db.set_run(r.run_id, now, status="due", reason="the service stopped before the run began")

    def _resume_orphans(self) -> None:
        """Resume a run left `running` by a previous service (one at a time: they hold the network's lock)."""
        if self.active is not None:
            return
        for r in self.db.runs(("running",)):
            state, result = self.driver.journal(r.run_id)
            if state == "ended":
                with self._lock:
                    self.db.set_run(r.run_id, self.clock(), status="ended", result=str(result))
                continue
            if state != "unfinished":
                with self._lock:
                    self.db.set_run(r.run_id, self.clock(), status="due", reason="the service stopped before the run began")
                continue
            self.say(f"{r.run_id}: resuming it through the engine")
            self._launch(r.run_id, functools.partial(self._resume, r.run_id, r.drill))
            return

    # -- the loop --

    def serve(self, stop: threading.Event, tick_s: float = 0.2) -> None:
        self.start()
        while not stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # an unreadable drills file, a state dir gone: said (one line), tried again
                self.say(f"error: {exc}" if isinstance(exc, OpsError) else f"error: {type(exc).__name__}: {exc}")
                stop.wait(5.0)
            stop.wait(tick_s)
        if self._thread is not None:
            self.say(f"waiting for run {self.active} to end")
            self._thread.join()

    def tick(self) -> None:
        with self._lock:
            self._tick()

    def _tick(self) -> None:
        now = self.clock()
        self._reap()
        self._resume_orphans()
        drills = self.drills()
        suspended = self.suspended()
        with self._lock:
            for s in drills.schedules:
                self._decide(s, drills, now, s.name in suspended)
        for r in self.db.runs(("due", "waiting")):
            if self.active is not None and r.run_id == self.active:
                continue
            self._advance(r.run_id, drills, suspended)
        self._prewarm(drills, suspended)

    def _decide(self, s: Schedule, drills: Drills, now: float, suspended: bool) -> None:
        since = self.db.cursor(s.name)
        if since is None:  # first seen: from now on (what was before this service knew it is not its to miss)
            self.db.set_cursor(s.name, now)
            return
        if since >= now:
            return
        chain, chain_error = None, None
        if self.chain is not None and next(occurrences(s, _utc(since), _utc(now), limit=1), None) is not None:
            try:
                chain = self.chain(_utc(now))
            except Exception as exc:  # the chain-time blackout cannot be checked: the occurrence is skipped
                chain_error = str(exc) or type(exc).__name__
                self.say(f"{s.name}: the chain's calendar cannot be read: {chain_error}")
        d = decide(s, since=_utc(since), now=_utc(now), suspended=suspended, busy=False, shared_blackouts=drills.blackouts,
                   chain=chain, chain_error=chain_error)  # fmt: skip
        # busy is the gates' business (the lock gate, the overlap with this service's own run): the decision
        # only says which occurrence is due; claimed, it is recorded before anything else happens
        with self.db.transaction():
            for rec in d.records:
                self.db.record(s.name, s.drill, rec.kind, rec.reason, rec.first.timestamp(), rec.last.timestamp(), now,
                               count=rec.count)  # fmt: skip
            if d.run is not None:
                rid = run_id(s, d.run)
                if self.db.claim(rid, s.name, s.drill, d.run.timestamp(), now):
                    self.say(f"{rid}: due" + (f" (a catch-up, {fmt_duration(d.late_s)} late)" if d.catch_up else ""))
            self.db.set_cursor(s.name, d.handled_until.timestamp())

    # -- one claimed run --

    def _not_started(self, rid: str, s_name: str, drill: str, at: float, kind: str, reason: str, gates: list[Gate]) -> None:
        now = self.clock()
        with self._lock, self.db.transaction():
            self.db.set_run(rid, now, status="not_started", reason=f"{kind}: {reason}")
            self.db.record(s_name, drill, kind, reason, at, at, now, run_id=rid,
                           gates=[{"gate": g.gate, "ok": g.ok, "detail": g.detail} for g in gates])  # fmt: skip
        self.say(f"{rid}: {kind}: {reason}")

    def _wait(self, rid: str, reason: str) -> None:
        r = self.db.run(rid)
        if r is not None and (r.status != "waiting" or r.reason != reason):
            with self._lock:
                self.db.set_run(rid, self.clock(), status="waiting", reason=reason)
            self.say(f"{rid}: waiting: {reason}")

    def _advance(self, rid: str, drills: Drills, suspended: set[str]) -> None:
        r = self.db.run(rid)
        assert r is not None
        now = self.clock()
        try:
            s = drills.schedule(r.schedule)
        except OpsError:
            why = "the schedule is no longer in the drills file"
            self._not_started(rid, r.schedule, r.drill, r.scheduled_at, "skipped", why, [])
            return
        gates: list[Gate] = []
        late = now - r.scheduled_at
        if late > s.start_deadline_s:
            approved = self.db.approval(rid) is not None
            if s.approval and not approved:
                why = "not approved"
            else:
                why = f"not started within its start deadline ({fmt_duration(s.start_deadline_s)})"
                why += f": {r.reason}" if r.reason else ""
            self._not_started(rid, s.name, s.drill, r.scheduled_at, "missed", why, gates)
            return
        # 0. this service's own run holds the network: the overlap policy
        if self.active is not None:
            why = f"overlap: another drill ({self.active}) holds the network"
            if s.overlap == "forbid":
                self._not_started(rid, s.name, s.drill, r.scheduled_at, "skipped", why + " (overlap: forbid)", gates)
            else:
                self._wait(rid, why + " (overlap: queue)")
            return
        # 1. schedule enabled, not suspended
        if not s.enabled:
            gates.append(Gate(gate="schedule", ok=False, detail="disabled in the drills file"))
        elif s.name in suspended:
            gates.append(Gate(gate="schedule", ok=False, detail="suspended (`iotex-ops schedule resume` lifts it)"))
        else:
            gates.append(Gate(gate="schedule", ok=True, detail="enabled, not suspended"))
        if not gates[-1].ok:
            self._not_started(rid, s.name, s.drill, r.scheduled_at, "skipped", gates[-1].detail, gates)
            return
        # 2. approved where required: else it waits, to its deadline
        if s.approval:
            a = self.db.approval(rid)
            if a is None:
                self._wait(rid, f"waiting for approval (`iotex-ops schedule approve {rid}`)")
                return
            gates.append(Gate(gate="approval", ok=True, detail=f"approved by {a.by} at {_iso(a.at)}"))
        else:
            gates.append(Gate(gate="approval", ok=True, detail="not required"))
        # 3.-5. incidents, alerts, steady state: failing closed, final
        try:
            runbook = self.driver.runbook(s.drill)
        except Exception as exc:
            gates.append(Gate(gate="incidents", ok=False, detail=f"cannot be evaluated: the drill's runbook: {exc}"))
            self._not_started(rid, s.name, s.drill, r.scheduled_at, "skipped", f"gate incidents: {gates[-1].detail}", gates)
            return
        for gate in ("incidents", "alerts"):
            g = self._gate_signals(gate)
            gates.append(g)
            if not g.ok:
                self._not_started(rid, s.name, s.drill, r.scheduled_at, "skipped", f"gate {g.gate}: {g.detail}", gates)
                return
        g, steady = self._gate_steady_state(rid, runbook, s)
        gates.append(g)
        if not g.ok:
            self._not_started(rid, s.name, s.drill, r.scheduled_at, "skipped", f"gate steady_state: {g.detail}", gates)
            return
        # 6. the network's lock
        try:
            holder = self.driver.lock_holder()
        except Exception as exc:
            gates.append(Gate(gate="lock", ok=False, detail=f"cannot be evaluated: {exc}"))
            self._not_started(rid, s.name, s.drill, r.scheduled_at, "skipped", f"gate lock: {gates[-1].detail}", gates)
            return
        if holder is not None:
            why = f"overlap: the network is locked by {holder}"
            if s.overlap == "forbid":
                gates.append(Gate(gate="lock", ok=False, detail=why + " (overlap: forbid)"))
                self._not_started(rid, s.name, s.drill, r.scheduled_at, "skipped", why + " (overlap: forbid)", gates)
            else:
                self._wait(rid, why + " (overlap: queue: waits to its start deadline)")
            return
        gates.append(Gate(gate="lock", ok=True, detail="free"))
        self._start(rid, s, runbook, tuple(gates), steady)

    def _gate_signals(self, gate: str) -> Gate:
        """Gate `incidents` (alertd's open ones) or `alerts` (Prometheus's firing ones): passes when none that
        counts is open; fails closed when they cannot be read."""
        read, what, none = {
            "incidents": (self.signals.open_incidents, "open incident", "no open incident"),
            "alerts": (self.signals.firing_alerts, "firing", "none firing"),
        }[gate]
        try:
            found = [a for a in read() if counts(a)]
        except Exception as exc:
            return Gate(gate=gate, ok=False, detail=f"cannot be evaluated: {exc}")
        if found:
            return Gate(gate=gate, ok=False, detail=f"{what}: " + ", ".join(sorted({a.describe() for a in found})))
        return Gate(gate=gate, ok=True, detail=none)

    def _gate_steady_state(self, rid: str, runbook: Runbook, s: Schedule) -> tuple[Gate, SteadyState | None]:
        warm = self._warm.pop(rid, None)
        now = self.clock()
        if warm is not None and now - warm[0] <= self.lead_s + 5:
            got: SteadyState | str = warm[1]
            when = f"checked {max(0.0, now - warm[0]):.1f}s before the run"
        else:
            got = self._steady(runbook, s)
            when = "checked at the run's start"
        if isinstance(got, str):
            return Gate(gate="steady_state", ok=False, detail=f"cannot be evaluated: {got}"), None
        if not got.ok:
            bad = "; ".join(f"{c.check}: {c.detail or c.value}" for c in got.checks if not c.ok)
            return Gate(gate="steady_state", ok=False, detail=f"lost: {bad} ({when})"), None
        return Gate(gate="steady_state", ok=True, detail=f"{len(got.checks)} check(s) passed ({when})"), got

    def _steady(self, runbook: Runbook, s: Schedule) -> SteadyState | str:
        try:
            return self.driver.steady_state(runbook, s.params)
        except Exception as exc:
            return str(exc) or type(exc).__name__

    def _prewarm(self, drills: Drills, suspended: set[str]) -> None:
        """Check the steady state of a run due within `lead_s`, so that the run starts on time (first-aid's
        checks watch two blocks finalize: seconds)."""
        if self.active is not None or self.lead_s <= 0:
            return
        now = self.clock()
        for s in drills.schedules:
            if not s.enabled or s.name in suspended:
                continue
            at = next_run(s, _utc(now))
            if at is None or at.timestamp() - now > self.lead_s:
                continue
            rid = run_id(s, at)
            if rid in self._warm or self.db.run(rid) is not None:
                continue
            try:
                runbook = self.driver.runbook(s.drill)
            except Exception as exc:
                self._warm[rid] = (self.clock(), str(exc))
                continue
            self._warm[rid] = (self.clock(), self._steady(runbook, s))
        for rid in [k for k, (t, _) in self._warm.items() if self.clock() - t > 3 * self.lead_s + 60]:
            del self._warm[rid]

    # -- running --

    def _start(self, rid: str, s: Schedule, runbook: Runbook, gates: tuple[Gate, ...], steady: SteadyState | None) -> None:
        with self._lock:
            self.db.set_run(rid, self.clock(), status="running", reason="")
        self.say(f"{rid}: gates passed: starting {s.drill}")

        def go() -> Outcome:
            expected = {*runbook.expected_alerts, *runbook.fault_alerts}  # a fault drill's alerts on its victim
            stop = StopConditions(self.signals, expected, self.driver.hosts(runbook, s.params))
            return self.driver.run(runbook, s.params, rid, gates, steady, stop)

        self._launch(rid, go)

    def _resume(self, rid: str, drill: str) -> Outcome:
        runbook = self.driver.runbook(drill)
        with self._lock:
            r = self.db.run(rid)
        params: Mapping[str, Any] = {}
        with contextlib.suppress(OpsError):
            params = self.drills().schedule(r.schedule).params if r else {}
        stop = StopConditions(self.signals, {*runbook.expected_alerts, *runbook.fault_alerts}, self.driver.hosts(runbook, params))
        return self.driver.resume(rid, stop)

    def _launch(self, rid: str, fn: Callable[[], Outcome]) -> None:
        self.active = rid

        def body() -> None:
            try:
                out = fn()
            except Exception as exc:
                out = Outcome(Result.REFUSED, str(exc) or type(exc).__name__)
            self._finish(rid, out)

        if self.background:
            self._thread = threading.Thread(target=body, name=f"run-{rid}", daemon=False)
            self._thread.start()
        else:
            body()
            self.active = None

    def _finish(self, rid: str, out: Outcome) -> None:
        now = self.clock()
        with self._lock:
            if out.result in (Result.REFUSED, Result.DEFERRED):
                r = self.db.run(rid)
                with self.db.transaction():
                    self.db.set_run(rid, now, status="not_started", result=str(out.result), reason=out.error or "")
                    if r is not None:
                        self.db.record(r.schedule, r.drill, "skipped", f"{out.result}: {out.error}", r.scheduled_at,
                                       r.scheduled_at, now, run_id=rid)  # fmt: skip
            else:
                self.db.set_run(rid, now, status="ended", result=str(out.result), reason=out.error or "")
        self.say(f"{rid}: {out.result}" + (f": {out.error}" if out.error else ""))

    def _reap(self) -> None:
        if self._thread is not None and not self._thread.is_alive():
            self._thread.join()
            self._thread = None
            self.active = None

    def wait(self, timeout: float | None = None) -> None:
        """Until the run this service drives has ended (tests, shutdown)."""
        if self._thread is not None:
            self._thread.join(timeout)
        self._reap()


# -- approvals ------------------------------------------------------------------------------------------------


def parse_run_id(rid: str) -> tuple[datetime, str]:
    """A scheduled run's id (`timing.run_id`: `20261208T030000Z-first-aid-weekly`) as (UTC time, schedule)."""
    stamp, sep, name = rid.partition("-")
    try:
        at = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        at = None
    if at is None or not sep or not name:
        raise ScheduleError(f"{rid!r} is not a scheduled run's id (TIME-SCHEDULE, e.g. 20261208T030000Z-first-aid-weekly: "
                            "`iotex-ops schedule next` and `scheduler status` show them)")  # fmt: skip
    return at, name


def approve(drills: Drills, db: SchedulerDB, rid: str, *, by: str, now: float, note: str = "") -> ApprovalRow:
    """Approve one scheduled run (before its time, or while it waits, within its start deadline): the run id
    must be an occurrence of a schedule of the file that requires approval and has not been decided yet."""
    at, name = parse_run_id(rid)
    s = drills.schedule(name)
    if not s.approval:
        raise ScheduleError(f"{drills.source}: {s.where}.approval: {name} does not require approval; nothing to approve")
    if next(occurrences(s, at - timedelta(seconds=1), at, limit=1), None) is None:
        nxt = next_run(s, _utc(now))
        raise ScheduleError(f"{rid}: {name} has no run at {at:%Y-%m-%d %H:%M:%S} UTC"
                            + (f"; its next is {run_id(s, nxt)}" if nxt else ""))  # fmt: skip
    r = db.run(rid)
    if r is not None and r.status not in ("due", "waiting"):
        raise ScheduleError(f"{rid}: already {r.status}" + (f" ({r.reason})" if r.reason else "") + ": too late to approve")
    if now - at.timestamp() > s.start_deadline_s:
        raise ScheduleError(f"{rid}: its start deadline ({fmt_duration(s.start_deadline_s)}) has passed: too late to approve")
    return db.approve(rid, by, now, note)
