"""The HTML scorecard: one self-contained page (inline CSS and SVG, no JavaScript, nothing external), with a
table of every drill's scorecard and, per drill, a plot of each of its figures over time drawn by matplotlib
(passed runs as dots, failed ones as crosses; unfinished runs are left out). Written beside the rehearsals' reports
(`<state>/rehearsals/scorecard.html`) by `iotex-ops drill scorecard`.

matplotlib is used through its object API (`matplotlib.figure.Figure` saved as SVG): no pyplot,
no global figure state, no display. Every text from a journal is escaped.
"""

from __future__ import annotations

import html
import io
import os
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from iotex_ops.schedule.history import FIGURES, Scorecard


def _e(v: object) -> str:
    return html.escape(str(v), quote=True)


def _num(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}".rstrip("0").rstrip(".") if isinstance(v, float) else str(v)


def _ts(t: float | None) -> str:
    return "-" if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _days(s: float | None) -> str:
    return "-" if s is None else f"{s / 86400:.1f} d"


def plot_svg(card: Scorecard) -> str:
    """One SVG of the drill's figures over time, every run (one small plot per figure the runs have), or ""."""
    done = [r for r in card.history if r.result is not None]  # a run without an end has no final figures
    shown = [k for k in FIGURES if any(r.figures.get(k) is not None for r in done)]
    if not shown:
        return ""
    from matplotlib import rc_context  # imported when needed: ~0.3 s, and a font cache to build on first use
    from matplotlib.figure import Figure

    with rc_context({"svg.fonttype": "none", "svg.hashsalt": "iotex-ops", "font.size": 8}):
        fig = Figure(figsize=(3.2 * len(shown), 2.4), layout="constrained")
        axes = fig.subplots(1, len(shown), squeeze=False)[0]
        for ax, key in zip(axes, shown, strict=True):
            rows = [r for r in done if r.figures.get(key) is not None]
            xs = [datetime.fromtimestamp(r.started_at, UTC) for r in rows]
            ys = [float(r.figures[key] or 0.0) for r in rows]
            ax.plot(xs, ys, color="#888888", linewidth=0.8)
            ok = [(x, y) for x, y, r in zip(xs, ys, rows, strict=True) if r.passed]
            bad = [(x, y) for x, y, r in zip(xs, ys, rows, strict=True) if not r.passed]
            if ok:
                ax.scatter([p[0] for p in ok], [p[1] for p in ok], color="#2b8a3e", s=14, label="passed", zorder=3)
            if bad:
                ax.scatter([p[0] for p in bad], [p[1] for p in bad], color="#c92a2a", marker="x", s=20, label="failed", zorder=3)
            ax.set_title(FIGURES[key])
            ax.tick_params(axis="x", labelrotation=30)
            ax.grid(alpha=0.3)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": "iotex-ops"})
    text = buf.getvalue()
    return text[text.index("<svg") :]  # inline: no XML declaration or doctype


def render(cards: Sequence[Scorecard], *, generated: float, source: str = "") -> str:
    rows = []
    for c in cards:
        last = c.last_run
        verdict = "stale" if c.stale else "fresh"
        rows.append(
            "<tr>"
            f"<td><a href='#{_e(c.drill)}'>{_e(c.drill)}</a></td><td>{c.runs}</td><td>{_num(c.pass_rate)}</td>"
            f"<td>{_e(_ts(last.started_at if last else None))}</td>"
            f"<td>{_e(str(last.result) if last and last.result else '-')}</td>"
            f"<td class='{verdict}'>{verdict}</td><td>{_days(c.period_s)}</td><td><b>{_num(c.score)}</b></td>"
            "</tr>"
        )
    body = [
        f"<h1>Drill scorecard</h1><p>{_e(_ts(generated))}{(' · ' + _e(source)) if source else ''}</p>",
        "<table><tr><th>drill</th><th>runs</th><th>pass rate</th><th>last run</th><th>last result</th><th>freshness</th>"
        "<th>period</th><th>score</th></tr>" + "".join(rows) + "</table>",
    ]
    for c in cards:
        body.append(f"<h2 id='{_e(c.drill)}'>{_e(c.drill)}</h2>")
        stat_rows = "".join(
            f"<tr><td>{_e(label)}</td><td>{_num(c.stats[k].median)}</td><td>{_num(c.stats[k].worst)}</td>"
            f"<td>{c.stats[k].runs}</td><td>{_e(c.trend_direction.get(k, 'n/a'))}</td></tr>"
            for k, label in FIGURES.items()
        )
        body.append(
            "<table><tr><th>figure</th><th>median</th><th>worst</th><th>runs</th><th>trend</th></tr>" + stat_rows + "</table>"
        )
        svg = plot_svg(c)
        body.append(f"<figure>{svg}</figure>" if svg else "<p>no figures recorded yet</p>")
        trend = "".join(
            f"<tr><td>{_e(r.run_id)}</td><td>{_e(_ts(r.started_at))}</td>"
            f"<td>{_e(str(r.result) if r.result else 'unfinished')}</td>"
            + "".join(f"<td>{_num(r.figures.get(k))}</td>" for k in FIGURES)
            + "</tr>"
            for r in reversed(c.trend)
        )
        cols = "".join(f"<th>{_e(label)}</th>" for label in FIGURES.values())
        body.append(f"<table><tr><th>run</th><th>started</th><th>result</th>{cols}</tr>{trend}</table>")
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}.stale{color:#c92a2a}.fresh{color:#2b8a3e}"
        "figure{margin:0}svg{max-width:100%;height:auto}"
    )
    head = f"<meta charset='utf-8'><title>Drill scorecard</title><style>{style}</style>"
    return f"<!doctype html><html><head>{head}</head><body>{''.join(body)}</body></html>"


def write(path: Path, cards: Sequence[Scorecard], *, generated: float, source: str = "") -> Path:
    """Write the page atomically (a reader never sees half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".scorecard-", suffix=".html")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(render(cards, generated=generated, source=source))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
