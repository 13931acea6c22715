"""What each page of the dashboard shows, from the typed layer's records: pure (no I/O; `now` is given).

Every view is a frozen dataclass with `as_dict()`: the page's template renders it, and the live updates
(server-sent events) carry the same dict as JSON, so that the first paint and an update never disagree.
A level says what a colour means: "ok", "info" (a state an operator chose: paused, standby), "warn"
(worth a look), "bad" (something is wrong now).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from iotex_ops.nodeapi import Block, ChainInfo, Delegates
from iotex_ops.runbook.state import RunState
from iotex_ops.runbook.store import RunSummary

# A delegate this many finalized blocks behind the network's top is lagging (warn), and past the second bound
# out of step (bad). The lab's alert fires at 10 behind (alerting/settings.py); the page warns before it does.
LAG_WARN, LAG_BAD = 2, 10
# The newest finalized block older than this (seconds) means the chain is not finalizing (or the clock is off).
STALL_WARN_S, STALL_BAD_S = 10.0, 30.0
# TPS is measured over the last blocks' timestamps: enough blocks to smooth one empty block, few enough to move.
TPS_BLOCKS = 20
LEVELS = ("ok", "info", "warn", "bad")


def worst(levels: Iterable[str]) -> str:
    return max(levels, key=LEVELS.index, default="ok")


# -- the network now ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DelegateRow:
    name: str
    host: str
    answering: bool
    height: int | None = None
    finalized: int | None = None
    version: str | None = None
    protocol: int | None = None
    peers: int | None = None
    state: str = "down"  # ok | paused | halted | standby | down
    halted: str | None = None
    epoch: int | None = None
    produced: int | None = None  # this epoch's proposing slots: produced of expected, missed
    expected: int | None = None
    missed: int | None = None
    last_proposed: int | None = None  # the newest recent block it proposed
    last_block_age_s: float | None = None
    lag: int | None = None
    level: str = "bad"
    problems: tuple[str, ...] = ()
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "problems": list(self.problems)}


def delegate_row(
    name: str,
    host: str,
    chain: ChainInfo | None,
    *,
    top: int | None,
    delegates: int,
    now: float,
    majority_version: str | None = None,
    books: Delegates | None = None,
    last_proposed: Mapping[str, int] | None = None,
    error: str | None = None,
) -> DelegateRow:
    """One delegate's row: what its node says, set against the network (`top`: the highest finalized height
    among the answering nodes; `delegates`: how many there are, so how many peers each should have)."""
    if chain is None:
        return DelegateRow(name, host, False, level="bad", problems=("does not answer on its API",), error=error)
    problems: list[tuple[str, str]] = []
    if chain.halted:
        state = "halted"
        problems.append(("bad", f"halted: {chain.halted}"))
    elif chain.standby:
        state = "standby"
        problems.append(("info", "a standby (not signing until activated)"))
    elif chain.paused:
        state = "paused"
        problems.append(("info", "paused"))
    else:
        state = "ok"
    lag = max(0, top - chain.finalized_height) if top is not None else None
    if lag is not None and lag > LAG_BAD:
        problems.append(("bad", f"{lag} blocks behind"))
    elif lag is not None and lag > LAG_WARN:
        problems.append(("warn", f"{lag} blocks behind"))
    want_peers = max(0, delegates - 1)
    if chain.peers is not None and want_peers:
        if chain.peers == 0:
            problems.append(("bad", "no peer"))
        elif chain.peers < want_peers:
            problems.append(("warn", f"{chain.peers} of {want_peers} peers"))
    age = max(0.0, now - chain.finalized_timestamp_ms / 1000) if chain.finalized_timestamp_ms is not None else None
    if age is not None and state == "ok":
        if age > STALL_BAD_S:
            problems.append(("bad", f"newest finalized block {age:.0f}s old"))
        elif age > STALL_WARN_S:
            problems.append(("warn", f"newest finalized block {age:.0f}s old"))
    if majority_version and chain.node_version != majority_version:
        problems.append(("warn", f"runs {chain.node_version}, most run {majority_version}"))
    produced = expected = missed = None
    if books is not None:
        cand = next((c for c in books.candidates if c.operator == chain.address), None)
        if cand is not None:
            produced, expected, missed = cand.produced, cand.expected, cand.missed
            if missed:
                problems.append(("warn", f"missed {missed} slot(s) this epoch"))
    return DelegateRow(
        name,
        host,
        True,
        height=chain.height,
        finalized=chain.finalized_height,
        version=chain.node_version,
        protocol=chain.protocol_version,
        peers=chain.peers,
        state=state,
        halted=chain.halted,
        epoch=chain.epoch,
        produced=produced,
        expected=expected,
        missed=missed,
        last_proposed=(last_proposed or {}).get(chain.address),
        last_block_age_s=round(age, 1) if age is not None else None,
        lag=lag,
        level=worst(lv for lv, _ in problems),
        problems=tuple(text for _, text in problems),
    )


def last_proposed(blocks: Sequence[Block]) -> dict[str, int]:
    """Proposer address -> the newest of these blocks it proposed."""
    out: dict[str, int] = {}
    for b in blocks:
        out[b.proposer] = max(b.height, out.get(b.proposer, 0))
    return out


def tps(blocks: Sequence[Block]) -> float | None:
    """Finalized actions a second over these blocks (by their timestamps): the actions after the first block,
    over the time from the first to the last. None with fewer than two blocks or no time between them."""
    bs = sorted(blocks, key=lambda b: b.height)
    if len(bs) < 2 or bs[-1].timestamp_ms <= bs[0].timestamp_ms:
        return None
    return round(sum(b.action_count for b in bs[1:]) / (bs[-1].timestamp - bs[0].timestamp), 2)


def majority(values: Iterable[str | None]) -> str | None:
    vs = [v for v in values if v]
    return statistics.mode(vs) if vs else None


@dataclass(frozen=True)
class NetworkView:
    network: str
    at: float
    rows: tuple[DelegateRow, ...]
    height: int | None  # the chain's: the highest finalized height among the answering nodes
    tps: float | None
    epoch: int | None
    level: str
    summary: str

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rows": [r.as_dict() for r in self.rows]}


def network_view(
    network: str,
    delegates: Sequence[tuple[str, str, ChainInfo | None, str | None]],
    *,
    now: float,
    books: Delegates | None = None,
    blocks: Sequence[Block] = (),
) -> NetworkView:
    """The network now from each delegate's (name, host, its /v1/chain or None, the error), the epoch's
    productivity (`books`) and the recent blocks (who proposed, TPS)."""
    answering = [c for _, _, c, _ in delegates if c is not None]
    top = max((c.finalized_height for c in answering), default=None)
    version = majority(c.node_version for c in answering)
    proposed = last_proposed(blocks)
    rows = tuple(
        delegate_row(
            name,
            host,
            c,
            top=top,
            delegates=len(delegates),
            now=now,
            majority_version=version,
            books=books,
            last_proposed=proposed,
            error=err,
        )
        for name, host, c, err in delegates
    )
    down = [r.name for r in rows if not r.answering]
    bad = [r.name for r in rows if r.level == "bad"]
    if not rows:
        summary = "no delegate in the inventory"
    elif not answering:
        summary = "no delegate answers"
    elif bad:
        summary = f"{len(bad)} of {len(rows)} delegates need attention: {', '.join(bad)}"
    else:
        summary = f"all {len(rows)} delegates answer" + ("" if not down else f" but {', '.join(down)}")
    epochs = [c.epoch for c in answering if c.epoch is not None]
    return NetworkView(network, now, rows, top, tps(blocks), max(epochs) if epochs else None, worst(r.level for r in rows),
                       summary)  # fmt: skip


# -- runs --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepView:
    step: str
    host: str | None
    state: str  # running | passed | failed
    attempts: int
    duration_s: float | None
    checks: tuple[dict[str, Any], ...]
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "checks": list(self.checks)}


@dataclass(frozen=True)
class RunView:
    run_id: str
    store: str  # which run store: "runs" (the operator's and the scheduler's) or "alertd"
    runbook: str
    user: str
    status: str  # running | unfinished | passed | failed | rollback_failed | refused | deferred
    level: str
    started_at: float | None
    ended_at: float | None
    duration_s: float | None
    current: str | None  # the step (and host) running now
    steps: tuple[StepView, ...]
    rollbacks: tuple[dict[str, Any], ...]
    error: str | None
    has_report: bool

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "steps": [s.as_dict() for s in self.steps], "rollbacks": list(self.rollbacks)}


_RESULT_LEVEL = {"passed": "ok", "failed": "warn", "rollback_failed": "bad", "refused": "warn", "deferred": "info"}


def _value(v: Any) -> Any:
    """A check's value as a page shows it: numbers and short strings as they are, the rest as short text."""
    if v is None or isinstance(v, bool | int | float):
        return v
    text = str(v)
    return text if len(text) <= 120 else text[:117] + "..."


def run_view(summary: RunSummary, state: RunState, *, store: str, now: float, alive: bool, has_report: bool) -> RunView:
    """A run as the runs page shows it. `alive`: a process still runs it (its lock is held): without an end,
    a run nobody runs any more is `unfinished` (`runbook resume` continues it), not `running`."""
    steps = []
    for (step, host), s in state.steps.items():
        st = "running" if s.ok is None else ("passed" if s.ok else "failed")
        checks = tuple({"check": c.check, "ok": c.ok, "value": _value(c.value), "detail": c.detail} for c in s.verifications)
        steps.append(StepView(step, host, st, s.attempts, s.duration_s, checks, s.error))
    rollbacks = tuple(
        {"step": r.step, "host": r.host, "ok": r.ok, "what": r.what, "error": r.error} for r in state.rollbacks.values()
    )
    if state.result is not None:
        status = str(state.result)
    else:
        status = "running" if alive else "unfinished"
    level = _RESULT_LEVEL.get(status, "info" if status == "running" else "warn")
    current = None
    if state.running:
        step, host = next(reversed(state.running))
        current = f"{step} on {host}" if host else step
    ended = state.ended_at if state.result is not None else None
    duration = summary.duration_s if state.result is not None else (now - summary.started_at)
    return RunView(summary.run_id, store, summary.runbook, summary.user, status, level, summary.started_at, ended,
                   round(duration, 1) if duration is not None else None, current, tuple(steps), rollbacks, state.error,
                   has_report)  # fmt: skip


# -- alerts and incidents --------------------------------------------------------------------------------


def severity_level(severity: str) -> str:
    """An alert's colour: critical and error are bad, warning warn, info (the Watchdog heartbeat) info."""
    return {"critical": "bad", "error": "bad", "warning": "warn", "info": "info"}.get(severity, "warn")


_REMEDIATION_FIELDS = ("id", "alertname", "host", "runbook", "run_id", "state", "step", "attempt", "created", "ended", "error")


@dataclass(frozen=True)
class AlertsView:
    firing: tuple[dict[str, Any], ...]  # Prometheus' firing alerts
    pages: tuple[dict[str, Any], ...]  # open and recent pages (the receiver's incidents, or alertd's alerts)
    remediations: tuple[dict[str, Any], ...]  # alertd's, newest first
    breakers: tuple[dict[str, Any], ...]  # open circuit breakers
    deferred: tuple[dict[str, Any], ...]  # alerts whose remediation alertd defers (and why)
    alertd: str  # "answering", "not answering", "not configured"
    prometheus: str
    level: str

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def alerts_view(
    firing_rows: Sequence[Mapping[str, Any]] | None,
    alertd_state: Mapping[str, Any] | None,
    incidents: Sequence[Mapping[str, Any]] | None,
    *,
    now: float,
    alertd_configured: bool,
    recent: int = 20,
) -> AlertsView:
    """Prometheus' ALERTS rows (None: Prometheus did not answer), alertd's /v1/state (None: not answering or
    not configured) and the receiver's incidents (None: no receiver; then alertd's alerts are the pages)."""
    firing = tuple(
        sorted(
            (
                {
                    "alertname": str(r.get("metric", {}).get("alertname", "")),
                    "host": str(r.get("metric", {}).get("host", "")),
                    "severity": str(r.get("metric", {}).get("severity", "")),
                    "level": severity_level(str(r.get("metric", {}).get("severity", ""))),
                }
                for r in firing_rows or ()
            ),
            key=lambda a: (-LEVELS.index(severity_level(a["severity"])), a["alertname"], a["host"]),
        )
    )
    st = alertd_state or {}
    alerts = list(st.get("alerts") or [])
    rems = sorted(st.get("remediations") or [], key=lambda r: -float(r.get("created") or 0))[:recent]
    remediations = tuple(
        {
            k: r.get(k)
            for k in ("id", "alertname", "host", "runbook", "run_id", "state", "step", "attempt", "created", "ended", "error")
        }
        for r in rems
    )
    breakers = tuple(
        {"runbook": rb, "failures": b.get("failures"), "open_until": b.get("open_until")}
        for rb, b in sorted((st.get("breakers") or {}).items())
        if b.get("open_until") and float(b["open_until"]) > now
    )
    deferred = tuple(
        {"alertname": a.get("alertname"), "host": a.get("host"), "deferrals": a.get("deferrals"), "note": a.get("note")}
        for a in alerts
        if a.get("status") == "firing" and a.get("deferred_since")
    )
    if incidents is not None:
        pages = tuple(
            {
                "id": i.get("id"),
                "status": i.get("status"),
                "summary": i.get("summary"),
                "dedup_key": i.get("dedup_key"),
                "severity": i.get("severity"),
                "created_at": i.get("created_at"),
                "acknowledged_at": i.get("acknowledged_at"),
            }
            for i in sorted(incidents, key=lambda i: str(i.get("created_at") or ""), reverse=True)[:recent]
        )
    else:
        pages = tuple(
            {
                "id": a.get("page_key"),
                "status": a.get("page"),
                "summary": f"{a.get('alertname')} on {a.get('host')}",
                "dedup_key": a.get("page_key"),
                "severity": a.get("severity"),
                "created_at": a.get("first_seen"),
                "acknowledged_at": None,
            }
            for a in sorted(alerts, key=lambda a: -float(a.get("last_seen") or 0))
            if a.get("page") and a.get("page") != "none"
        )[:recent]
    open_pages = [p for p in pages if p["status"] == "triggered"]
    level = worst(
        [
            "bad" if open_pages else "ok",
            *(severity_level(a["severity"]) for a in firing),
            "warn" if breakers else "ok",
            "warn" if alertd_configured and alertd_state is None else "ok",
        ]
    )
    return AlertsView(
        firing, pages, remediations, breakers, deferred,
        "not configured" if not alertd_configured else ("answering" if alertd_state is not None else "not answering"),
        "answering" if firing_rows is not None else "not answering", level,
    )  # fmt: skip


# -- drills: schedules, approvals, history, scorecards ----------------------------------------------------


@dataclass(frozen=True)
class ScheduleRow:
    name: str
    drill: str
    cron: str
    timezone: str
    enabled: bool
    approval: bool
    suspended: dict[str, str] | None  # by, at, reason
    next_runs: tuple[dict[str, Any], ...]  # run_id, at (UTC ISO), skip

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "next_runs": list(self.next_runs)}


@dataclass(frozen=True)
class DrillsView:
    schedules: tuple[ScheduleRow, ...]
    pending: tuple[dict[str, Any], ...]  # scheduled runs waiting for an approval: the approve buttons
    active: tuple[dict[str, Any], ...]  # the scheduler's claimed runs not ended (due, waiting, running)
    recent: tuple[dict[str, Any], ...]  # the scheduler's latest runs and decisions
    scorecards: tuple[dict[str, Any], ...]
    plots: dict[str, dict[str, list[Any]]]  # drill -> {"t": [...], "duration_s": [...], "passed": [...]}
    problems: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def pending_approvals(runs: Iterable[Mapping[str, Any]], approval_required: set[str]) -> list[dict[str, Any]]:
    """The scheduler's runs that wait, unapproved, for a person: those of a schedule requiring approval, not
    approved yet, not decided yet."""
    return [
        dict(r)
        for r in runs
        if r["schedule"] in approval_required and r["status"] in ("due", "waiting") and not r.get("approval")
    ]


def drill_plots(history: Iterable[Any]) -> dict[str, dict[str, list[Any]]]:
    """Per drill, its runs over time for the scorecard plots: start time, duration, passed (1/0)."""
    out: dict[str, dict[str, list[Any]]] = {}
    for r in sorted(history, key=lambda r: r.started_at):
        if r.result is None:
            continue
        p = out.setdefault(r.runbook, {"t": [], "duration_s": [], "passed": []})
        p["t"].append(round(r.started_at, 3))
        p["duration_s"].append(r.figures.get("duration_s"))
        p["passed"].append(1 if r.passed else 0)
    return out


# -- charts ------------------------------------------------------------------------------------------------

# What the charts plot, as Prometheus range queries over the nodes' own metrics: per delegate for the height,
# the network's for TPS (every node counts the same finalized actions: the highest rate) and the mean interval.
CHARTS: dict[str, tuple[str, str, str]] = {
    "finalized_height": ("finalized height", 'iotex_finalized_height{job="iotex-node"}', "height"),
    "tps": ("TPS (finalized actions a second)", 'max(rate(iotex_actions_finalized_total{job="iotex-node"}[30s]))', "TPS"),
    "block_interval": (
        "block interval (s)",
        'max(rate(iotex_block_interval_seconds_sum{job="iotex-node"}[30s])'
        ' / rate(iotex_block_interval_seconds_count{job="iotex-node"}[30s]))',
        "mean interval (s)",
    ),
}
WINDOWS = {"5m": 300, "15m": 900, "1h": 3600, "6h": 6 * 3600, "24h": 24 * 3600}


def chart_step(window_s: float, points: int = 300) -> float:
    """A range query's step for a window: about `points` points, at least 1 s (the lab scrapes every second)."""
    return max(1.0, round(window_s / points))


@dataclass(frozen=True)
class Series:
    """One chart's data as uPlot takes it: x (unix seconds) then one column per series, None where missing."""

    title: str
    labels: tuple[str, ...]
    data: list[list[float | None]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"title": self.title, "labels": list(self.labels), "data": self.data}


def series(title: str, rows: Sequence[Mapping[str, Any]], label: str = "delegate", name: str = "value") -> Series:
    """A Prometheus range query's matrix as aligned columns: one x axis for all, a column per series
    (named by `label`, else the metric's name, else `name`)."""
    xs = sorted({float(t) for r in rows for t, _ in r.get("values", [])})
    index = {x: i for i, x in enumerate(xs)}
    labels, cols = [], []
    for r in sorted(rows, key=lambda r: str(r.get("metric", {}).get(label, ""))):
        m = r.get("metric", {})
        labels.append(str(m.get(label) or m.get("__name__") or name))
        col: list[float | None] = [None] * len(xs)
        for t, v in r.get("values", []):
            try:
                f = float(v)
            except (TypeError, ValueError):
                continue
            col[index[float(t)]] = f if f == f else None  # NaN (0/0 rate) is a gap
        cols.append(col)
    return Series(title, tuple(labels), [list(xs), *cols])
