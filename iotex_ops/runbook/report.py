"""The report of a run, and of a rehearsal (several runs in sequence).

`write(run, prometheus_url)` folds the run's journal (state.py) and writes next to it:

* `report.json`: everything the journal says, arranged (run, steady state, one row per step and host,
  skipped steps, approvals, rollbacks, marks, measures, the plot's phases) plus two Prometheus series over
  the run (the chain's finalized height, its throughput);
* `report.html`: one self-contained page (inline CSS, no JavaScript, nothing external) showing the same,
  with a plot of both series and the drill's phases drawn by `svg_plot`.

Nothing is shown that is not in the journal (already redacted) or in Prometheus; every text is escaped, since
step names, labels and hosts come from runbooks and inventories. The command line the run was started with
(`argv` in `run_start`) is left out: a secret parameter given as `-e name=value` would be in it.
"""

from __future__ import annotations

import contextlib
import html
import itertools
import json
import math
import os
import statistics
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from iotex_ops.prom import Prometheus, PrometheusError
from iotex_ops.runbook import events as events_mod
from iotex_ops.runbook.events import RUN_RESULTS, ContinuousFailed, Event, Mark, RollbackStart, RunFailing
from iotex_ops.runbook.model import RunbookError
from iotex_ops.runbook.state import RollbackRun, RunState, fold
from iotex_ops.runbook.store import RunDir

# the two series of the plot; {window} is the rate's range: 5 s, or the query's step when that is coarser
SERIES: dict[str, str] = {
    "finalized_height": "max(iotex_finalized_height)",
    # every node counts the same finalized actions: max, not sum
    "throughput_tps": "max(rate(iotex_actions_finalized_total[{window}s]))",
}
PANELS = (("finalized_height", "finalized height"), ("throughput_tps", "throughput (tx/s)"))
BEFORE_S, AFTER_S = 20.0, 5.0  # the series start before the run and end after it
MAX_POINTS = 1500
PROMETHEUS_TIMEOUT_S = 10
RESULTS = (*(str(r) for r in RUN_RESULTS), "incomplete")


# -- the journal, arranged --


def summarize(state: RunState) -> dict[str, Any]:
    """What a run's journal says (its folded state), arranged for the report (no Prometheus series)."""
    if not state.events:
        raise RunbookError("the journal is empty: there is nothing to report")
    start = state.start
    if start is None:
        raise RunbookError("the journal has no run_start event: it is not the journal of a run")
    t0 = float(start.ts)
    t1 = float(state.end.ts) if state.end is not None else max(t0, float(state.last_ts or t0))

    steps = []
    for r in state.steps.values():
        row: dict[str, Any] = {
            "step": r.step,
            "host": r.host,
            "attempts": r.attempts,
            "started": r.started,
            "ended": r.ended,
            "duration_s": r.duration_s,
            "ok": r.ok,
            "verifications": [c.to_doc() for c in r.verifications],
            "output_tail": list(r.output_tail),
            "error": r.error,
            "failed_attempts": [{"attempt": a.attempt, "error": a.error, "duration_s": a.duration_s} for a in r.failed_attempts],
        }
        if r.host is not None and r.step in state.step_ends:
            row["step_ok"] = state.step_ok(r.step)
        steps.append(row)
    markers = [_marker(ev) for ev in state.moments]
    phases = []
    for i, ph in enumerate(state.phases):
        p_end = float(state.phases[i + 1].ts) if i + 1 < len(state.phases) else t1
        phases.append({"label": ph.label, "step": ph.step, "hosts": list(ph.hosts), "start": float(ph.ts),
                       "end": max(p_end, float(ph.ts))})  # fmt: skip
    f = state.failing
    return {
        "run": {
            "id": start.run_id,
            "runbook": start.runbook,
            "user": start.user,
            "machine": start.machine,
            "inventory": start.inventory,
            "network": start.network,
            "delegates": list(start.delegates),
            "prometheus": start.prometheus,
            "params": dict(start.params),
            "started": _iso(t0),
            "started_unix": t0,
            "ended": _iso(t1),
            "ended_unix": t1,
            "duration_s": round(t1 - t0, 3),
            "result": str(state.result) if state.result is not None else "incomplete",
            "error": state.error,
            "resumed": [{"time": r.ts, "user": r.user, "pid": r.pid, "rollback_phase": r.rollback_phase} for r in state.resumes],
            "stale_locks": [s.previous for s in state.stale_locks],
        },
        "steady_state": [
            {"phase": s.phase, "ok": s.ok, "time": s.ts, "checks": [c.to_doc() for c in s.checks]} for s in state.steady_state
        ],
        "steps": steps,
        "skipped": [{"step": s.step, "host": s.host, "reason": s.reason, "time": s.ts} for s in state.skipped],
        "approvals": [{"step": a.step, "approved": a.approved, "by": a.by, "how": a.how, "time": a.ts} for a in state.approvals],
        "failure": None if f is None else {"step": f.step, "host": f.host, "error": f.error, "time": f.ts},
        "continuous_failed": [
            {"check": c.check, "value": c.value, "detail": c.detail, "time": c.ts} for c in state.continuous_failed
        ],
        "rollbacks": [_rollback(rb) for rb in state.rollbacks.values()],
        "marks": [
            {"time": m.ts, "t": round(m.ts - t0, 3), "step": m.step, "name": m.name, "fields": dict(m.values)}
            for m in state.marks
        ],
        "measures": state.measures,
        "phases": phases,
        "markers": markers,
    }


def _rollback(rb: RollbackRun) -> dict[str, Any]:
    return {
        "step": rb.step,
        "host": rb.host,
        "what": rb.what,
        "started": rb.started,
        "ended": rb.ended,
        "ok": rb.ok,
        "duration_s": rb.duration_s,
        "output_tail": list(rb.output_tail),
        "error": rb.error,
    }


def _marker(ev: Event) -> dict[str, Any]:
    """A moment of the run as a line on the plot."""
    if isinstance(ev, Mark):
        return {"label": ev.name, "start": ev.ts, "kind": "mark"}
    if isinstance(ev, ContinuousFailed):
        return {"label": f"steady state lost: {ev.check}", "start": ev.ts, "kind": "failure"}
    if isinstance(ev, RunFailing):
        return {"label": f"failed: {_where(ev.step, ev.host)}", "start": ev.ts, "kind": "failure"}
    if isinstance(ev, RollbackStart):
        return {"label": "rollback", "start": ev.ts, "kind": "rollback"}
    return {"label": f"ROLLBACK FAILED: {_where(getattr(ev, 'step', None), getattr(ev, 'host', None))}", "start": ev.ts,
            "kind": "failure"}  # fmt: skip


# -- Prometheus --


def range_step(start: float, end: float, max_points: int = MAX_POINTS) -> int:
    """The range query's step in whole seconds: 1 s, coarser when that would give more than `max_points`."""
    return max(1, math.ceil(max(0.0, end - start) / max_points))


def fetch_series(prometheus_url: str | None, start: float, end: float) -> tuple[dict[str, list[list[float]]], str | None]:
    """The plot's series over [start, end] as [[unix_ts, value], ...], and why they are empty if they are.

    Never raises: a Prometheus that is not configured, not reachable or answering an error gives empty series
    and the reason."""
    series: dict[str, list[list[float]]] = {key: [] for key in SERIES}
    if not prometheus_url:
        return series, "no Prometheus URL (the inventory sets no iotex_prometheus_url)"
    step = range_step(start, end)
    errors: list[str] = []
    # one quick retry, not the client's default three with back-off: a report should not wait long
    with Prometheus(prometheus_url, timeout=PROMETHEUS_TIMEOUT_S, retries=1) as prom:
        for key, template in SERIES.items():
            query = template.format(window=max(5, step))
            try:
                series[key] = _points(prom.query_range(query, start, end, f"{step}s"))
            except PrometheusError as exc:
                errors.append(_clip(f"{query}: {exc.reason}"))
                if exc.unreachable:
                    break  # the next query would wait for the same dead server
    if errors:
        return series, f"Prometheus at {prometheus_url}: " + "; ".join(errors)
    if not any(series.values()):
        return series, f"Prometheus at {prometheus_url} has no samples of these series in the run's time range"
    return series, None


def _points(result: Any) -> list[list[float]]:
    """A range query's matrix as one [[t, v], ...] series (several series are merged by max)."""
    merged: dict[float, float] = {}
    for s in result or []:
        for pair in (s or {}).get("values") or []:
            try:
                t, v = float(pair[0]), float(pair[1])
            except (TypeError, ValueError, IndexError):
                continue
            if math.isfinite(t) and math.isfinite(v):
                merged[t] = max(v, merged.get(t, v))
    return [[t, merged[t]] for t in sorted(merged)]


def _clip(text: str, n: int = 400) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


# -- writing --


def write(where: RunDir | Path, prometheus_url: str | None) -> tuple[Path, Path]:
    """Write `report.json` and `report.html` of a run (its directory) beside its journal; returns (html, json)."""
    run = where if isinstance(where, RunDir) else RunDir(Path(where))
    path = run.journal
    events = events_mod.load(path)
    if not events:
        raise RunbookError(f"the journal {path} is empty: there is nothing to report")
    try:
        doc = summarize(fold(events))
    except RunbookError as exc:
        raise RunbookError(f"{path}: {exc}") from None
    lo, hi = doc["run"]["started_unix"] - BEFORE_S, doc["run"]["ended_unix"] + AFTER_S
    series, err = fetch_series(prometheus_url, lo, hi)
    doc["series"] = series
    doc["series_error"] = err
    doc["series_window"] = {"start": lo, "end": hi, "step_s": range_step(lo, hi), "queries": dict(SERIES)}
    json_path, html_path = run.report_json, run.report_html
    _write_atomic(json_path, json.dumps(doc, indent=2, default=str, ensure_ascii=False) + "\n")
    _write_atomic(html_path, render_html(doc))
    return html_path, json_path


def write_rehearsal(
    out_dir: Path,
    drills: list[dict[str, Any]],
    started: float,
    ended: float,
    prometheus_url: str | None,
    extra: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write `rehearsal.json` and `rehearsal.html` (a summary of every drill, one plot of the whole rehearsal
    with each drill as a phase) in `out_dir`; returns (html, json)."""
    lo, hi = started - BEFORE_S, ended + AFTER_S
    series, err = fetch_series(prometheus_url, lo, hi)
    doc: dict[str, Any] = {
        "drills": drills,
        "started": started,
        "ended": ended,
        "duration_s": round(ended - started, 3),
        "series": series,
        "series_error": err,
        **(extra or {}),
    }
    try:
        out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise RunbookError(f"cannot create {out_dir}: {exc}") from None
    json_path, html_path = out_dir / "rehearsal.json", out_dir / "rehearsal.html"
    _write_atomic(json_path, json.dumps(doc, indent=2, default=str, ensure_ascii=False) + "\n")
    _write_atomic(html_path, render_rehearsal_html(drills, started, ended, series, err, extra or {}, out_dir))
    return html_path, json_path


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise RunbookError(f"cannot write {path}: {exc}") from None


# -- the plot --


def svg_plot(
    series: Mapping[str, Sequence[Sequence[float]]],
    phases: Sequence[Mapping[str, Any]],
    width: int = 900,
    height: int = 360,
    *,
    origin: float | None = None,
    error: str | None = None,
) -> str:
    """Two panels (finalized height; throughput in tx/s) over one time axis in seconds since `origin` (default:
    the first phase's start, else the first point), as an inline SVG.

    `series` maps "finalized_height" and "throughput_tps" to [[unix_ts, value], ...]. `phases` are
    {label, start, end} drawn as alternating shaded bands; those with a `kind` ("failure", "rollback",
    "mark") are vertical lines at their `start` instead. An empty series shows "no data from Prometheus:"
    and `error` (the reason)."""
    w, h = float(width), float(height)
    ml, mr, mt, mb, gap = 74.0, 14.0, 36.0, 34.0, 20.0
    pw = max(10.0, w - ml - mr)
    ph = max(10.0, (h - mt - mb - gap) / 2)
    bands = [p for p in phases if p.get("kind") in (None, "", "phase") and _num(p.get("start")) is not None]
    lines = [p for p in phases if p.get("kind") not in (None, "", "phase") and _num(p.get("start")) is not None]
    data = {key: _clean(series.get(key) or []) for key, _ in PANELS}

    times = [pt[0] for pts in data.values() for pt in pts]
    for p in phases:
        for k in ("start", "end"):
            v = _num(p.get(k))
            if v is not None:
                times.append(v)
    if origin is not None:
        times.append(origin)
    else:
        starts = [v for v in (_num(p.get("start")) for p in bands) if v is not None]
        origin = min(starts) if starts else (min(times) if times else 0.0)
    x_lo, x_hi = (min(times) - origin, max(times) - origin) if times else (0.0, 1.0)
    if x_hi - x_lo < 1e-9:
        x_lo, x_hi = x_lo - 1.0, x_hi + 1.0

    def x_of(t: float) -> float:
        return ml + (t - origin - x_lo) / (x_hi - x_lo) * pw

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w:g} {h:g}" width="{w:g}" height="{h:g}" '
        'style="max-width:100%;height:auto;font-family:sans-serif" role="img" '
        'aria-label="finalized height and throughput over the run">',
        f'<rect x="0" y="0" width="{w:g}" height="{h:g}" fill="#fff"/>',
    ]
    tops = [mt, mt + ph + gap]
    for top in tops:
        out.append(f'<rect x="{ml:.1f}" y="{top:.1f}" width="{pw:.1f}" height="{ph:.1f}" fill="#fff" stroke="#bbb"/>')

    # phases: shaded bands in both panels, labels above the top one (two rows, so that neighbours do not collide)
    for i, p in enumerate(bands):
        s = _num(p.get("start")) or 0.0
        e = _num(p.get("end"))
        x0 = _clamp(x_of(s), ml, ml + pw)
        x1 = _clamp(x_of(e if e is not None and e > s else s), ml, ml + pw)
        bw = max(1.0, x1 - x0)
        label = str(p.get("label") or "")
        fill = "#dce8f7" if i % 2 == 0 else "#eef0f3"
        tip = f"{label} ({(s - origin):+.1f} s" + (f" … {(e - origin):+.1f} s)" if e is not None else ")")
        for top in tops:
            out.append(
                f'<rect x="{x0:.1f}" y="{top + 0.5:.1f}" width="{bw:.1f}" height="{ph - 1:.1f}" fill="{fill}" '
                f'fill-opacity="0.85"><title>{_e(tip)}</title></rect>'
            )
        room = int(bw / 6.0)
        if room >= 2:
            y = mt - 22 if i % 2 == 0 else mt - 8
            out.append(
                f'<text x="{x0 + 2:.1f}" y="{y:.1f}" font-size="10" fill="#335">'
                f"{_e(_fit(label, room))}<title>{_e(tip)}</title></text>"
            )
        tick_top = mt - (26 if i % 2 == 0 else 12)
        out.append(f'<line x1="{x0:.1f}" y1="{tick_top:.1f}" x2="{x0:.1f}" y2="{h - mb:.1f}" stroke="#8aa" stroke-width="0.6"/>')

    # x axis: ticks in seconds since the origin, under the bottom panel, grid lines in both
    for v in _ticks(x_lo, x_hi, max(2, int(pw / 90))):
        x = ml + (v - x_lo) / (x_hi - x_lo) * pw
        for top in tops:
            out.append(
                f'<line x1="{x:.1f}" y1="{top:.1f}" x2="{x:.1f}" y2="{top + ph:.1f}" stroke="#000" stroke-opacity="0.08"/>'
            )
        out.append(f'<line x1="{x:.1f}" y1="{tops[1] + ph:.1f}" x2="{x:.1f}" y2="{tops[1] + ph + 4:.1f}" stroke="#555"/>')
        out.append(
            f'<text x="{x:.1f}" y="{tops[1] + ph + 15:.1f}" font-size="10" text-anchor="middle" fill="#333">'
            f"{_e(_fmt(v, x_lo, x_hi))}</text>"
        )
    out.append(
        f'<text x="{ml + pw / 2:.1f}" y="{h - 4:.1f}" font-size="11" text-anchor="middle" fill="#333">seconds since start</text>'
    )

    # the panels' data
    for (key, title), top in zip(PANELS, tops, strict=True):
        pts = data[key]
        if not pts:
            reason = error or "no samples in this time range"
            out.append(
                f'<text x="{ml + pw / 2:.1f}" y="{top + ph / 2:.1f}" font-size="12" text-anchor="middle" fill="#a33" '
                'style="paint-order:stroke;stroke:#fff;stroke-width:4px">'
                f"{_e(_fit('no data from Prometheus: ' + reason, int(pw / 6.5)))}<title>{_e(reason)}</title></text>"
            )
        else:
            vals = [v for _, v in pts]
            lo_v, hi_v = (min(0.0, min(vals)), max(vals)) if key == "throughput_tps" else (min(vals), max(vals))
            if hi_v - lo_v < 1e-9:
                pad = max(1.0, abs(hi_v) * 0.05)
                lo_v, hi_v = (lo_v, hi_v + pad) if key == "throughput_tps" and lo_v == 0 else (lo_v - pad, hi_v + pad)
            yt = _ticks(lo_v, hi_v, max(2, int(ph / 28)))
            step = yt[1] - yt[0] if len(yt) > 1 else (hi_v - lo_v)
            lo_v = min(lo_v, math.floor(lo_v / step) * step) if step > 0 else lo_v
            hi_v = max(hi_v, math.ceil(hi_v / step) * step) if step > 0 else hi_v
            yt = _ticks(lo_v, hi_v, max(2, int(ph / 28)))

            def y_of(v: float, top: float = top, lo_v: float = lo_v, hi_v: float = hi_v) -> float:
                return top + ph - (v - lo_v) / (hi_v - lo_v) * ph

            for v in yt:
                y = y_of(v)
                out.append(
                    f'<line x1="{ml:.1f}" y1="{y:.1f}" x2="{ml + pw:.1f}" y2="{y:.1f}" stroke="#000" stroke-opacity="0.08"/>'
                )
                out.append(f'<line x1="{ml - 4:.1f}" y1="{y:.1f}" x2="{ml:.1f}" y2="{y:.1f}" stroke="#555"/>')
                out.append(
                    f'<text x="{ml - 6:.1f}" y="{y + 3.5:.1f}" font-size="10" text-anchor="end" fill="#333">'
                    f"{_e(_fmt(v, lo_v, hi_v))}</text>"
                )
            color = "#1f5fbf" if key == "finalized_height" else "#2e8b57"
            for seg in _segments(pts):
                if len(seg) == 1:
                    t, v = seg[0]
                    out.append(f'<circle cx="{x_of(t):.1f}" cy="{y_of(v):.1f}" r="2.5" fill="{color}"/>')
                else:
                    d = " ".join(f"{'M' if j == 0 else 'L'}{x_of(t):.1f},{y_of(v):.1f}" for j, (t, v) in enumerate(seg))
                    out.append(f'<path d="{d}" fill="none" stroke="{color}" stroke-width="1.6" stroke-linejoin="round"/>')
        out.append(
            f'<text x="{ml + 6:.1f}" y="{top + 14:.1f}" font-size="11" font-weight="bold" fill="#222" '
            f'style="paint-order:stroke;stroke:#fff;stroke-width:3px">{_e(title)}</text>'
        )

    # failures, rollbacks and marks: vertical lines through both panels, labelled along the line
    colors = {"failure": "#c62828", "rollback": "#e07b00"}
    for p in lines:
        s = _num(p.get("start")) or 0.0
        kind = str(p.get("kind"))
        x = _clamp(x_of(s), ml, ml + pw)
        color = colors.get(kind, "#666")
        dash = "" if kind == "failure" else ' stroke-dasharray="4 3"'
        label = str(p.get("label") or kind)
        tip = f"{label} ({(s - origin):+.1f} s)"
        out.append(
            f'<line x1="{x:.1f}" y1="{mt:.1f}" x2="{x:.1f}" y2="{h - mb:.1f}" stroke="{color}" stroke-width="1.5"{dash}>'
            f"<title>{_e(tip)}</title></line>"
        )
        ty = mt + ph - 4
        out.append(
            f'<text x="{x + 3:.1f}" y="{ty:.1f}" font-size="9" fill="{color}" transform="rotate(-90 {x + 3:.1f} {ty:.1f})" '
            f'style="paint-order:stroke;stroke:#fff;stroke-width:2.5px">'
            f"{_e(_fit(label, int((ph - 8) / 5.2)))}<title>{_e(tip)}</title></text>"
        )
    out.append("</svg>")
    return "\n".join(out)


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v) if math.isfinite(v) else None


def _clean(points: Sequence[Sequence[float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for pt in points:
        if len(pt) >= 2:
            t, v = _num(pt[0]), _num(pt[1])
            if t is not None and v is not None:
                out.append((t, v))
    return sorted(out)


def _segments(points: list[tuple[float, float]]) -> list[list[tuple[float, float]]]:
    """The points split where samples are missing (a gap much longer than the usual spacing)."""
    if len(points) < 3:
        return [points] if points else []
    dts = [b[0] - a[0] for a, b in itertools.pairwise(points)]
    limit = 3 * max(statistics.median(dts), 1e-9)
    segs: list[list[tuple[float, float]]] = [[points[0]]]
    for dt, pt in zip(dts, points[1:], strict=True):
        if dt > limit:
            segs.append([])
        segs[-1].append(pt)
    return segs


def _ticks(lo: float, hi: float, n: int) -> list[float]:
    span = hi - lo
    if not (math.isfinite(span) and span > 0):
        return [lo] if math.isfinite(lo) else []
    raw = span / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if raw <= m * mag * (1 + 1e-9))
    first = math.ceil(lo / step - 1e-9)
    out: list[float] = []
    i = first
    while i * step <= hi + step * 1e-9 and len(out) < 100:
        out.append(round(i * step, 10))
        i += 1
    return out


def _fmt(v: float, lo: float, hi: float) -> str:
    span = abs(hi - lo)
    decimals = 0 if span >= 10 else (1 if span >= 1 else (2 if span >= 0.1 else 3))
    text = f"{v:,.{decimals}f}"
    return "0" if text.strip("-0.,") == "" else text


def _fit(text: str, n: int) -> str:
    n = max(1, n)
    return text if len(text) <= n else text[: max(1, n - 1)] + "…"


def _clamp(v: float, lo: float, hi: float) -> float:
    return min(max(v, lo), hi)


# -- HTML --

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;padding:0 16px;color:#222;max-width:1200px}
h1{font-size:22px;margin:0 0 6px}
h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:14px;margin:14px 0 6px}
table{border-collapse:collapse;font-size:13px;margin:4px 0}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f4f5f7}
table.kv th{width:1%;white-space:nowrap}
.ok{color:#1a7f37;font-weight:600}
.bad{color:#c62828;font-weight:600}
.muted{color:#777}
.badge{display:inline-block;padding:2px 12px;border-radius:12px;color:#fff;font-weight:700;font-size:15px;vertical-align:middle}
.r-passed{background:#1a7f37}
.r-failed{background:#d9480f}
.r-rollback_failed{background:#b00020}
.r-incomplete{background:#777}
.banner{background:#b00020;color:#fff;padding:10px 14px;font-weight:700;font-size:16px;margin:12px 0;border-radius:4px}
.note{background:#fff4e5;border-left:4px solid #e07b00;padding:6px 10px;margin:8px 0}
.error{background:#fdecea;border-left:4px solid #c62828;padding:6px 10px;margin:8px 0;white-space:pre-wrap}
tr.failed td{background:#fdecea}
pre{margin:4px 0;font-size:12px;white-space:pre-wrap;word-break:break-all;background:#f8f8f8;padding:6px;
max-height:320px;overflow:auto}
ul.checks{margin:0;padding-left:16px}
figure{margin:8px 0}
"""


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _val(v: Any, limit: int = 300) -> str:
    """A JSON value as escaped text."""
    if v is None:
        return ""
    text = v if isinstance(v, str) else json.dumps(v, default=str, ensure_ascii=False)
    return _e(_clip(text, limit))


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _utc(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _dur(s: Any) -> str:
    x = _num(s)
    if x is None:
        return "—"
    if x < 60:
        return f"{x:.1f} s"
    if x < 3600:
        return f"{int(x // 60)} min {x % 60:04.1f} s"
    return f"{int(x // 3600)} h {int(x % 3600 // 60):02d} min"


def _rel(ts: Any, t0: float) -> str:
    x = _num(ts)
    return "" if x is None else f"{x - t0:+.1f} s"


def _where(step: Any, host: Any) -> str:
    return f"{step}@{host}" if host else str(step)


def _result_badge(result: Any) -> str:
    r = str(result)
    cls = r if r in RESULTS else "incomplete"
    return f'<span class="badge r-{cls}">{_e(r.replace("_", " ").upper())}</span>'


def _ok(ok: Any, yes: str = "ok", no: str = "failed") -> str:
    if ok is None:
        return '<span class="muted">unfinished</span>'
    return f'<span class="ok">{_e(yes)}</span>' if ok else f'<span class="bad">{_e(no)}</span>'


def _table(headers: Sequence[str], rows: Sequence[tuple[str, Sequence[str]]]) -> str:
    """`rows` are (row class, cells of escaped HTML)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        (f'<tr class="{_e(cls)}">' if cls else "<tr>") + "".join(f"<td>{c}</td>" for c in cells) + "</tr>" for cls, cells in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _kv(pairs: Sequence[tuple[str, str]]) -> str:
    """Key/value rows; values are escaped HTML."""
    return '<table class="kv">' + "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in pairs) + "</table>"


def _checks(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return '<span class="muted">—</span>'
    items = []
    for c in rows:
        mark = '<span class="ok">✓</span>' if c.get("ok") else '<span class="bad">✗</span>'
        value = f" = {_val(c.get('value'))}" if c.get("value") is not None else ""
        detail = f' <span class="muted">{_val(c.get("detail"))}</span>' if c.get("detail") else ""
        items.append(f"<li>{mark} {_e(c.get('check'))}{value}{detail}</li>")
    return '<ul class="checks">' + "".join(items) + "</ul>"


def _tail(lines: Sequence[Any]) -> str:
    if not lines:
        return '<span class="muted">—</span>'
    n = len(lines)
    text = "\n".join(str(x) for x in lines)
    return f"<details><summary>{n} line{'s' if n != 1 else ''}</summary><pre>{_e(text)}</pre></details>"


def _page(title: str, body: Sequence[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def render_html(doc: Mapping[str, Any]) -> str:
    """The run's report page, from the document `write` puts in report.json."""
    run = doc["run"]
    t0 = float(run["started_unix"])
    body: list[str] = []
    body.append(f"<h1>Runbook {_e(run.get('runbook'))} {_result_badge(run.get('result'))}</h1>")
    body.append(f'<div class="muted">run {_e(run.get("id"))}</div>')
    failed_rb = [r for r in doc.get("rollbacks") or [] if r.get("ok") is False]
    if failed_rb:
        what = "; ".join(f"{_where(r.get('step'), r.get('host'))}: {r.get('error') or 'failed'}" for r in failed_rb)
        body.append(f'<div class="banner">ROLLBACK FAILED: {_e(what)}. The network may be left changed: check it by hand.</div>')
    if run.get("error"):
        body.append(f'<div class="error">{_e(run["error"])}</div>')
    delegates = run.get("delegates") or []
    pairs = [
        ("result", _e(run.get("result"))),
        ("duration", _e(_dur(run.get("duration_s")))),
        ("started", _e(_utc(t0))),
        ("ended", _e(_utc(run.get("ended_unix")))),
        ("by", _e(f"{run.get('user')}@{run.get('machine')}")),
        ("inventory", _e(run.get("inventory"))),
        ("network", _e(run.get("network"))),
        ("delegates", _e(f"{len(delegates)}: {', '.join(str(d) for d in delegates)}")),
    ]
    if run.get("prometheus"):
        pairs.append(("Prometheus", _e(run["prometheus"])))
    for r in run.get("resumed") or []:
        pairs.append(
            (
                "resumed",
                _e(f"{_utc(r.get('time'))} by {r.get('user')}" + (" (rollback phase)" if r.get("rollback_phase") else "")),
            )
        )
    for prev in run.get("stale_locks") or []:
        pairs.append(("stale lock taken over", _val(prev)))
    body.append(_kv(pairs))

    params = run.get("params") or {}
    body.append("<h2>Parameters</h2>")
    body.append(_kv([(str(k), _val(v)) for k, v in params.items()]) if params else '<p class="muted">none</p>')

    measures = doc.get("measures") or {}
    body.append("<h2>Measures</h2>")
    body.append(_kv([(str(k), _val(v)) for k, v in measures.items()]) if measures else '<p class="muted">none</p>')

    body.append("<h2>The chain during the run</h2>")
    if doc.get("series_error"):
        body.append(f'<div class="note">{_e(doc["series_error"])}</div>')
    plot_phases = list(doc.get("phases") or []) + list(doc.get("markers") or [])
    body.append(f"<figure>{svg_plot(doc.get('series') or {}, plot_phases, origin=t0, error=doc.get('series_error'))}</figure>")

    body.append("<h2>Steady state</h2>")
    steady = doc.get("steady_state") or []
    if not steady:
        body.append('<p class="muted">the runbook declares no steady-state checks</p>')
    for s in steady:
        body.append(f"<h3>{_e(s.get('phase'))}: {_ok(s.get('ok'), 'holds', 'does not hold')}</h3>")
        body.append(
            _table(
                ["result", "check", "value", "detail"],
                [
                    (
                        "" if c.get("ok") else "failed",
                        [_ok(c.get("ok")), _e(c.get("check")), _val(c.get("value")), _val(c.get("detail"))],
                    )
                    for c in s.get("checks") or []
                ],
            )
        )

    if doc.get("failure") or doc.get("continuous_failed"):
        body.append("<h2>Failure</h2>")
        f = doc.get("failure")
        if f:
            body.append(
                f'<div class="error">{_e(_where(f.get("step"), f.get("host")))} at {_e(_rel(f.get("time"), t0))}: '
                f"{_e(f.get('error'))}</div>"
            )
        for c in doc.get("continuous_failed") or []:
            body.append(
                f'<div class="error">steady state lost at {_e(_rel(c.get("time"), t0))}: {_e(c.get("check"))} '
                f"{_val(c.get('detail') or c.get('value'))}</div>"
            )

    body.append("<h2>Steps</h2>")
    rows = []
    for r in doc.get("steps") or []:
        result = _ok(r.get("ok"))
        if r.get("error"):
            result += f"<br>{_e(r['error'])}"
        for a in r.get("failed_attempts") or []:
            if a.get("error") != r.get("error") or r.get("ok"):
                result += f'<br><span class="muted">attempt {_e(a.get("attempt"))}: {_e(a.get("error"))}</span>'
        started = r.get("started")
        rows.append(
            (
                "failed" if r.get("ok") is False else "",
                [
                    _e(r.get("step")),
                    _e(r.get("host") or "—"),
                    result,
                    _e(r.get("attempts")),
                    _e(_rel(started, t0)),
                    _e(_dur(r.get("duration_s"))),
                    _checks(r.get("verifications") or []),
                    _tail(r.get("output_tail") or []),
                ],
            )
        )
    body.append(
        _table(["step", "host", "result", "attempts", "started", "duration", "verification", "output"], rows)
        if rows
        else '<p class="muted">no step started</p>'
    )
    skipped = doc.get("skipped") or []
    if skipped:
        body.append("<h3>Skipped</h3>")
        body.append(
            _table(
                ["step", "host", "reason"],
                [("", [_e(s.get("step")), _e(s.get("host") or "—"), _e(s.get("reason"))]) for s in skipped],
            )
        )

    approvals = doc.get("approvals") or []
    if approvals:
        body.append("<h2>Approvals</h2>")
        body.append(
            _table(
                ["step", "approved", "by", "how", "at"],
                [
                    (
                        "" if a.get("approved") else "failed",
                        [
                            _e(a.get("step")),
                            _ok(a.get("approved"), "yes", "no"),
                            _e(a.get("by")),
                            _e(a.get("how")),
                            _e(_utc(a.get("time"))),
                        ],
                    )
                    for a in approvals
                ],
            )
        )

    rollbacks = doc.get("rollbacks") or []
    if rollbacks:
        body.append("<h2>Rollbacks</h2>")
        body.append(
            _table(
                ["step", "host", "result", "duration", "what", "error", "output"],
                [
                    (
                        "failed" if r.get("ok") is False else "",
                        [
                            _e(r.get("step")),
                            _e(r.get("host") or "—"),
                            '<span class="bad">ROLLBACK FAILED</span>'
                            if r.get("ok") is False
                            else _ok(r.get("ok"), "rolled back"),
                            _e(_dur(r.get("duration_s"))),
                            _e(r.get("what") or ""),
                            _e(r.get("error") or ""),
                            _tail(r.get("output_tail") or []),
                        ],
                    )
                    for r in rollbacks
                ],
            )
        )

    marks = doc.get("marks") or []
    if marks:
        body.append("<h2>Marks</h2>")
        body.append(
            _table(
                ["at", "step", "name", "values"],
                [
                    (
                        "",
                        [
                            _e(f"+{float(m.get('t') or 0):.1f} s"),
                            _e(m.get("step") or "—"),
                            _e(m.get("name")),
                            "<br>".join(f"{_e(k)} = {_val(v)}" for k, v in (m.get("fields") or {}).items()),
                        ],
                    )
                    for m in marks
                ],
            )
        )
    return _page(f"{run.get('runbook')} {run.get('result')} {run.get('id')}", body)


def _rehearsal_extra(extra: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The rehearsal's lab and background load as readable rows (not raw JSON); other keys as their values."""
    pairs: list[tuple[str, str]] = []
    for k, v in extra.items():
        if k == "lab" and isinstance(v, Mapping):
            started = ", brought up by the rehearsal" if v.get("started_by_rehearsal") else ", already up"
            pairs.append(("lab", _e(f"{v.get('delegates')} delegates on {v.get('mode')} hosts in {v.get('root')}{started}")))
        elif k == "lab_up_s" and isinstance(v, int | float):
            pairs.append(("lab ready in", _e(_dur(v))))
        elif k == "load_tps" and isinstance(v, int | float):
            pairs.append(("background load", _e(f"{v:g} transfers/s offered" if v else "none")))
        elif k == "load" and isinstance(v, Mapping):
            text = f"{v.get('offered', 0):,} offered, {v.get('accepted', 0):,} accepted, {v.get('refused', 0):,} refused"
            reasons = v.get("by_reason") or {}
            if reasons:
                text += " (" + ", ".join(f"{r}: {n:,}" for r, n in sorted(reasons.items())) + ")"
            text += f", {v.get('unavailable', 0):,} not delivered, {v.get('resyncs', 0):,} nonces re-read"
            behind = v.get("behind_s")
            if isinstance(behind, int | float) and behind > 1:
                text += f"; fell behind its rate by up to {behind:.1f} s"
            pairs.append(("load totals", _e(text)))
        elif v is not None:
            pairs.append((str(k), _val(v)))
    return pairs


def _href(target: str, base: Path) -> str:
    p = Path(target)
    try:
        rel = os.path.relpath(p, base)
    except ValueError:  # another drive: no relative path
        return p.resolve().as_uri()
    return quote(Path(rel).as_posix())


def render_rehearsal_html(
    drills: Sequence[Mapping[str, Any]],
    started: float,
    ended: float,
    series: Mapping[str, Sequence[Sequence[float]]],
    series_error: str | None,
    extra: Mapping[str, Any],
    out_dir: Path,
) -> str:
    failed = [d for d in drills if d.get("result") != "passed"]
    overall = (
        "passed" if not failed else ("rollback_failed" if any(d.get("result") == "rollback_failed" for d in drills) else "failed")
    )
    body = [f"<h1>Rehearsal {_result_badge(overall)}</h1>"]
    body.append(f'<div class="muted">{len(drills)} drill{"s" if len(drills) != 1 else ""}, {len(failed)} not passed</div>')
    rb_failed = [d for d in drills if d.get("result") == "rollback_failed"]
    if rb_failed:
        body.append(
            f'<div class="banner">ROLLBACK FAILED in {_e(", ".join(str(d.get("name")) for d in rb_failed))}. '
            "The network may be left changed: check it by hand.</div>"
        )
    pairs = [("started", _e(_utc(started))), ("ended", _e(_utc(ended))), ("duration", _e(_dur(ended - started)))]
    pairs += _rehearsal_extra(extra)
    body.append(_kv(pairs))

    body.append("<h2>Drills</h2>")
    rows = []
    for d in drills:
        link = '<span class="muted">—</span>'
        if d.get("report_html"):
            link = f'<a href="{_e(_href(str(d["report_html"]), out_dir))}">report</a>'
        blocks = d.get("blocks_finalized")
        counts = [_e("—" if d.get(k) is None else f"{d[k]:,}") for k in ("offered_actions", "final_actions", "lost_actions")]
        rows.append(
            (
                "" if d.get("result") == "passed" else "failed",
                [
                    _e(d.get("name")),
                    _result_badge(d.get("result")),
                    _e(_dur(d.get("duration_s"))),
                    _e(_dur(d.get("downtime_s")) if d.get("downtime_s") is not None else "—"),
                    _e("—" if blocks is None else blocks),
                    *counts,
                    _e(d.get("run_id") or "—"),
                    link,
                    _e(d.get("error") or ""),
                ],
            )
        )
    headers = ["drill", "result", "duration", "downtime", "blocks finalized", "offered tx", "final tx", "lost tx"]
    body.append(_table([*headers, "run", "report", "error"], rows))

    body.append("<h2>The chain during the rehearsal</h2>")
    if series_error:
        body.append(f'<div class="note">{_e(series_error)}</div>')
    phases: list[dict[str, Any]] = []
    for d in drills:
        s, e = _num(d.get("started")), _num(d.get("ended"))
        if s is None:
            continue
        phases.append({"label": str(d.get("name")), "start": s, "end": e if e is not None else s})
        if d.get("result") != "passed":
            phases.append({"label": f"{d.get('name')}: {d.get('result')}", "start": e if e is not None else s, "kind": "failure"})
    body.append(f"<figure>{svg_plot(series, phases, origin=started, error=series_error)}</figure>")
    return _page(f"rehearsal {_utc(started)}", body)
