"""`iotex-ops gameday run` and `iotex-ops gameday report`: the fault drills one after another, and the game-day
report (HTML + JSON) with a timeline per fault and each figure's trend over past runs. The logic is
iotex_ops/faults/gameday.py; docs/gameday.md. Registered in iotex_ops/cli/__init__.py (LAZY_GROUPS)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from iotex_ops.cli.common import OpsGroup, make_console

_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
_STATE = click.option("--state-dir", type=click.Path(path_type=Path), help="Where the runs are; default: $IOTEX_OPS_STATE_DIR.")


def _num(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return f"{v:.2f}".rstrip("0").rstrip(".") if isinstance(v, float) else str(v)


@click.group(cls=OpsGroup)
def gameday() -> None:
    """Game days: fault drills that test alert -> page -> remediation, and their report (docs/gameday.md)."""


@gameday.command("run")
@click.option("-i", "--inventory", "inventory_path", type=click.Path(path_type=Path), help="Default: the lab's inventory.")
@click.option(
    "--fault", "faults", multiple=True, help="A fault drill (repeatable; default: kill and freeze, + partition off loopback)."
)
@click.option(
    "-e", "--extra", "extra", multiple=True, metavar="KEY=VALUE", help="A parameter for every fault drill (repeatable)."
)
@click.option("--seed", type=click.IntRange(min=1), help="Seed of the first drill's victim draw (the next ones: +1, +2...).")
@click.option("--stop-on-failure", is_flag=True, help="Stop at the first fault drill that does not pass.")
@click.option("--report-dir", type=click.Path(path_type=Path), help="Where to write the report; default: <state>/gameday/.")
@_STATE
@_JSON
def run_cmd(
    inventory_path: Path | None,
    faults: tuple[str, ...],
    extra: tuple[str, ...],
    seed: int | None,
    stop_on_failure: bool,
    report_dir: Path | None,
    state_dir: Path | None,
    as_json: bool,
) -> None:
    """Run the fault drills one after another on the inventory's (default: the lab's) opted-in delegates."""
    from iotex_ops import network
    from iotex_ops.cli.runbook import default_inventory
    from iotex_ops.faults import gameday as gd
    from iotex_ops.runbook import params as params_mod
    from iotex_ops.runbook.store import RunStore, default_state_dir

    store = RunStore(state_dir or default_state_dir())
    common: dict[str, Any] = dict(params_mod.parse_extra(list(extra)))
    say = (lambda s: None) if as_json else (lambda s: click.echo(s, err=True))
    with network.load(inventory_path or default_inventory()) as net:
        chosen = faults or gd.default_faults(net)
        per: dict[str, dict[str, Any]] = {"*": common}
        if seed is not None:
            for i, f in enumerate(chosen):
                per[f] = {"seed": seed + i}
        outcomes = gd.run(net, store, chosen, per, say=say, stop_on_failure=stop_on_failure)
    doc = gd.report(store, chosen)
    j, h = gd.write_report(doc, report_dir or store.root / "gameday")
    if as_json:
        click.echo(json.dumps({"runs": [o.as_dict() for o in outcomes], "report": {"json": str(j), "html": str(h)}}, indent=2))
    else:
        _table([o.as_dict() for o in outcomes])
        click.echo(f"report: {h} (JSON: {j})")
    if any(o.result != "passed" for o in outcomes):
        raise SystemExit(1)


def _table(rows: list[dict[str, Any]]) -> None:
    from rich.markup import escape
    from rich.table import Table

    from iotex_ops.faults import core

    c = make_console()
    if not c.is_terminal:
        c.width = 200
    t = Table(title="game day")
    for col in ("fault", "victim", "result", *core.FIGURES.values(), "escalated", "pages went to"):
        t.add_column(col)
    for r in rows:
        style = "green" if r["result"] == "passed" else "red"
        t.add_row(
            escape(r["fault"]),
            escape(", ".join(r.get("victims") or [])),
            f"[{style}]{escape(r['result'])}[/{style}]",
            *(_num(r.get(k)) for k in core.FIGURES),
            _num(r.get("escalated")),
            escape(str(r.get("page_route") or "-")),
        )
    c.print(t)
    for r in rows:
        if r.get("error"):
            c.print(f"{escape(r['fault'])}: {escape(str(r['error']))}")


@gameday.command("report")
@click.option("--fault", "faults", multiple=True, help="Only this fault drill (repeatable).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), help="Where to write it; default: <state>/gameday/.")
@_STATE
@_JSON
def report_cmd(faults: tuple[str, ...], out_dir: Path | None, state_dir: Path | None, as_json: bool) -> None:
    """The game-day report over past runs: HTML + JSON; a table of each fault's figures (last, median, trend)."""
    from rich.markup import escape
    from rich.table import Table

    from iotex_ops.faults import core
    from iotex_ops.faults import gameday as gd
    from iotex_ops.runbook.store import RunStore, default_state_dir

    store = RunStore(state_dir or default_state_dir())
    doc = gd.report(store, faults or gd.ALL_FAULTS)
    j, h = gd.write_report(doc, out_dir or store.root / "gameday")
    if as_json:
        click.echo(json.dumps({**doc, "files": {"json": str(j), "html": str(h)}}, indent=2, default=str))
        return
    c = make_console()
    if not doc["faults"]:
        c.print(f"no fault drill runs under {escape(str(store.runs_dir))}")
    for s in doc["faults"]:
        t = Table(title=f"{s['fault']}: {s['runs']} run(s), {s['passed']} passed, {s['escalations']} escalated")
        for col in ("figure", "last", "median", "worst", "target", "trend", "direction"):
            t.add_column(col)
        for k, label in core.FIGURES.items():
            f = s["figures"][k]
            last = s["last"].get(k) if s["last"] else None
            trend = " ".join(_num(v) for v in f["trend"])
            t.add_row(label, _num(last), _num(f["median"]), _num(f["worst"]), _num(f["target"]), escape(trend), f["direction"])
        c.print(t)
    c.print(f"report: {escape(str(h))} (JSON: {escape(str(j))})")
