"""A game day: the fault drills one after another on a network, and the game-day report.

`run` waits for a quiet network (every delegate in step, no alert firing on one) before each fault drill,
runs it through the engine (its journal and measures go to the run store like any drill's), and returns
what each did. `report` reads every fault drill's runs back through `RunStore` (never the journals by hand)
into one document: per fault, the last run's scorecard and timeline (fault, alert, page, remediation,
recovery) and where its pages went, the median of each figure and its trend over the past runs.
`write_report` writes it as JSON and as one self-contained HTML page.
"""

from __future__ import annotations

import html
import json
import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from iotex_ops.errors import OpsError
from iotex_ops.faults import core
from iotex_ops.network import Network
from iotex_ops.runbook.store import RunStore

# the fault drills a game day runs by default (fault-partition needs the netns lab: added when asked, or by
# `default_faults` on a network whose delegates are not all on this machine's loopback)
DEFAULT_FAULTS = ("fault-kill", "fault-freeze")
# fault drills with steps of their own (not built by FaultDrill): run when asked (`--fault`), as root where they
# need it; their scorecard rows carry the figures they measure
OTHER_FAULTS = ("fault-disk-full", "fault-corrupt-db", "failover")
ALL_FAULTS = ("fault-kill", "fault-freeze", "fault-partition", *OTHER_FAULTS)
TREND_RUNS = 10
STEADY = 0.1


@dataclass(frozen=True)
class Outcome:
    fault: str
    run_id: str | None
    result: str
    error: str | None
    measures: Mapping[str, Any]

    def as_dict(self) -> dict[str, Any]:
        keys = (*core.FIGURES, "escalated", "victims", "page_route", "stopped_by")
        return {"fault": self.fault, "run_id": self.run_id, "result": self.result, "error": self.error,
                **{k: self.measures.get(k) for k in keys}}  # fmt: skip


def default_faults(net: Network) -> tuple[str, ...]:
    import ipaddress

    def loopback(host: str) -> bool:
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return host == "localhost"

    local = any(loopback(d.spec.ansible_host) for d in net.delegates)
    return DEFAULT_FAULTS if local else (*DEFAULT_FAULTS, "fault-partition")


def wait_quiet(net: Network, timeout: float = 120.0, say: Callable[[str], None] = lambda s: None) -> None:
    """Every delegate answering and in step, no alert firing on a delegate and no page of alertd's still open
    about one (the last fault's have resolved: a fault on a delegate whose page is still open would only be
    appended to that incident, and page nobody)."""
    from iotex_ops.faults import edge
    from iotex_ops.prom import Prometheus

    prom = Prometheus(net.prometheus_url) if net.prometheus_url else None
    alertd = edge.Alertd.of(net)
    names = {d.name for d in net.delegates}
    deadline = time.monotonic() + timeout
    said = False
    while True:
        sick = sorted(n for n in names if net.standing(n).problems(max_lag=3))
        try:
            firing = [a.describe() for a in edge.firing_alerts(prom.query) if a.host in names] if prom else []
        except OpsError as exc:
            firing = [f"Prometheus: {exc}"]
        firing += [f"open page: {p}" for p in edge.open_pages(alertd.state() if alertd else None, names)]
        if not sick and not firing:
            return
        if time.monotonic() > deadline:
            raise OpsError(f"the network is not quiet after {timeout:g}s: delegates not in step {sick}, alerts firing {firing}")
        if not said:
            say(f"waiting for a quiet network: {', '.join(sick + firing)}")
            said = True
        time.sleep(0.5)


def run(
    net: Network,
    store: RunStore,
    faults: Iterable[str],
    params: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    say: Callable[[str], None] = lambda s: None,
    quiet_timeout: float = 120.0,
    stop_on_failure: bool = False,
) -> list[Outcome]:
    """Each fault drill in turn (params per fault name, "*" for all); what each did."""
    from iotex_ops.runbook import Engine, loader

    params = params or {}
    out: list[Outcome] = []
    for name in faults:
        rb = loader.find(name)
        if (rb.lock_scope is None or not rb.fault_alerts) and name not in OTHER_FAULTS:
            raise OpsError(f"{name} is not a fault drill; the fault drills: {', '.join(ALL_FAULTS)}")
        try:
            wait_quiet(net, quiet_timeout, say)
        except OpsError as exc:
            out.append(Outcome(name, None, "not_started", str(exc), {}))
            if stop_on_failure:
                break
            continue
        say(f"{name}: starting")
        p = {**params.get("*", {}), **params.get(name, {})}
        try:
            res = Engine(store, yes=True, report=False).run(rb, net, p)
        except OpsError as exc:  # refused before anything ran (preflight, parameters, lock)
            out.append(Outcome(name, None, "refused", str(exc), {}))
            say(f"{name}: refused: {exc}")
            if stop_on_failure:
                break
            continue
        o = Outcome(name, res.run_id, str(res.result), str(res.error) if res.error else None, dict(res.measures))
        out.append(o)
        say(f"{name}: {o.result}" + (f": {o.error}" if o.error else ""))
        if stop_on_failure and o.result != "passed":
            break
    return out


# -- the report -----------------------------------------------------------------------------------------


def runs(store: RunStore, fault: str, last: int | None = None) -> list[dict[str, Any]]:
    """A fault drill's runs, oldest first: id, start, result, its measures (figures, timeline, pages)."""
    rows = []
    for s in store.runs(runbook=fault, last=last):
        try:
            m = dict(store.state(s.run_id).measures)
        except OpsError:
            continue
        rows.append({"run_id": s.run_id, "started_at": s.started_at, "result": s.status, "error": s.error, "measures": m})
    return rows


def direction(values: list[float]) -> str:
    """improving | worsening | steady over the values in time order (larger is worse); n/a under 4 values."""
    if len(values) < 4:
        return "n/a"
    half = len(values) // 2
    old, new = statistics.mean(values[:half]), statistics.mean(values[-half:])
    if abs(new - old) / max(abs(old), abs(new), 1e-9) < STEADY:
        return "steady"
    return "worsening" if new > old else "improving"


def summarize(fault: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One fault's section of the report (pure)."""
    finished = [r for r in rows if r["result"] != "unfinished"]
    trend = finished[-TREND_RUNS:]
    figures: dict[str, Any] = {}
    for k in core.FIGURES:
        vals = [r["measures"].get(k) for r in trend]
        nums = [float(v) for v in vals if isinstance(v, int | float) and not isinstance(v, bool)]
        figures[k] = {"median": core.median(nums), "worst": max(nums) if nums else None, "runs": len(nums),
                      "trend": vals, "direction": direction(nums), "target": core.TARGETS.get(k)}  # fmt: skip
    last = finished[-1] if finished else None
    return {
        "fault": fault,
        "runs": len(rows),
        "passed": sum(r["result"] == "passed" for r in finished),
        "escalations": sum(bool(r["measures"].get("escalated")) for r in finished),
        "figures": figures,
        "trend_runs": [{"run_id": r["run_id"], "started_at": r["started_at"], "result": r["result"]} for r in trend],
        "last": None
        if last is None
        else {
            "run_id": last["run_id"],
            "result": last["result"],
            "error": last["error"],
            "victims": last["measures"].get("victims"),
            "seed": last["measures"].get("seed"),
            "timeline": last["measures"].get("timeline") or [],
            "pages": last["measures"].get("pages") or [],
            "page_route": last["measures"].get("page_route"),
            "stopped_by": last["measures"].get("stopped_by"),
            **{k: last["measures"].get(k) for k in (*core.FIGURES, "escalated")},
        },
    }


def report(store: RunStore, faults: Iterable[str] = ALL_FAULTS, now: float | None = None) -> dict[str, Any]:
    sections = [summarize(f, runs(store, f)) for f in faults]
    return {
        "generated_at": time.time() if now is None else now,
        "state_dir": str(store.root),
        "targets": dict(core.TARGETS),
        "faults": [s for s in sections if s["runs"]],
    }


def _e(v: object) -> str:
    return html.escape(str(v), quote=True)


def _n(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


def _ts(t: float | None) -> str:
    return "-" if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


CSS = """body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}th{background:#f4f4f4}.ok{color:#080}.bad{color:#b00}
.bar{display:inline-block;height:.8em;background:#68a}"""


def _head(*cols: str) -> str:
    return "<table><tr>" + "".join(f"<th>{_e(c)}</th>" for c in cols) + "</tr>"


def html_page(doc: Mapping[str, Any]) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>game day report</title><style>{CSS}</style></head><body>",
             f"<h1>Game day report</h1><p>generated {_e(_ts(doc['generated_at']))} from {_e(doc['state_dir'])}; "
             f"targets: detect &le; {_n(doc['targets'].get('time_to_detect_s'))} s, recover &le; "
             f"{_n(doc['targets'].get('time_to_recover_s'))} s</p>"]  # fmt: skip
    if not doc["faults"]:
        parts.append("<p>No fault drill has run yet.</p>")
    for s in doc["faults"]:
        parts.append(f"<h2>{_e(s['fault'])}</h2><p>{s['runs']} run(s), {s['passed']} passed, {s['escalations']} escalated</p>")
        last = s["last"]
        if last:
            cls = "ok" if last["result"] == "passed" else "bad"
            parts.append(
                f"<h3>last run {_e(last['run_id'])}: <span class='{cls}'>{_e(last['result'])}</span></h3>"
                f"<p>victim(s) {_e(', '.join(last['victims'] or []))} (seed {_e(last['seed'])}); pages: {_e(last['page_route'])}"
                + (f"; stopped by: {_e(last['stopped_by'])}" if last.get("stopped_by") else "")
                + (f"; error: {_e(last['error'])}" if last.get("error") else "")
                + "</p><table><tr><th>moment</th><th>after (s)</th><th>at</th><th></th></tr>"
            )
            span = max([float(r.get("after_s") or 0) for r in last["timeline"]] + [1.0])
            for r in last["timeline"]:
                w = int(300 * float(r.get("after_s") or 0) / span)
                parts.append(f"<tr><td>{_e(r['what'])}</td><td>{_n(r.get('after_s'))}</td><td>{_e(_ts(r.get('at')))}</td>"
                             f"<td><span class='bar' style='width:{w}px'></span></td></tr>")  # fmt: skip
            parts.append("</table>")
            if last["pages"]:
                parts.append(_head("page", "after (s)", "summary", "drill route", "escalation"))
                t0 = next((r["at"] for r in last["timeline"] if r["key"] == "fault"), None)
                for p in last["pages"]:
                    after = None if t0 is None else round(float(p["at"]) - float(t0), 3)
                    parts.append(f"<tr><td>{_e(p.get('id'))}</td><td>{_n(after)}</td><td>{_e(p.get('summary'))}</td>"
                                 f"<td>{_n(p.get('drill_route'))}</td><td>{_n(p.get('escalation'))}</td></tr>")  # fmt: skip
                parts.append("</table>")
        parts.append(_head("figure", "last", "median", "worst", "target", "trend (oldest first)", "direction"))
        for k, label in core.FIGURES.items():
            f = s["figures"][k]
            lastv = last.get(k) if last else None
            trend = " ".join(_n(v) for v in f["trend"])
            cells = (label, _n(lastv), _n(f["median"]), _n(f["worst"]), _n(f["target"]), trend, f["direction"])
            parts.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(doc: Mapping[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    j, h = out_dir / "gameday.json", out_dir / "gameday.html"
    j.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    h.write_text(html_page(doc))
    return j, h
