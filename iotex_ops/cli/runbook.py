"""`iotex-ops runbook list | show NAME | run NAME | resume RUN_ID | runs`: drills and remediations.

Exit status of `run` and `resume`: 0 passed, 1 failed (rolled back), 2 refused (bad parameters, locked
network: nothing touched), 3 a rollback failed (the network needs a person).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from iotex_ops.cli.common import OpsCommand, OpsGroup, make_console
from iotex_ops.errors import OpsError

if TYPE_CHECKING:
    from rich.console import Console

    from iotex_ops.runbook import RunResult, Step
    from iotex_ops.runbook.events import Event

# The engine, the host layer and rich are imported by the commands that use them (`iotex-ops --help` and the
# other groups start without them).


def default_inventory() -> Path:
    from iotex_ops.lab.lab import load_state

    state = load_state()
    if state is None:
        raise OpsError("no inventory given (-i) and no lab is up (`iotex-ops lab up`)")
    return Path(state.inventory)


def _fmt(v: Any) -> str:
    text = json.dumps(v, default=str) if not isinstance(v, str) else v
    return text if len(text) <= 160 else text[:157] + "..."


class EventPrinter:
    """One line per journal event worth a person's attention. The events are folded as they come: `state` is
    the run as far as this printer has seen it."""

    def __init__(self, console: Console, prefix: str = "") -> None:
        from iotex_ops.runbook.state import RunState

        self.console, self.prefix = console, prefix
        self.state = RunState()

    def __call__(self, ev: Event) -> None:
        from rich.markup import escape

        from iotex_ops.runbook.events import (
            ContinuousFailed,
            MaintenanceClose,
            MaintenanceOpen,
            Resumed,
            RollbackEnd,
            RollbackStart,
            RollbackStop,
            RunFailing,
            RunStart,
            StaleLock,
            SteadyState,
            StepEnd,
            StepSkip,
            StepStart,
            Verify,
        )

        self.state.apply(ev)
        p, c, where = self.prefix, self.console, escape(ev.where)
        match ev:
            case RunStart():
                c.print(f"{p}[bold]run {escape(ev.run_id)}[/bold] {escape(ev.runbook)} on {len(ev.delegates)} delegates")
            case SteadyState():
                mark = "[green]ok[/green]" if ev.ok else "[red]NOT OK[/red]"
                c.print(f"{p}steady state {ev.phase}: {mark}")
                for row in ev.checks:
                    if not row.ok:
                        c.print(f"{p}  [red]x[/red] {escape(row.check)}: {escape(_fmt(row.detail or row.value))}")
            case StepStart():
                again = f" (attempt {ev.attempt})" if ev.attempt > 1 else ""
                c.print(f"{p}[cyan]>[/cyan] {where}{again}")
            case Verify():
                mark = "[green]ok[/green]" if ev.ok else "[red]FAILED[/red]"
                c.print(f"{p}  {mark} {escape(ev.check)}: {escape(_fmt(ev.value))} {escape(ev.detail or '')}")
            case StepEnd():  # an attempt's end (a per-host step's own end is a StepDone: not printed)
                mark = "[green]done[/green]" if ev.ok else f"[red]failed[/red]: {escape(str(ev.error))}"
                c.print(f"{p}  {where} {mark} in {ev.duration_s:.1f}s")
            case StepSkip():
                c.print(f"{p}  [dim]skip {where}: {escape(ev.reason)}[/dim]")
            case RunFailing() | ContinuousFailed():
                why = ev.error if isinstance(ev, RunFailing) and ev.error else getattr(ev, "check", None)
                c.print(f"{p}[red bold]FAILED[/red bold] {escape(str(why))}: rolling back")
            case RollbackStart():
                c.print(f"{p}[yellow]< rollback {where}[/yellow] {escape(ev.what or '')}")
            case RollbackEnd():
                mark = "[green]ok[/green]" if ev.ok else f"[red bold]ROLLBACK FAILED[/red bold]: {escape(str(ev.error))}"
                c.print(f"{p}  {where} {mark}")
            case RollbackStop():
                c.print(f"{p}[red bold]{escape(ev.reason)}[/red bold]")
            case StaleLock():
                prev = ev.previous
                c.print(
                    f"{p}[yellow]took over a stale lock of run {escape(str(prev.get('run_id')))} (pid {prev.get('pid')})[/yellow]"
                )
            case Resumed():
                c.print(f"{p}[bold]resumed[/bold]; completed before: {escape(', '.join(ev.done_steps) or 'none')}")
            case MaintenanceOpen():
                if ev.silences:
                    told = ", change event sent" if ev.announced else ""
                    what = f"{', '.join(ev.alerts)} on {', '.join(ev.hosts)} until {ev.ends_at}{told}"
                    c.print(f"{p}maintenance: {len(ev.silences)} silence(s) in {escape(ev.alertmanager)}: {escape(what)}")
                else:
                    c.print(f"{p}[yellow]maintenance: {escape(ev.note)}[/yellow]")
            case MaintenanceClose():
                err = f" [red]({escape(ev.error)})[/red]" if ev.error else ""
                c.print(f"{p}maintenance: {len(ev.silences)} silence(s) expired ({escape(ev.reason)}){err}")


def print_result(console: Console, res: RunResult) -> None:
    from rich.markup import escape

    from iotex_ops.runbook.events import Result

    colour = {Result.PASSED: "green", Result.FAILED: "red", Result.ROLLBACK_FAILED: "red bold"}.get(res.result, "red")
    console.print(f"[{colour}]{res.result.upper()}[/{colour}] {escape(res.runbook)} in {res.duration_s:.1f}s  run {res.run_id}")
    if res.error:
        console.print(f"  {escape(res.error)}")
    if res.measures:
        console.print("  " + ", ".join(f"{k}={_fmt(v)}" for k, v in res.measures.items()))
    console.print(f"  journal {res.journal}")
    if res.report_html:
        console.print(f"  report  {res.report_html}")


_DIRS = click.option(
    "--runbooks",
    "runbook_dirs",
    multiple=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="More runbook directories.",
)


_NO_MAINTENANCE = click.option(
    "--no-maintenance",
    is_flag=True,
    help="Run a drill without its maintenance window (no Alertmanager silences, no change events): its "
    "expected alerts page. Without it, a drill whose Alertmanager cannot be reached does not start.",
)


@click.group(cls=OpsGroup)
def runbook() -> None:
    """Drills and remediations as verified, journaled runbooks."""


@runbook.command("list")
@_DIRS
@click.option("--json", "as_json", is_flag=True)
def list_cmd(runbook_dirs: tuple[Path, ...], as_json: bool) -> None:
    """Every runbook found (--runbooks, $IOTEX_OPS_RUNBOOKS, then the toolkit's runbooks/: iotex_ops.content)."""
    from rich.table import Table

    from iotex_ops.runbook import loader

    books = loader.discover(runbook_dirs)
    if as_json:
        click.echo(json.dumps([{"name": b.name, "summary": b.summary, "source": b.source} for b in books.values()], indent=2))
        return
    table = Table(title="runbooks")
    for col in ("name", "steps", "summary"):
        table.add_column(col)
    for b in sorted(books.values(), key=lambda b: b.name):
        table.add_row(b.name, str(len(b.steps)), b.summary)
    make_console().print(table)


@runbook.command("show")
@click.argument("name")
@_DIRS
@click.option("--json", "as_json", is_flag=True)
def show_cmd(name: str, runbook_dirs: tuple[Path, ...], as_json: bool) -> None:
    """Parameters, steady state, steps, checks and rollbacks of a runbook."""
    from rich.markup import escape

    from iotex_ops.runbook import loader, plan

    b = loader.find(name, runbook_dirs)
    doc: dict[str, Any] = {
        "name": b.name,
        "summary": b.summary,
        "source": b.source,
        "params": [
            {
                "name": p.name,
                "type": p.type.__name__,
                "required": p.required,
                "default": None if p.required else p.default,
                "help": p.help,
            }
            for p in b.params
        ],
        "steady_state": [c.description for c in b.steady_state],
        "continuous": [c.description for c in b.continuous],
        "steps": plan(b, None, {}),
        "blast_radius": {"out_of_consensus": b.out_of_consensus, "stops_chain": b.stops_chain},
    }
    if as_json:
        click.echo(json.dumps(doc, indent=2, default=str))
        return
    c = make_console()
    c.print(f"[bold]{b.name}[/bold]: {escape(b.summary)}  ({b.source})")
    if b.out_of_consensus is None:
        c.print("  blast radius: not declared (cannot be scheduled)")
    else:
        stops = "; stops the whole chain on purpose" if b.stops_chain else ""
        c.print(f"  blast radius: {b.out_of_consensus} delegate(s) out of consensus at once{stops}")
    for p in doc["params"]:
        req = "required" if p["required"] else f"default {p['default']!r}"
        c.print(f"  -e {p['name']}=<{p['type']}>  {escape(p['help'])} ({escape(req)})")
    _print_plan(c, doc)


def _print_plan(c: Console, doc: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    for s in doc["steady_state"]:
        c.print(f"  steady state: {escape(s)}")
    for s in doc["continuous"]:
        c.print(f"  during the run: {escape(s)}")
    table = Table()
    for col in ("#", "step", "where", "verify", "rollback"):
        table.add_column(col)
    for i, s in enumerate(doc["steps"], 1):
        where = s["mode"] + (f": {', '.join(s['hosts'])}" if s["hosts"] else "")
        flags = (" [red](destructive)[/red]" if s["destructive"] else "") + (
            " [dim](conditional)[/dim]" if s["conditional"] else ""
        )
        table.add_row(str(i), f"{escape(s['step'])}{flags}\n[dim]{escape(s['description'])}[/dim]", escape(where),
                      escape("\n".join(s["verify"])), escape(s["rollback"] or "-"))  # fmt: skip
    c.print(table)


def _approver(console: Console) -> Any:
    if not sys.stdin.isatty():
        return None

    def approve(step: Step, hosts: list[str]) -> bool:
        where = f" on {', '.join(hosts)}" if hosts else ""
        return click.confirm(f"step {step.name} is destructive: {step.description}{where}. Go ahead?", default=False)

    return approve


def _finish(res: RunResult, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(res.to_json(), indent=2, default=str))
    else:
        print_result(make_console(), res)
    sys.exit(res.exit_code)


@runbook.command("run", context_settings={"ignore_unknown_options": False})
@click.argument("name")
@click.option("-i", "--inventory", "inventory_path", type=click.Path(path_type=Path), help="Default: the lab's inventory.")
@click.option("-e", "--extra", "extra", multiple=True, metavar="KEY=VALUE", help="A parameter (repeatable).")
@click.option("--dry-run", is_flag=True, help="Print the plan (steps, hosts, checks); touch nothing.")
@click.option("--yes", is_flag=True, help="Approve destructive steps without asking.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--known-hosts", type=click.Path(path_type=Path), help="Default: the inventory's, else ~/.ssh/known_hosts.")
@click.option(
    "--wait-lock", type=click.FloatRange(0, 3600), default=0.0, show_default=True,
    help="Seconds to wait for the network's lock (e.g. while a remediation runs) before refusing.",
)  # fmt: skip
@_NO_MAINTENANCE
@_DIRS
def run_cmd(
    name: str,
    inventory_path: Path | None,
    extra: tuple[str, ...],
    dry_run: bool,
    yes: bool,
    as_json: bool,
    known_hosts: Path | None,
    runbook_dirs: tuple[Path, ...],
    wait_lock: float,
    no_maintenance: bool,
) -> None:
    """Run runbook NAME against the inventory's delegates."""
    from iotex_ops import network as network_mod
    from iotex_ops.runbook import Engine, loader, plan
    from iotex_ops.runbook import params as params_mod

    b = loader.find(name, runbook_dirs)
    given = params_mod.parse_extra(list(extra))
    inventory_path = inventory_path or default_inventory()
    c = make_console()
    if dry_run:
        typed = params_mod.validate(b, given)
        with network_mod.load(inventory_path, known_hosts) as net:
            doc: dict[str, Any] = {"runbook": b.name, "inventory": str(inventory_path), "params": typed,
                   "steady_state": [x.description for x in b.steady_state],
                   "continuous": [x.description for x in b.continuous], "steps": plan(b, net, typed)}  # fmt: skip
        if as_json:
            click.echo(json.dumps(doc, indent=2, default=str))
        else:
            c.print(f"[bold]dry run[/bold] of {b.name} on {inventory_path} with {typed}: nothing is touched")
            _print_plan(c, doc)
        return
    engine = Engine(
        yes=yes,
        approve=None if yes else _approver(c),
        on_event=None if as_json else EventPrinter(c),
        known_hosts=known_hosts,
        lock_wait_s=wait_lock,
        maintenance="off" if no_maintenance else "auto",
    )
    with network_mod.load(inventory_path, known_hosts) as net:
        res = engine.run(b, net, given)
    _finish(res, as_json)


@runbook.command("resume")
@click.argument("run_id")
@click.option("--yes", is_flag=True, help="Approve destructive steps without asking.")
@click.option("--json", "as_json", is_flag=True)
@_NO_MAINTENANCE
@_DIRS
def resume_cmd(run_id: str, yes: bool, as_json: bool, no_maintenance: bool, runbook_dirs: tuple[Path, ...]) -> None:
    """Continue a run that crashed or was interrupted, after its last completed step (a drill's silences that
    the interrupted run left are expired, and new ones made for the rest of it)."""
    from iotex_ops.runbook import Engine, loader

    c = make_console()
    engine = Engine(yes=yes, approve=None if yes else _approver(c), on_event=None if as_json else EventPrinter(c),
                    maintenance="off" if no_maintenance else "auto")  # fmt: skip
    res = engine.resume(run_id, lambda n: loader.find(n, runbook_dirs))
    _finish(res, as_json)


@runbook.command("runs")
@click.option("--json", "as_json", is_flag=True)
@click.option("--last", type=click.IntRange(1, 10_000), default=20, show_default=True)
def runs_cmd(as_json: bool, last: int) -> None:
    """Recent runs and how they ended (a run without an end can be resumed)."""
    from rich.table import Table

    from iotex_ops.runbook.store import RunStore

    store = RunStore()
    rows: list[dict[str, Any]] = [{"run_id": r.run_id, "runbook": r.runbook, "user": r.user,
             "result": r.result if r.finished else "unfinished (resumable)", "duration_s": r.duration_s if r.finished else None}
            for r in store.runs(last=last)]  # fmt: skip
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"runs in {store.runs_dir}")
    for col in ("run", "runbook", "user", "result", "duration"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["run_id"], str(r["runbook"]), str(r["user"]), r["result"], f"{r['duration_s'] or 0:.1f}s")
    make_console().print(table)


@click.command("rehearsal", cls=OpsCommand)
@click.option("--delegates", type=click.IntRange(1, 50), default=4, show_default=True)
@click.option("--hosts", type=click.Choice(["local", "netns"]), default="local", show_default=True)
@click.option(
    "--load-tps", type=click.FloatRange(0, 2000), default=300.0, show_default=True, help="Background transfers/s (0: none)."
)
@click.option("--drill", "drills", multiple=True, help="Only these drills (repeatable), in the rehearsal's order.")
@click.option("--json", "as_json", is_flag=True, help='Print {"drills": [...], "report": PATH}.')
@_NO_MAINTENANCE
def rehearsal_cmd(
    delegates: int, hosts: str, load_tps: float, drills: tuple[str, ...], as_json: bool, no_maintenance: bool
) -> None:
    """The six drills in order on the lab (brought up unless one is), under load; a summary and a report."""
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from iotex_ops import rehearsal as rehearsal_mod

    c = Console(file=sys.stderr if as_json else sys.stdout, highlight=False, soft_wrap=True)
    order = tuple(d for d in rehearsal_mod.DRILLS if d in drills) if drills else rehearsal_mod.DRILLS
    if drills and len(order) != len(set(drills)):
        raise OpsError(f"unknown drill in {list(drills)}; the drills are {', '.join(rehearsal_mod.DRILLS)}")
    printers: dict[str, EventPrinter] = {}

    def on_event(drill: str, ev: Event) -> None:
        printers.setdefault(drill, EventPrinter(c, prefix=f"[dim]{drill}[/dim] "))(ev)

    out = rehearsal_mod.rehearse(
        delegates, hosts, load_tps=load_tps, drills=order, say=lambda s: c.print(f"[bold]rehearsal:[/bold] {escape(s)}"),
        on_event=on_event, maintenance=not no_maintenance,
    )  # fmt: skip
    if as_json:
        click.echo(json.dumps({"drills": out["drills"], "report": out["report"], "duration_s": out["duration_s"],
                               "load": out["load"], "load_tps": out["load_tps"]}, indent=2, default=str))  # fmt: skip
    else:
        table = Table(title=f"rehearsal: {delegates} delegates on {hosts} hosts, {out['duration_s']:.0f} s",
                      box=box.SIMPLE_HEAD, collapse_padding=True)  # fmt: skip
        # narrow headers and no wrapping: the table fits 80 columns (CI logs, a pipe) without cutting a drill's name
        table.add_column("drill", no_wrap=True)
        for col in ("result", "time", "down", "blocks", "offered", "final", "lost"):
            table.add_column(col, no_wrap=True, min_width=len(col), justify="left" if col == "result" else "right")
        for d in out["drills"]:
            res = "[green]passed[/green]" if d["result"] == "passed" else "[red]failed[/red]"
            down = f"{d['downtime_s']:.2f}s" if d["downtime_s"] is not None else "-"
            lost = "-" if d["lost_actions"] is None else str(d["lost_actions"])
            offered = "-" if d.get("offered_actions") is None else f"{d['offered_actions']:,}"
            final = "-" if d.get("final_actions") is None else f"{d['final_actions']:,}"
            blocks = "-" if d["blocks_finalized"] is None else str(d["blocks_finalized"])
            table.add_row(d["name"], res, f"{d['duration_s']:.1f}s", down, blocks, offered, final, lost)
        c.print(table)
        for d in out["drills"]:
            if d["error"]:
                c.print(f"[red]{escape(d['name'])}[/red]: {escape(d['error'])}")
        c.print(f"report {out['report']}")
    if not all(d["result"] == "passed" for d in out["drills"]):
        sys.exit(1)
