"""What a load run reports, computed from what it recorded: pure arithmetic and a self-contained HTML page.

`summarize(rec)` turns a `Recording` (what was offered and when, each node's answers, the finalized blocks
the observer read, samples taken every second, the nodes' CPU and memory) into the report's document:

- offered, accepted, refused by reason (`no_answer`: no node answered), lost (accepted, never seen final);
- finalized TPS from the chain: the load's actions in its finalized blocks over the span of their timestamps
  (the first loaded block excluded, as its actions were offered before it began), never from what was sent;
- drop rate: the share of offered actions that did not become final;
- submit -> final latency (offered at -> the observer saw its block finalized) p50/p95/p99/max;
- block interval p50/max (block timestamps); per-node CPU and RSS; the seed, the nodes' versions.

`render_html(doc)` draws offered vs finalized per second and latency over time as inline SVG (no JavaScript,
nothing external). Nothing here does I/O but `write`.
"""

from __future__ import annotations

import html
import itertools
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

QUANTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))


@dataclass(frozen=True)
class BlockSeen:
    height: int
    timestamp_ms: int
    actions: int  # every action in the block
    ours: int  # the load's actions in it
    seen_at: float  # when the observer read it finalized (unix s)


@dataclass
class Recording:
    """What a load run saw; `summarize` makes the report from it."""

    tps: float
    duration_s: float
    seed: int
    started: float  # unix s, when the first action was offered
    ended: float = 0.0  # when the last was offered
    offered: int = 0
    accepted: int = 0
    refused: dict[str, int] = field(default_factory=dict)  # by the node's code; "no_answer" when none answered
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (offered at, seconds to final) per final action
    blocks: list[BlockSeen] = field(default_factory=list)
    samples: list[tuple[float, int, int, int]] = field(default_factory=list)  # (t, offered, accepted, finalized) cumulative
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {url, version, cpu_percent, rss_mib, ...}
    meta: dict[str, Any] = field(default_factory=dict)  # accounts, mix, batch, drained, prometheus...
    answers: list[float] = field(default_factory=list)  # seconds from offered to the node's answer, per request

    @property
    def finalized(self) -> int:
        return len(self.latencies)


def percentile(xs: Sequence[float], q: float) -> float | None:
    """The nearest-rank q-quantile (q in [0, 1]) of `xs`; None when empty."""
    if not xs:
        return None
    ordered = sorted(xs)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(len(ordered), rank) - 1]


def latency_summary(latencies: Sequence[float]) -> dict[str, float | None]:
    """p50, p95, p99 and max of the latencies (seconds), rounded to the millisecond; None when there are none.
    Ordered by construction: p50 <= p95 <= p99 <= max."""
    out: dict[str, float | None] = {}
    ordered = sorted(latencies)
    for name, q in QUANTILES:
        v = percentile(ordered, q)
        out[name] = None if v is None else round(v, 3)
    out["max"] = round(ordered[-1], 3) if ordered else None
    return out


def finalized_tps(blocks: Sequence[BlockSeen]) -> float | None:
    """The load's actions per second in the chain's blocks: those of the loaded blocks after the first, over the
    time from the first loaded block to the last (block timestamps). None with fewer than two loaded blocks."""
    loaded = [b for b in blocks if b.ours > 0]
    if len(loaded) < 2:
        return None
    span = (loaded[-1].timestamp_ms - loaded[0].timestamp_ms) / 1000.0
    if span <= 0:
        return None
    return sum(b.ours for b in loaded[1:]) / span


def block_intervals(blocks: Sequence[BlockSeen]) -> list[float]:
    ordered = sorted(blocks, key=lambda b: b.height)
    return [(b.timestamp_ms - a.timestamp_ms) / 1000.0 for a, b in itertools.pairwise(ordered) if b.height == a.height + 1]


def per_second(samples: Sequence[tuple[float, int, int, int]]) -> dict[str, list[list[float]]]:
    """Rates between consecutive cumulative samples: offered and finalized actions per second over time."""
    offered: list[list[float]] = []
    finalized: list[list[float]] = []
    for a, b in itertools.pairwise(samples):
        dt = b[0] - a[0]
        if dt <= 0:
            continue
        offered.append([b[0], (b[1] - a[1]) / dt])
        finalized.append([b[0], (b[3] - a[3]) / dt])
    return {"offered_tps": offered, "finalized_tps": finalized}


def latency_over_time(latencies: Sequence[tuple[float, float]], bucket_s: float = 1.0) -> dict[str, list[list[float]]]:
    """p50 and p99 of the latencies of the actions offered in each `bucket_s` (by offer time)."""
    buckets: dict[int, list[float]] = {}
    for t, lat in latencies:
        buckets.setdefault(int(t // bucket_s), []).append(lat)
    p50, p99 = [], []
    for k in sorted(buckets):
        t = (k + 0.5) * bucket_s
        p50.append([t, percentile(buckets[k], 0.5) or 0.0])
        p99.append([t, percentile(buckets[k], 0.99) or 0.0])
    return {"latency_p50_s": p50, "latency_p99_s": p99}


def summarize(rec: Recording) -> dict[str, Any]:
    """The report's document (JSON-ready). Invariants: finalized <= accepted <= offered; refused is the sum of
    refused_by_reason; accepted + refused <= offered (the rest was never answered before the run ended)."""
    refused = sum(rec.refused.values())
    lat = latency_summary([x for _, x in rec.latencies])
    ftps = finalized_tps(rec.blocks)
    intervals = block_intervals(rec.blocks)
    lost = max(0, rec.accepted - rec.finalized)
    offered_s = max(rec.ended - rec.started, 1e-9)
    return {
        "kind": "iotex-ops load run",
        "seed": rec.seed,
        "target_tps": rec.tps,
        "duration_s": rec.duration_s,
        "started": rec.started,
        "ended": rec.ended,
        "offered": rec.offered,
        "offered_tps": round(rec.offered / offered_s, 1) if rec.offered else 0.0,
        "accepted": rec.accepted,
        "refused": refused,
        "refused_by_reason": dict(sorted(rec.refused.items())),
        "unanswered": max(0, rec.offered - rec.accepted - refused),
        "finalized": rec.finalized,
        "lost": lost,
        "finalized_tps": None if ftps is None else round(ftps, 1),
        "drop_rate": round(1 - rec.finalized / rec.offered, 4) if rec.offered else 0.0,
        "latency_s": lat,
        "block_interval_s": {
            "p50": None if not intervals else round(percentile(intervals, 0.5) or 0.0, 3),
            "max": None if not intervals else round(max(intervals), 3),
        },
        # where latency goes: waiting for the node's answer (queue + admission), and the observer's own lag behind
        # the blocks' timestamps (its process starved of CPU shows here, not in the chain)
        "answer_s": latency_summary(rec.answers),
        "observer_lag_s": latency_summary([b.seen_at - b.timestamp_ms / 1000 for b in rec.blocks]),
        "blocks": len(rec.blocks),
        "blocks_loaded": sum(1 for b in rec.blocks if b.ours > 0),
        "max_actions_per_block": max((b.actions for b in rec.blocks), default=0),
        "nodes": rec.nodes,
        "versions": sorted({str(n.get("version")) for n in rec.nodes.values() if n.get("version")}),
        **rec.meta,
        "series": {
            **per_second(rec.samples),
            **latency_over_time([(t - rec.started, x) for t, x in rec.latencies]),
        },
    }


def consistency_problems(doc: Mapping[str, Any]) -> list[str]:
    """What is inconsistent in a report (empty: nothing). Used by the tests and by the command, which says so."""
    problems = []
    offered, accepted, finalized = doc.get("offered", 0), doc.get("accepted", 0), doc.get("finalized", 0)
    if not finalized <= accepted <= offered:
        problems.append(f"finalized {finalized} <= accepted {accepted} <= offered {offered} does not hold")
    if doc.get("refused") != sum((doc.get("refused_by_reason") or {}).values()):
        problems.append("refused is not the sum of refused_by_reason")
    if accepted + (doc.get("refused") or 0) > offered:
        problems.append("more answers than actions offered")
    lat = doc.get("latency_s") or {}
    vals = [lat.get(k) for k in ("p50", "p95", "p99", "max")]
    if all(v is not None for v in vals) and vals != sorted(vals):  # type: ignore[type-var]
        problems.append(f"latency percentiles out of order: {vals}")
    return problems


# -- the page --


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:,.3f}{unit}" if abs(v) < 100 else f"{v:,.1f}{unit}"
    if isinstance(v, int):
        return f"{v:,}{unit}"
    return f"{v}{unit}"


def svg_lines(
    series: Mapping[str, Sequence[Sequence[float]]],
    *,
    title: str,
    y_label: str,
    colors: Mapping[str, str],
    width: int = 860,
    height: int = 260,
) -> str:
    """Lines of (x, y) points on one pair of axes, inline SVG with a legend; x in seconds."""
    ml, mr, mt, mb = 64.0, 14.0, 30.0, 34.0
    pw, ph = width - ml - mr, height - mt - mb
    pts = [(float(x), float(y)) for s in series.values() for x, y in s if math.isfinite(x) and math.isfinite(y)]
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'style="max-width:100%;height:auto;font-family:sans-serif" role="img" aria-label="{_e(title)}">',
        f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="#fff" stroke="#bbb"/>',
        f'<text x="{ml}" y="18" font-size="12" font-weight="bold">{_e(title)}</text>',
    ]
    if not pts:
        out.append(f'<text x="{ml + pw / 2}" y="{mt + ph / 2}" font-size="12" text-anchor="middle" fill="#a33">no data</text>')
        out.append("</svg>")
        return "\n".join(out)
    x_lo, x_hi = min(p[0] for p in pts), max(p[0] for p in pts)
    y_hi = max(max(p[1] for p in pts), 1e-9) * 1.08
    if x_hi - x_lo < 1e-9:
        x_lo, x_hi = x_lo - 1, x_hi + 1

    def xy(x: float, y: float) -> str:
        return f"{ml + (x - x_lo) / (x_hi - x_lo) * pw:.1f},{mt + ph - y / y_hi * ph:.1f}"

    for i in range(5):
        v = y_hi * i / 4
        y = mt + ph - v / y_hi * ph
        out.append(f'<line x1="{ml}" y1="{y:.1f}" x2="{ml + pw}" y2="{y:.1f}" stroke="#000" stroke-opacity="0.08"/>')
        out.append(f'<text x="{ml - 6}" y="{y + 3.5:.1f}" font-size="10" text-anchor="end">{_e(_tick(v))}</text>')
    for i in range(6):
        v = x_lo + (x_hi - x_lo) * i / 5
        x = ml + (v - x_lo) / (x_hi - x_lo) * pw
        out.append(f'<text x="{x:.1f}" y="{mt + ph + 14}" font-size="10" text-anchor="middle">{_e(_tick(v))}</text>')
    out.append(
        f'<text x="{ml + pw / 2}" y="{height - 4}" font-size="11" text-anchor="middle">seconds since the load began</text>'
    )
    out.append(
        f'<text x="12" y="{mt + ph / 2}" font-size="11" text-anchor="middle" transform="rotate(-90 12 {mt + ph / 2})">'
        f"{_e(y_label)}</text>"
    )
    lx = ml + 8.0
    for name, s in series.items():
        color = colors.get(name, "#555")
        good = [(float(x), float(y)) for x, y in s if math.isfinite(x) and math.isfinite(y)]
        if good:
            d = " ".join(("M" if i == 0 else "L") + xy(x, y) for i, (x, y) in enumerate(good))
            out.append(f'<path d="{d}" fill="none" stroke="{color}" stroke-width="1.6"/>')
        out.append(f'<rect x="{lx:.1f}" y="{mt + 6}" width="10" height="3" fill="{color}"/>')
        out.append(f'<text x="{lx + 14:.1f}" y="{mt + 11}" font-size="10">{_e(name)}</text>')
        lx += 14 + 6.2 * len(name) + 14
    out.append("</svg>")
    return "\n".join(out)


def _tick(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 10 else f"{v:.2f}".rstrip("0").rstrip(".")


_CSS = (
    "body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:.5em 0}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f3f3f3}.muted{color:#777}"
    ".bad{color:#b00;font-weight:bold}"
)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(doc: Mapping[str, Any]) -> str:
    lat = doc.get("latency_s") or {}
    bi = doc.get("block_interval_s") or {}
    started = doc.get("started") or 0.0
    series = doc.get("series") or {}

    def rel(points: Sequence[Sequence[float]]) -> list[list[float]]:
        return [[p[0] - started, p[1]] for p in points]

    summary = [
        ("target rate", _fmt(doc.get("target_tps"), " /s") + f" for {_fmt(doc.get('duration_s'), ' s')}"),
        ("offered", f"{_fmt(doc.get('offered'))} ({_fmt(doc.get('offered_tps'), ' /s')})"),
        ("accepted", _fmt(doc.get("accepted"))),
        ("refused", _fmt(doc.get("refused"))),
        ("finalized", _fmt(doc.get("finalized"))),
        ("lost (accepted, not final)", _fmt(doc.get("lost"))),
        ("finalized TPS (from the chain)", _fmt(doc.get("finalized_tps"))),
        ("drop rate", _fmt(doc.get("drop_rate"))),
        ("submit→final p50 / p95 / p99 / max", " / ".join(_fmt(lat.get(k), " s") for k in ("p50", "p95", "p99", "max"))),
        ("block interval p50 / max", f"{_fmt(bi.get('p50'), ' s')} / {_fmt(bi.get('max'), ' s')}"),
        ("offered→answer p50 / p99", " / ".join(_fmt((doc.get("answer_s") or {}).get(k), " s") for k in ("p50", "p99"))),
        ("observer lag p50 / max", " / ".join(_fmt((doc.get("observer_lag_s") or {}).get(k), " s") for k in ("p50", "max"))),
        ("blocks (loaded)", f"{_fmt(doc.get('blocks'))} ({_fmt(doc.get('blocks_loaded'))})"),
        ("seed", _fmt(doc.get("seed"))),
        ("accounts", _fmt(doc.get("accounts"))),
        ("mix", ", ".join(f"{k}={v}" for k, v in (doc.get("mix") or {}).items())),
        ("node versions", ", ".join(doc.get("versions") or []) or "—"),
        ("CPU and RSS from", str(doc.get("resources_from") or "—")),
    ]
    problems = doc.get("problems") or []
    body = [f"<h1>Load run: {_fmt(doc.get('target_tps'))} TPS offered, {_fmt(doc.get('finalized_tps'))} finalized</h1>"]
    if problems:
        body.append("".join(f'<p class="bad">{_e(p)}</p>' for p in problems))
    body.append(_table(["figure", "value"], [(_e(k), _e(v)) for k, v in summary]))
    by_reason = doc.get("refused_by_reason") or {}
    if by_reason:
        body.append("<h2>Refused, by reason</h2>")
        body.append(_table(["reason", "actions"], [(_e(k), _fmt(v)) for k, v in by_reason.items()]))
    body.append("<h2>Nodes</h2>")
    node_rows = []
    for name, n in (doc.get("nodes") or {}).items():
        node_rows.append(
            (
                _e(name),
                _e(n.get("url", "")),
                _e(n.get("version") or "—"),
                _fmt(n.get("cpu_percent"), " %"),
                _fmt(n.get("rss_mib"), " MiB"),
                _fmt(n.get("rss_peak_mib"), " MiB"),
            )
        )
    body.append(_table(["node", "API", "version", "CPU (% of one core)", "RSS at end", "RSS peak"], node_rows))
    body.append("<h2>Offered vs finalized</h2>")
    body.append(
        svg_lines(
            {"offered": rel(series.get("offered_tps") or []), "finalized": rel(series.get("finalized_tps") or [])},
            title="actions per second",
            y_label="actions/s",
            colors={"offered": "#1f5fbf", "finalized": "#2e8b57"},
        )
    )
    body.append("<h2>Submit → final latency over time</h2>")
    body.append(
        svg_lines(
            {"p50": series.get("latency_p50_s") or [], "p99": series.get("latency_p99_s") or []},
            title="latency of the actions offered in each second",
            y_label="seconds",
            colors={"p50": "#2e8b57", "p99": "#c62828"},
        )
    )
    body.append(
        '<p class="muted">Latency: from the moment an action was offered to the moment the observer (polling one node) saw its '
        "block finalized. Finalized TPS: the load's actions in the chain's blocks over the span of their timestamps.</p>"
    )
    title = f"load run {doc.get('target_tps')} TPS"
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{_e(title)}</title><style>{_CSS}</style></head>'
        f"<body>{''.join(body)}</body></html>\n"
    )


def write(out_dir: Path, doc: Mapping[str, Any]) -> tuple[Path, Path]:
    """`load.json` and `load.html` in `out_dir` (made if missing); returns (json, html)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    js, page = out_dir / "load.json", out_dir / "load.html"
    for path, text in ((js, json.dumps(doc, indent=2, default=str) + "\n"), (page, render_html(doc))):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return js, page
