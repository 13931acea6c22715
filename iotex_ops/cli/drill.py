"""`iotex-ops drill history [DRILL]` and `iotex-ops drill scorecard`: how drills went over time, from the run store.

Registered in iotex_ops/cli/__init__.py. Runs are read through `RunStore` (iotex_ops/schedule/history.py);
the schedule periods (for staleness) come from the inventory's drills.yml when there is one.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from iotex_ops import inventory as inv_mod
from iotex_ops.cli.common import OpsGroup, make_console
from iotex_ops.errors import OpsError
from iotex_ops.runbook.store import RunStore, default_state_dir
from iotex_ops.schedule import history as hist
from iotex_ops.schedule.model import drills_file, load
from iotex_ops.schedule.records import all_records
from iotex_ops.schedule.timing import period_s

if TYPE_CHECKING:
    from rich.console import Console

_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
_STATE = click.option("--state-dir", type=click.Path(path_type=Path), help="Where the runs are; default: $IOTEX_OPS_STATE_DIR.")


def _console() -> Console:
    c = make_console()
    if not c.is_terminal:
        c.width = 160
    return c


def _num(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.2f}".rstrip("0").rstrip(".")


def _ts(t: float | None) -> str:
    return "-" if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


@click.group(cls=OpsGroup)
def drill() -> None:
    """How drills went: every run's history, and a scorecard per drill (docs/schedules.md)."""


@drill.command("history")
@click.argument("name", required=False)
@click.option("--last", type=click.IntRange(1, 100_000), default=50, show_default=True, help="At most this many runs.")
@click.option("--days", type=click.FloatRange(min=0, min_open=True), help="Only runs of the last N days.")
@_STATE
@_JSON
def history_cmd(name: str | None, last: int, days: float | None, state_dir: Path | None, as_json: bool) -> None:
    """Runs of drill NAME (or of every runbook), oldest first, with their figures."""
    from rich.markup import escape
    from rich.table import Table

    store = RunStore(state_dir or default_state_dir())
    since = time.time() - days * 86400 if days else None
    rows = hist.history(store, name, since=since, last=last)
    # the scheduler's decisions that started no run (missed, skipped, a gate that failed), with their reasons
    decisions = all_records(store.root, drill=name, since=since)[-last:]
    if as_json:
        doc = {"state_dir": str(store.root), "drill": name, "runs": [r.as_dict() for r in rows],
               "not_started": [d.as_dict() for d in decisions]}  # fmt: skip
        click.echo(json.dumps(doc, indent=2))
        return
    c = _console()
    if decisions:
        nt = Table(title="scheduled runs not started (the scheduler's records)")
        for col in ("schedule", "drill", "scheduled (UTC)", "count", "kind", "reason"):
            nt.add_column(col)
        for d in decisions:
            when = _ts(d.first) + (f" .. {_ts(d.last)}" if d.last != d.first else "")
            nt.add_row(escape(d.schedule), escape(d.drill), when, str(d.count), d.kind, escape(d.reason))
    if not rows:
        c.print(f"no runs{f' of {escape(name)}' if name else ''} under {escape(str(store.runs_dir))}")
        if decisions:
            c.print(nt)
        return
    table = Table(title=f"drill history{f': {escape(name)}' if name else ''}")
    for col in ("run", "drill", "started (UTC)", "result", *hist.FIGURES.values()):
        table.add_column(col)
    for r in rows:
        result = str(r.result) if r.result else "unfinished"
        style = "green" if r.passed else ("yellow" if r.result is None else "red")
        table.add_row(escape(r.run_id), escape(r.runbook), _ts(r.started_at), f"[{style}]{escape(result)}[/{style}]",
                      *(_num(r.figures.get(k)) for k in hist.FIGURES))  # fmt: skip
    c.print(table)
    if decisions:
        c.print(nt)


def _periods(inventory_path: Path | None, now: datetime) -> tuple[dict[str, float | None], str]:
    """Each scheduled drill's period (its most frequent enabled schedule), from the inventory's drills.yml."""
    if inventory_path is None:
        try:
            from iotex_ops.cli.runbook import default_inventory

            inventory_path = default_inventory()
        except OpsError:
            return {}, ""
    path = drills_file(inv_mod.load(inventory_path).path)
    if not path.is_file():
        return {}, ""
    drills, _ = load(path)
    periods: dict[str, float | None] = {}
    for s in drills.schedules:
        if not s.enabled:
            continue
        p = period_s(s, now)
        current = periods.get(s.drill)
        periods[s.drill] = p if current is None else (min(current, p) if p is not None else current)
    return periods, str(path)


@drill.command("scorecard")
@click.option("-i", "--inventory", "inventory_path", type=click.Path(path_type=Path),
              help="Inventory whose drills.yml gives each drill's period (staleness); default: the lab's, if up.")  # fmt: skip
@click.option("--drill", "only", help="Only this drill.")
@click.option(
    "--window", type=click.IntRange(2, 1000), default=hist.TREND_RUNS, show_default=True, help="Runs in the pass rate and trend."
)
@click.option("--html", "html_path", type=click.Path(path_type=Path),
              help="Where to write the HTML scorecard; default: <state>/rehearsals/scorecard.html.")  # fmt: skip
@click.option("--no-html", is_flag=True, help="Do not write the HTML scorecard.")
@_STATE
@_JSON
def scorecard_cmd(inventory_path: Path | None, only: str | None, window: int, html_path: Path | None, no_html: bool,
                  state_dir: Path | None, as_json: bool) -> None:  # fmt: skip
    """Per drill: runs, pass rate, last run, stale or not, median and worst of its figures, trend; and an HTML page with plots."""
    from rich.markup import escape
    from rich.table import Table

    now = time.time()
    store = RunStore(state_dir or default_state_dir())
    periods, source = _periods(inventory_path, datetime.fromtimestamp(now, UTC))
    rows = hist.history(store, only)
    cards = hist.scorecards(rows, now=now, periods={k: v for k, v in periods.items() if only in (None, k)}, window=window)
    if only is not None and not cards:
        cards = [hist.scorecard(only, [], now=now, period_s=periods.get(only), window=window)]
    written: Path | None = None
    if not no_html:
        from iotex_ops.schedule import scorecard_html

        written = scorecard_html.write(
            html_path or store.root / "rehearsals" / "scorecard.html", cards, generated=now, source=source
        )
    if as_json:
        doc: dict[str, Any] = {"state_dir": str(store.root), "schedules": source or None,
                               "html": str(written) if written else None, "drills": [c.as_dict() for c in cards]}  # fmt: skip
        click.echo(json.dumps(doc, indent=2))
        return
    c = _console()
    table = Table(title="drill scorecard")
    for col in ("drill", "runs", "pass rate", "last run (UTC)", "last result", "stale", "score", "median duration",
                "worst downtime", "worst gap", "worst detect", "trend"):  # fmt: skip
        table.add_column(col)
    for card in cards:
        last = card.last_run
        stale = "-" if card.period_s is None else ("[red]stale[/red]" if card.stale else "no")
        table.add_row(
            escape(card.drill), str(card.runs), _num(card.pass_rate), _ts(last.started_at if last else None),
            escape(str(last.result) if last and last.result else ("unfinished" if last else "-")), stale, _num(card.score),
            _num(card.stats["duration_s"].median), _num(card.stats["downtime_s"].worst), _num(card.stats["longest_gap_s"].worst),
            _num(card.stats["time_to_detect_s"].worst), escape(card.trend_direction.get("pass_rate", "n/a")),
        )  # fmt: skip
    c.print(table)
    for card in cards:
        if card.detect:
            per = ", ".join(f"{name} {_num(st.median)}s (worst {_num(st.worst)}s)" for name, st in card.detect.items())
            c.print(f"time to detect, {escape(card.drill)}: {escape(per)}")
    if not cards:
        c.print(f"no runs under {escape(str(store.runs_dir))}")
    if written:
        c.print(f"HTML scorecard with plots: {escape(str(written))}")
