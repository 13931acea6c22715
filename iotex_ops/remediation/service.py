"""The remediation service's core: alerts in, pages and remediation runs out.

Each alert (by Alertmanager fingerprint) is an incident with one page (a PagerDuty dedup key). Firing opens
the page; a remediation runbook picked by the policy starts under its limits and, once its first step really
runs (not when it is deferred because a drill holds the lock), acknowledges the page; the
page is resolved once the alert has stayed resolved for `resolve_after` (a flapping alert keeps one page);
when automation is done without a fix (attempts used up, circuit breaker open, parameters refused) the page
escalates: a second, critical page (an acknowledged PagerDuty incident cannot be re-triggered) that carries
what was tried and why it failed, resolved with the first.

Every decision is committed to the store before it acts (a run id is recorded before its run starts), so a
restarted service resumes an interrupted run instead of starting another, and its durable page queue
still delivers what it had accepted. Alertmanager is asked for the active alerts at start and every
`reconcile_s`, so an alert whose "resolved" notification was lost while the service was down does not keep
its page open forever.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from iotex_ops.remediation import policy as policy_mod
from iotex_ops.remediation.policy import Policy
from iotex_ops.remediation.store import AlertRow, RemediationRow, Store
from iotex_ops.remediation.webhook import Alert
from iotex_ops.runbook.events import Result
from iotex_ops.runbook.journal import Journal

SEVERITIES = {"critical": "critical", "page": "critical", "error": "error", "warning": "warning", "info": "info"}


class Pages(Protocol):
    """Where pages go (PagerDuty Events API v2 through a durable queue); each call returns at once."""

    def trigger(
        self, dedup_key: str, summary: str, source: str, severity: str, details: dict[str, Any], links: list[dict[str, str]]
    ) -> None: ...

    def acknowledge(self, dedup_key: str) -> None: ...

    def resolve(self, dedup_key: str) -> None: ...


@dataclass(frozen=True)
class Outcome:
    """How a remediation run ended: passed, failed, rollback_failed, deferred (could not take the lock) or
    refused (bad parameters). A plain string is taken as the Result it names."""

    result: Result
    error: str = ""
    journal: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "result", Result(self.result))


class Runner(Protocol):
    """Runs remediation runbooks (the runbook engine, or a fake in tests). Called from worker threads."""

    def known(self, runbook: str) -> bool: ...

    def check(self, runbook: str, params: dict[str, Any]) -> str | None:
        """Why a run of `runbook` with `params` would be refused before it starts (the runbook is not installed,
        a parameter is refused, the host is not in the inventory), None if it may start. Cheap: no host is
        touched."""
        ...

    def network_free(self) -> bool:
        """Whether no drill holds the network's lock now (a probe: takes nothing)."""
        ...

    def run(self, run_id: str, runbook: str, params: dict[str, Any], on_step: Callable[[str], None]) -> Outcome: ...

    def resume(self, run_id: str, on_step: Callable[[str], None]) -> Outcome: ...

    def ended(self, run_id: str) -> Outcome | None:
        """The outcome of a run that ended, None if it did not (or never started)."""
        ...

    def started(self, run_id: str) -> bool: ...


@dataclass
class Service:
    store: Store
    policy: Policy
    pages: Pages
    runner: Runner
    journal_path: Path
    network: str = "iotex"
    prometheus_url: str = ""
    clock: Callable[[], float] = time.time
    active_alerts: Callable[[], list[Alert]] | None = None  # Alertmanager's active alerts, for reconciliation
    reconcile_s: float = 30.0
    tick_s: float = 0.25
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _wake: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _workers: dict[int, threading.Thread] = field(default_factory=dict)
    _journal: Journal | None = None
    counters: dict[str, int] = field(default_factory=dict)
    # page events decided in the current transaction; sent when their alert's changes are kept (a change
    # rolled back sends nothing); a crash between sending and committing repeats an event, which dedups
    _outbox: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    # journal lines of the current transaction, written once it commits (see `_transaction`)
    _lines: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _lines_thread: int | None = None
    _missing: dict[str, int] = field(default_factory=dict)  # fingerprint -> reconciles it was missing from
    _pruned_at: float = 0.0

    def __post_init__(self) -> None:
        self._journal = Journal(self.journal_path)

    # -- the outside world's entry points --

    def observe(self, alerts: list[Alert]) -> None:
        """One Alertmanager notification (already validated whole)."""
        with self._lock, self._transaction():
            for a in alerts:
                with self._isolated("observe", a.fingerprint):
                    self._observe(a)
            self._send_pages()
        self._wake.set()

    def tick(self) -> None:
        """Time-driven decisions: due page resolutions, the watchdog, remediation starts and escalations.
        Each alert is decided on its own: one that cannot be handled is journaled and escalated, the others
        go on."""
        starts: list[tuple[int, bool]] = []
        with self._lock:
            with self._transaction():
                now = self.clock()
                with self._isolated("watchdog", None):
                    self._watchdog(now)
                self._orphans(now)
                if now - self._pruned_at > 3600:
                    self._pruned_at = now
                    if n := self.store.prune(now - self.policy.retention_s):
                        self._write("pruned", incidents=n)
                for a in self.store.alerts("status='resolved' AND page IN ('triggered','acknowledged')"):
                    with self._isolated("resolve", a.fingerprint):
                        self._maybe_resolve(a, now)
                for a in self.store.alerts("status='firing' AND page IN ('triggered','acknowledged')"):
                    with self._isolated("remediate", a.fingerprint):
                        rid = self._maybe_remediate(a, now)
                        if rid is not None:
                            starts.append((rid, False))
                self._send_pages()
            for rid, resume in starts:
                self._spawn(rid, resume)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One store transaction whose journal lines are written once it commits. A crash (kill -9) before
        the commit leaves neither the change nor its line, so the restarted service decides again and journals
        it once: the journal never says a remediation started that the store does not hold. On a rollback
        only the errors are written (what was undone did not happen)."""
        self._lines_thread = threading.get_ident()
        ok = False
        try:
            with self.store.transaction():
                yield
            ok = True
        finally:
            lines, self._lines, self._lines_thread = self._lines, [], None
            for event, fields in lines:
                if ok or event == "error":
                    self._write(event, **fields)

    @contextlib.contextmanager
    def _isolated(self, what: str, fingerprint: str | None) -> Iterator[None]:
        """One alert's changes, pages and journal lines, kept or dropped together (a savepoint and the
        outbox's and the journal lines' tails)."""
        mark, lines_mark = len(self._outbox), len(self._lines)
        self.store.db.execute("SAVEPOINT one_alert")
        try:
            yield
        except Exception as exc:
            self.store.db.execute("ROLLBACK TO one_alert")
            self.store.db.execute("RELEASE one_alert")
            del self._outbox[mark:]
            del self._lines[lines_mark:]
            error = f"{type(exc).__name__}: {exc}"
            self._write("error", where=what, fingerprint=fingerprint, error=error)
            self._count("errors")
            row = self.store.alert(fingerprint) if fingerprint else None
            if row is not None and not row.escalated and row.page in ("triggered", "acknowledged"):
                with contextlib.suppress(Exception):  # escalating is the last resort; it is journaled above
                    self.store.db.execute("SAVEPOINT escalate")
                    try:
                        self._escalate(row, f"alertd cannot handle this alert ({error})"[:500])
                        self.store.db.execute("RELEASE escalate")
                    except Exception:
                        self.store.db.execute("ROLLBACK TO escalate")
                        self.store.db.execute("RELEASE escalate")
                        del self._outbox[mark:]
                        raise
        else:
            self.store.db.execute("RELEASE one_alert")

    def _send_pages(self) -> None:
        out, self._outbox = self._outbox, []
        for kind, args in out:
            try:
                getattr(self.pages, kind)(*args)
            except Exception as exc:  # an event the queue refuses (it names why); the others still go
                self._write("error", where="page", action=kind, dedup_key=args[0], error=f"{type(exc).__name__}: {exc}")
                self._count("errors")

    def _orphans(self, now: float) -> None:
        """A run recorded as running with no worker here (its worker died, or failed to record its end):
        its journal says how it ended; a run with neither is failed, so that its page and host are freed."""
        for r in self.store.remediations("state='running'"):
            if r.id in self._workers:
                continue
            ended = self.runner.ended(r.run_id) or Outcome(Result.FAILED, "its worker stopped without an outcome")
            with self._isolated("orphan", r.fingerprint):
                self._write("recovered", remediation=r.id, run_id=r.run_id, how="orphaned", result=ended.result)
                self._record_end(r.id, ended)

    def recover(self) -> None:
        """At start: finish the bookkeeping of runs that ended while the service was down, resume the ones that
        were interrupted, start the ones recorded but never started. No run is started twice."""
        with self._lock:
            todo: list[tuple[int, bool]] = []
            with self._transaction():
                for r in self.store.remediations("state='running'"):
                    ended = self.runner.ended(r.run_id)
                    if ended is not None:
                        self._write("recovered", remediation=r.id, run_id=r.run_id, how="ended while down", result=ended.result)
                        self._record_end(r.id, ended)
                    else:
                        resume = self.runner.started(r.run_id)
                        self._write("recovered", remediation=r.id, run_id=r.run_id, how="resume" if resume else "start")
                        todo.append((r.id, resume))
            for rid, resume in todo:
                self._spawn(rid, resume)

    def reconcile(self) -> None:
        """Alertmanager's active alerts are the truth: ours that it no longer has (twice in a row, as an
        Alertmanager that just restarted lists nothing until Prometheus resends) are resolved, its that we never
        heard of (a notification lost while we were down) are observed now. Alerts that changed while the list
        was being fetched are left to the next round."""
        if self.active_alerts is None:
            return
        fetched_at = self.clock()
        active = [a for a in self.active_alerts() if a.name != self.policy.watchdog_alert]
        with self._lock, self._transaction():
            now = self.clock()
            fps = {a.fingerprint for a in active}
            for row in self.store.alerts("status='firing'"):
                if row.fingerprint in fps or row.last_seen >= fetched_at - max(5.0, self.tick_s * 4):
                    self._missing.pop(row.fingerprint, None)
                    continue
                self._missing[row.fingerprint] = self._missing.get(row.fingerprint, 0) + 1
                if self._missing[row.fingerprint] >= 2:
                    del self._missing[row.fingerprint]
                    with self._isolated("reconcile", row.fingerprint):
                        self.store.update_alert(row.fingerprint, status="resolved", resolved_seen=now)
                        self._write("alert_resolved", fingerprint=row.fingerprint, alert=row.alertname, host=row.host,
                                    via="reconcile")  # fmt: skip
            for a in active:
                known = self.store.alert(a.fingerprint)
                if known is None or (known.status == "resolved" and (known.resolved_seen or 0) < fetched_at):
                    with self._isolated("reconcile", a.fingerprint):
                        self._observe(a)
            self._send_pages()
        self._wake.set()

    def metrics(self) -> dict[str, Any]:
        with self._lock:
            return {
                **self.store.counts(),
                "breakers": {k: {"failures": f, "open_until": u} for k, (f, u) in self.store.breakers().items()},
                "watchdog_last_seen": float(self.store.meta("watchdog_last_seen") or 0) or None,
                "counters": dict(self.counters),
            }

    def start(self) -> None:
        self.recover()
        with contextlib.suppress(Exception):
            self.reconcile()
        for target, name in ((self._tick_loop, "alertd-tick"), (self._reconcile_loop, "alertd-reconcile")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, wait_s: float = 30.0) -> None:
        """Stop deciding; give running remediations `wait_s` to end (a later start resumes the rest)."""
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout=5)
        deadline = time.monotonic() + wait_s
        for t in list(self._workers.values()):
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        if self._journal is not None:
            self._journal.close()

    def running(self) -> list[RemediationRow]:
        with self._lock:
            return self.store.remediations("state='running'")

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                **self.store.snapshot(),
                "watchdog_last_seen": float(self.store.meta("watchdog_last_seen") or 0) or None,
                "counters": dict(self.counters),
            }

    # -- loops --

    def _tick_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # a bad tick must not stop the service; it is journaled
                self._write("error", where="tick", error=f"{type(exc).__name__}: {exc}")
            self._wake.wait(self.tick_s)
            self._wake.clear()

    def _reconcile_loop(self) -> None:
        last = ""
        while not self._stop.wait(self.reconcile_s):
            try:
                self.reconcile()
                error = ""
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
            if error != last:  # journaled when it starts failing and when it recovers, not every period
                self._write("reconcile_error" if error else "reconcile_ok", error=error)
                last = error

    # -- alerts --

    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def _write(self, event: str, **fields: Any) -> None:
        if self._lines_thread is not None and self._lines_thread == threading.get_ident():
            self._lines.append((event, fields))  # this thread's open transaction writes it once it commits
        elif self._journal is not None:
            self._journal.write(event, **fields)

    def _page_key(self, a: Alert) -> str:
        # room for "/escalated" within PagerDuty's 255 characters
        return f"iotex-ops/{self.network}/{a.name}/{a.host or a.fingerprint}"[:240]

    def _observe(self, a: Alert) -> None:
        now = self.clock()
        if a.name == self.policy.watchdog_alert:
            if a.status == "firing":
                self.store.set_meta("watchdog_last_seen", repr(now))
            return
        row = self.store.alert(a.fingerprint)
        annotations = {**a.annotations, **({"generatorURL": a.generator_url} if a.generator_url else {})}
        if row is None:
            if a.status == "resolved":
                return  # the end of something we never saw open: nothing to close
            row = AlertRow(
                a.fingerprint, a.name, a.host, a.severity, a.labels, annotations, "firing", now, now, None, 0,
                self._page_key(a), "none", False, 0, None, None, 0, "",
            )  # fmt: skip
            self.store.insert_alert(row)
            self._write("alert_firing", fingerprint=a.fingerprint, alert=a.name, host=a.host, labels=a.labels)
            self._open_incident(row)
            return
        if a.status == "firing":
            self.store.update_alert(a.fingerprint, last_seen=now, labels=a.labels, annotations=annotations)
            if row.status == "resolved":
                self.store.update_alert(a.fingerprint, status="firing", resolved_seen=None)
                if row.page in ("triggered", "acknowledged"):
                    # it came back before its page was resolved: the same incident, no new page
                    self.store.update_alert(a.fingerprint, flaps=row.flaps + 1)
                    self._write("alert_flap", fingerprint=a.fingerprint, alert=a.name, host=a.host, flaps=row.flaps + 1)
                    self._count("flaps")
                else:
                    self._write("alert_firing", fingerprint=a.fingerprint, alert=a.name, host=a.host, labels=a.labels)
                    self._open_incident(self.store.alert(a.fingerprint) or row)
        elif row.status == "firing":
            self.store.update_alert(a.fingerprint, status="resolved", resolved_seen=now, last_seen=now)
            self._write("alert_resolved", fingerprint=a.fingerprint, alert=a.name, host=a.host, via="alertmanager")

    def _open_incident(self, row: AlertRow) -> None:
        self.store.update_alert(
            row.fingerprint, incidents=row.incidents + 1, page="triggered", attempts=0, escalated=False,
            not_before=None, note="",
        )  # fmt: skip
        rem = self.policy.for_alert(row.alertname)
        refusal = self._refusal(row)
        if refusal:
            # one page that says why nothing automatic will happen; no escalation page on top of it, and no
            # remediation recorded (so none of the policy's limits is spent on it)
            self.store.update_alert(row.fingerprint, note=refusal)
            self._write("remediation_refused", fingerprint=row.fingerprint, alert=row.alertname, host=row.host,
                        reason=refusal)  # fmt: skip
            details = self._details(row, remediation=f"none: {refusal}; a person must act")
            summary = f"{self._summary(row)} (no automatic remediation: {refusal})"
            self._page_trigger(row, details, summary=summary)
            self._count("refused_before_start")
        else:
            details = self._details(row, remediation=f"{rem.runbook} (automatic)" if rem else "none: a person must act")
            self._page_trigger(row, details)
        self._count("incidents")

    def _refusal(self, row: AlertRow) -> str | None:
        """Why this alert's remediation would be refused before it starts (runbook not installed, parameters
        refused, host unknown to the inventory); None when it may start or when there is none to run. A
        label the policy's template needs is not a refusal here: `_maybe_remediate` escalates it."""
        rem = self.policy.for_alert(row.alertname)
        if rem is None:
            return None
        try:
            params = rem.render(row.labels)
        except policy_mod.PolicyError:
            return None
        try:
            return self.runner.check(rem.runbook, params)
        except Exception as exc:  # a broken check must not stop the page; the run itself will say more
            self._write("error", where="check", fingerprint=row.fingerprint, error=f"{type(exc).__name__}: {exc}")
            return None

    # -- pages --

    def _links(self, row: AlertRow) -> list[dict[str, str]]:
        links = []
        if row.annotations.get("runbook_url"):
            text = f"runbook {row.annotations.get('runbook', '')}".strip()
            links.append({"href": row.annotations["runbook_url"], "text": text})
        if row.annotations.get("generatorURL"):
            links.append({"href": row.annotations["generatorURL"], "text": "the alert's query in Prometheus"})
        elif self.prometheus_url:
            links.append({"href": f"{self.prometheus_url}/alerts", "text": "Prometheus alerts"})
        return links

    def _details(self, row: AlertRow, **extra: Any) -> dict[str, Any]:
        return {
            "alert": row.alertname,
            "host": row.host,
            "labels": row.labels,
            "description": row.annotations.get("description", ""),
            "runbook": row.annotations.get("runbook", ""),
            "network": self.network,
            **extra,
        }

    def _summary(self, row: AlertRow) -> str:
        s = row.annotations.get("summary") or f"{row.alertname} on {row.host or self.network}"
        return s[:1024]

    def _page(self, kind: str, *args: Any) -> None:
        self._outbox.append((kind, args))

    def _page_trigger(self, row: AlertRow, details: dict[str, Any], summary: str = "") -> None:
        sev = SEVERITIES.get(row.severity, "error")
        text = (summary or self._summary(row))[:1024]
        self._outbox.append(("trigger", (row.page_key, text, row.host or self.network, sev, details, self._links(row))))
        self._write("page_trigger", fingerprint=row.fingerprint, dedup_key=row.page_key, severity=sev)
        self._count("page_events")

    def _maybe_resolve(self, row: AlertRow, now: float) -> None:
        if row.resolved_seen is None or now - row.resolved_seen < self.policy.resolve_after_s:
            return
        if self.store.remediations("fingerprint=? AND state='running'", (row.fingerprint,)):
            return  # its remediation is still verifying: the page says how it ends
        self._outbox.append(("resolve", (row.page_key,)))
        if row.escalated:
            self._outbox.append(("resolve", (row.page_key + "/escalated",)))
        self.store.update_alert(row.fingerprint, page="resolved", note="")
        self._write("page_resolve", fingerprint=row.fingerprint, dedup_key=row.page_key, escalated=row.escalated)
        self._count("page_events")

    def _escalate(self, row: AlertRow, reason: str) -> None:
        tried = [
            {"run_id": r.run_id, "runbook": r.runbook, "attempt": r.attempt, "result": r.state, "error": (r.error or "")[:500]}
            for r in self.store.remediations(
                "fingerprint=? AND incident=? AND state!='deferred'", (row.fingerprint, row.incidents)
            )
        ][-10:]  # the last ten: a page is not a log
        details = self._details(row, escalated_because=reason, tried=tried, journal=str(self.journal_path))
        summary = f"ESCALATED: {self._summary(row)}: automated remediation gave up ({reason})"[:1024]
        key = row.page_key + "/escalated"
        self._outbox.append(("trigger", (key, summary, row.host or self.network, "critical", details, self._links(row))))
        self.store.update_alert(row.fingerprint, escalated=True, note=reason)
        self._write("page_escalate", fingerprint=row.fingerprint, dedup_key=key, reason=reason, tried=tried)
        self._count("escalations")

    def _watchdog(self, now: float) -> None:
        seen = self.store.meta("watchdog_last_seen")
        if seen is None:
            return  # never heard: the pipeline may not be set up to send it
        paged = self.store.meta("watchdog_paged") == "1"
        key = f"iotex-ops/{self.network}/{self.policy.watchdog_alert}"
        silent = now - float(seen) > self.policy.watchdog_timeout_s
        if silent and not paged:
            details = {"last_seen": float(seen), "timeout_s": self.policy.watchdog_timeout_s, "network": self.network}
            self._page(
                "trigger",
                key,
                f"alerting pipeline silent: no {self.policy.watchdog_alert} from Alertmanager for "
                f"{now - float(seen):.0f}s (Prometheus or Alertmanager down?)",
                self.network, "critical", details, [],
            )  # fmt: skip
            self.store.set_meta("watchdog_paged", "1")
            self._write("page_trigger", dedup_key=key, reason="watchdog silent")
        elif paged and not silent:
            self._page("resolve", key)
            self.store.set_meta("watchdog_paged", "0")
            self._write("page_resolve", dedup_key=key, reason="watchdog back")

    # -- remediations --

    def _note(self, row: AlertRow, note: str) -> None:
        if note != row.note:
            self.store.update_alert(row.fingerprint, note=note)
            self._write("remediation_waits", fingerprint=row.fingerprint, alert=row.alertname, host=row.host, reason=note)

    def _maybe_remediate(self, row: AlertRow, now: float) -> int | None:
        rem = self.policy.for_alert(row.alertname)
        if rem is None or row.escalated:
            return None
        waiting = row.not_before is not None and now < row.not_before
        # deferred by a drill's lock: it waits less and less often, but starts as soon as the drill is over
        if waiting and not (row.deferrals and self.runner.network_free()):
            return None
        if self.store.remediations("fingerprint=? AND state='running'", (row.fingerprint,)):
            return None
        try:
            params = rem.render(row.labels)
        except policy_mod.PolicyError as exc:
            self._escalate(row, str(exc))
            return None
        host = params.get("host", row.host)
        refusal = self.runner.check(rem.runbook, params)
        if refusal:
            # refused before it starts: its page says so (see `_open_incident`); nothing is recorded, so it
            # spends no attempt, no rate limit, no breaker, and a person is not paged a second time for it
            if refusal != row.note:
                self.store.update_alert(row.fingerprint, note=refusal)
                self._write("remediation_refused", fingerprint=row.fingerprint, alert=row.alertname, host=row.host,
                            reason=refusal)  # fmt: skip
            return None
        breaker_failures, open_until = self.store.breaker(rem.runbook)
        if open_until is not None and open_until <= now:
            self.store.set_breaker(rem.runbook, breaker_failures, None)  # half-open: the next run decides
            self._write("breaker_half_open", runbook=rem.runbook)
            open_until = None
        mine = self.store.remediations("fingerprint=? AND incident=?", (row.fingerprint, row.incidents))
        last = mine[-1] if mine else None
        gate = policy_mod.may_start(
            self.policy,
            rem,
            now=now,
            attempts=row.attempts,
            last_start=row.last_start,
            last_failed=last is not None and last.state in (Result.FAILED, Result.ROLLBACK_FAILED),
            host_busy=bool(host and self.store.remediations("host=? AND state='running'", (host,))),
            running=len(self.store.remediations("state='running'")),
            recent_starts=self.store.starts_since(now - self.policy.rate_per_s),
            breaker_open_until=open_until,
        )
        if not gate.go:
            if gate.retry_at is None:
                self._escalate(row, gate.reason)
            else:
                self._note(row, gate.reason)
            return None
        attempt = row.attempts + 1
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        run_id = f"{stamp}-{rem.runbook}-{row.fingerprint[:8]}-{row.incidents}-{attempt}-{secrets.token_hex(2)}"
        rid = self.store.add_remediation(
            fingerprint=row.fingerprint, alertname=row.alertname, host=host, incident=row.incidents, runbook=rem.runbook,
            params=params, run_id=run_id, attempt=attempt, state="running", created=now,
        )  # fmt: skip
        self.store.update_alert(row.fingerprint, attempts=attempt, last_start=now, note="")
        self._write("remediation_start", remediation=rid, fingerprint=row.fingerprint, alert=row.alertname, host=host,
                    runbook=rem.runbook, params=params, run_id=run_id, attempt=attempt)  # fmt: skip
        progress = {"runbook": rem.runbook, "run_id": run_id, "attempt": attempt, "state": "starting"}
        details = self._details(row, remediation=progress)
        self._page_trigger(row, details)  # the page's details follow the remediation
        # not acknowledged yet: only once the run really starts (its first step, see `_work`); a run deferred
        # because a drill holds the lock leaves the page triggered, so nobody thinks it is being handled
        self._count("remediations_started")
        return rid

    def _acknowledge(self, fingerprint: str, run_id: str) -> None:
        """The remediation's first step began: its page is acknowledged (once; never a resolved page)."""
        row = self.store.alert(fingerprint)
        if row is None or row.page != "triggered":
            return
        self._page("acknowledge", row.page_key)
        self.store.update_alert(row.fingerprint, page="acknowledged")
        self._write("page_ack", fingerprint=row.fingerprint, dedup_key=row.page_key, run_id=run_id)

    def _spawn(self, rid: int, resume: bool) -> None:
        t = threading.Thread(target=self._work, args=(rid, resume), name=f"remediation-{rid}", daemon=True)
        self._workers[rid] = t
        t.start()

    def _work(self, rid: int, resume: bool) -> None:
        with self._lock:
            r = self.store.remediation(rid)

        acked = threading.Event()

        def on_step(step: str) -> None:
            with self._lock:
                self.store.update_remediation(rid, step=step)
                if not acked.is_set():  # the run really started (it holds the lock, a step runs): ack its page
                    acked.set()
                    try:
                        with self._transaction():
                            with self._isolated("acknowledge", r.fingerprint):
                                self._acknowledge(r.fingerprint, r.run_id)
                            self._send_pages()
                    except Exception as exc:  # the page stays triggered: a person looks, which is the safe side
                        self._write("error", where="acknowledge", remediation=rid, error=f"{type(exc).__name__}: {exc}")

        try:
            out = self.runner.resume(r.run_id, on_step) if resume else self.runner.run(r.run_id, r.runbook, r.params, on_step)
        except Exception as exc:  # the runner reports outcomes; anything else is a failure with its reason
            out = Outcome(Result.FAILED, f"{type(exc).__name__}: {exc}")
        with self._lock:
            try:
                with self._transaction():
                    with self._isolated("record", r.fingerprint):
                        self._record_end(rid, out)
                    self._send_pages()
            except Exception as exc:  # the store itself failed: the tick finds the run orphaned and retries
                self._write("error", where="record", remediation=rid, error=f"{type(exc).__name__}: {exc}")
            finally:
                self._workers.pop(rid, None)
        self._wake.set()

    def _record_end(self, rid: int, out: Outcome) -> None:
        now = self.clock()
        r = self.store.remediation(rid)
        row = self.store.alert(r.fingerprint)
        if out.result is Result.DEFERRED:
            # a drill (or an operator) holds the network: not an attempt, not a failure; try again later, less
            # and less often, and tell a person once it has waited `defer_for`
            self.store.update_remediation(rid, state=Result.DEFERRED, ended=now, error=out.error, counts_for_breaker=False)
            self._write("remediation_deferred", remediation=rid, run_id=r.run_id, reason=out.error)
            if row is None:
                return
            since = row.deferred_since if row.deferred_since is not None else now
            wait = min(self.policy.defer_s * 2 ** min(row.deferrals, 10), max(self.policy.defer_s, 60.0))
            self.store.update_alert(
                r.fingerprint, attempts=max(0, row.attempts - 1), last_start=None, not_before=now + wait,
                deferrals=row.deferrals + 1, deferred_since=since,
            )  # fmt: skip
            if now - since >= self.policy.defer_for_s and not row.escalated:
                self._escalate(row, f"{r.runbook} could not start for {now - since:.0f}s: {out.error}")
            return
        if row is not None and row.deferrals:
            self.store.update_alert(r.fingerprint, deferrals=0, deferred_since=None)
        counts = out.result is not Result.REFUSED
        self.store.update_remediation(rid, state=out.result, ended=now, error=out.error or None, counts_for_breaker=counts)
        self._write("remediation_end", remediation=rid, run_id=r.run_id, runbook=r.runbook, host=r.host, result=out.result,
                    error=out.error, journal=out.journal)  # fmt: skip
        self._count(f"remediations_{out.result}")
        failures, open_until = self.store.breaker(r.runbook)
        if out.result is Result.PASSED:
            if failures or open_until:
                self._write("breaker_closed", runbook=r.runbook)
            self.store.set_breaker(r.runbook, 0, None)
        elif counts:
            failures += 1
            if failures >= self.policy.breaker_failures and (open_until is None or open_until <= now):
                open_until = now + self.policy.breaker_open_s
                self._write("breaker_open", runbook=r.runbook, failures=failures, open_until=open_until)
                self._count("breaker_trips")
            self.store.set_breaker(r.runbook, failures, open_until)
        if row is None:
            return
        details = self._details(
            row,
            remediation={"runbook": r.runbook, "run_id": r.run_id, "attempt": r.attempt, "state": out.result,
                         "error": out.error, "journal": out.journal},
        )  # fmt: skip
        if row.page in ("triggered", "acknowledged"):
            self._page_trigger(row, details)
        if out.result is Result.REFUSED:
            self._escalate(row, f"{r.runbook} refused its parameters: {out.error}")
