"""Drill history and scorecards, over the run store.

Runs are read only through `RunStore` (`runs(...)`, `state(run_id)`): a run's figures are its summary's
duration and its `measures` event (the runbook's own measures: downtime, longest gap, and when present lost
actions and time to detect). `scorecard` is pure arithmetic over those rows and `now`.

The score (0..1): the pass rate of the last `window` finished runs, times a freshness that decays once the
newest run is older than the drill's schedule period (Gremlin's idea: a drill not run lately says less):
1 while age <= period, then halving every further period. A drill with no schedule does not go stale.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from iotex_ops.errors import OpsError
from iotex_ops.runbook.events import Result
from iotex_ops.runbook.state import RunState
from iotex_ops.runbook.store import RunStore, RunSummary

# the figures a scorecard shows, each where larger is worse; measures keys that give them
FIGURES: Mapping[str, str] = {
    "duration_s": "duration (s)",
    "downtime_s": "downtime (s)",
    "longest_gap_s": "longest gap (s)",
    "lost_actions": "lost actions",
    "time_to_detect_s": "time to detect (s)",
}
TREND_RUNS = 10  # the trend is over the last N runs
STEADY = 0.1  # a change under 10% between the older and the newer half of the trend is "steady"


@dataclass(frozen=True)
class RunRow:
    """One run of a drill as the history shows it."""

    run_id: str
    runbook: str
    started_at: float
    ended_at: float | None
    result: Result | None  # None: no end (running, or crashed: `runbook resume` continues it)
    user: str
    figures: Mapping[str, float | None] = field(default_factory=dict)
    error: str | None = None
    detect: Mapping[str, float] = field(default_factory=dict)  # time to detect per expected alert that fired

    @property
    def passed(self) -> bool:
        return self.result is Result.PASSED

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "runbook": self.runbook, "started_at": self.started_at, "ended_at": self.ended_at,
                "result": str(self.result) if self.result else "unfinished", "user": self.user, "error": self.error,
                **{k: self.figures.get(k) for k in FIGURES}, "time_to_detect_by_alert": dict(self.detect)}  # fmt: skip


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)


def figures(summary: RunSummary, state: RunState) -> dict[str, float | None]:
    """A run's figures from its summary and its measures (pure). Time to detect may be one number or one per
    expected alert (the worst counts); lost actions may sit in the measures or in their `load` section."""
    m = state.measures
    out: dict[str, float | None] = {k: _num(m.get(k)) for k in FIGURES}
    out["duration_s"] = _num(summary.duration_s)
    if out["lost_actions"] is None and isinstance(m.get("load"), Mapping):
        out["lost_actions"] = _num(m["load"].get("lost"))
    ttd = m.get("time_to_detect_s")
    if isinstance(ttd, Mapping):
        values = [v for v in (_num(x) for x in ttd.values()) if v is not None]
        out["time_to_detect_s"] = max(values) if values else None
    return out


def detections(state: RunState) -> dict[str, float]:
    """Time to detect per alert name, when the run measured it per expected alert (a drill's maintenance window)."""
    ttd = state.measures.get("time_to_detect_s")
    if not isinstance(ttd, Mapping):
        return {}
    return {str(k): v for k, v in ((k, _num(x)) for k, x in ttd.items()) if v is not None}


def row(summary: RunSummary, state: RunState) -> RunRow:
    return RunRow(summary.run_id, summary.runbook, summary.started_at, summary.ended_at, summary.result, summary.user,
                  figures(summary, state), summary.error, detections(state))  # fmt: skip


def history(store: RunStore, runbook: str | None = None, since: float | None = None, last: int | None = None) -> list[RunRow]:
    """The runs of a drill (or of every runbook), oldest first, through the run store."""
    out = []
    for s in store.runs(runbook=runbook, since=since, last=last):
        try:
            state = store.state(s.run_id)
        except OpsError:
            continue
        out.append(row(s, state))
    return out


@dataclass(frozen=True)
class Stat:
    median: float | None
    worst: float | None
    runs: int  # how many runs had the figure

    def as_dict(self) -> dict[str, Any]:
        return {"median": self.median, "worst": self.worst, "runs": self.runs}


@dataclass(frozen=True)
class Scorecard:
    drill: str
    runs: int  # every run, finished or not
    finished: int
    passed: int
    pass_rate: float | None  # of the last `window` finished runs
    last_run: RunRow | None
    period_s: float | None  # the drill's schedule period (None: not scheduled)
    age_s: float | None  # since the newest run started
    stale: bool
    freshness: float
    score: float
    stats: Mapping[str, Stat]
    trend: tuple[RunRow, ...]  # the last N runs
    trend_direction: Mapping[str, str]  # figure (and "pass_rate") -> improving | worsening | steady | n/a
    history: tuple[RunRow, ...] = ()  # every run, oldest first (the HTML page plots them; not in as_dict)
    detect: Mapping[str, Stat] = field(default_factory=dict)  # time to detect per expected alert: median, worst

    def as_dict(self) -> dict[str, Any]:
        return {
            "drill": self.drill, "runs": self.runs, "finished": self.finished, "passed": self.passed, "pass_rate": self.pass_rate,
            "last_run": self.last_run.as_dict() if self.last_run else None, "period_s": self.period_s, "age_s": self.age_s,
            "stale": self.stale, "freshness": round(self.freshness, 4), "score": round(self.score, 4),
            "figures": {k: v.as_dict() for k, v in self.stats.items()},
            "trend": [r.as_dict() for r in self.trend], "trend_direction": dict(self.trend_direction),
            "time_to_detect_by_alert": {k: v.as_dict() for k, v in self.detect.items()},
        }  # fmt: skip


def _direction(values: Sequence[float], larger_is_worse: bool = True) -> str:
    if len(values) < 4:
        return "n/a"
    half = len(values) // 2
    old, new = statistics.mean(values[:half]), statistics.mean(values[-half:])
    scale = max(abs(old), abs(new), 1e-9)
    if abs(new - old) / scale < STEADY:
        return "steady"
    worse = new > old if larger_is_worse else new < old
    return "worsening" if worse else "improving"


def scorecard(
    drill: str, rows: Iterable[RunRow], *, now: float, period_s: float | None = None, window: int = TREND_RUNS
) -> Scorecard:
    """The scorecard of one drill from its runs (any order), at `now` (unix seconds)."""
    runs = sorted(rows, key=lambda r: (r.started_at, r.run_id))
    done = [r for r in runs if r.result is not None]
    recent = done[-window:]
    pass_rate = sum(r.passed for r in recent) / len(recent) if recent else None
    last = runs[-1] if runs else None
    age = now - last.started_at if last else None
    stale = period_s is not None and (age is None or age > period_s)
    if period_s is None:
        freshness = 1.0
    elif age is None:
        freshness = 0.0
    else:
        freshness = 1.0 if age <= period_s else 0.5 ** ((age - period_s) / period_s)
    score = (pass_rate or 0.0) * freshness
    stats = {}
    for k in FIGURES:
        vals = [v for v in (r.figures.get(k) for r in done) if v is not None]
        stats[k] = Stat(round(statistics.median(vals), 3) if vals else None, max(vals) if vals else None, len(vals))
    trend = tuple(runs[-window:])
    directions = {
        "pass_rate": _direction([1.0 if r.passed else 0.0 for r in trend if r.result is not None], larger_is_worse=False)
    }
    for k in FIGURES:
        vals = [v for v in (r.figures.get(k) for r in trend if r.result is not None) if v is not None]
        directions[k] = _direction(vals)
    detect = {}
    for name in sorted({n for r in done for n in r.detect}):
        vals = [r.detect[name] for r in done if name in r.detect]
        detect[name] = Stat(round(statistics.median(vals), 3), max(vals), len(vals))
    return Scorecard(drill, len(runs), len(done), sum(r.passed for r in done), pass_rate, last, period_s, age, stale, freshness,
                     score, stats, trend, directions, tuple(runs), detect)  # fmt: skip


def scorecards(rows: Iterable[RunRow], *, now: float, periods: Mapping[str, float | None] | None = None,
               window: int = TREND_RUNS) -> list[Scorecard]:  # fmt: skip
    """One scorecard per drill: every runbook with runs, and every scheduled drill (`periods`), by name."""
    periods = periods or {}
    by: dict[str, list[RunRow]] = {name: [] for name in periods}
    for r in rows:
        by.setdefault(r.runbook, []).append(r)
    return [scorecard(name, by[name], now=now, period_s=periods.get(name), window=window) for name in sorted(by)]
