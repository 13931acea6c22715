"""`iotex-ops schedule list | check | next | approve | suspend | resume`: the drill schedules of an inventory.

Registered in iotex_ops/cli/__init__.py. The logic is in iotex_ops/schedule/ (docs/schedules.md); this module
reads the inventory, the runbooks, the clock and (for check and next, unless --no-chain) the nodes, and prints.
Exit status: 0; `check` 1 when the file has a problem; 2 for an OpsError (no drills file, unknown schedule).
"""

from __future__ import annotations

import getpass
import json
import socket
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import click

from iotex_ops import inventory as inv_mod
from iotex_ops.cli.common import OpsGroup, make_console
from iotex_ops.runbook import loader
from iotex_ops.runbook.model import Runbook
from iotex_ops.runbook.store import default_state_dir
from iotex_ops.schedule import edge
from iotex_ops.schedule.check import fault_tolerance
from iotex_ops.schedule.model import Drills, ScheduleError, drills_file, load
from iotex_ops.schedule.state import ScheduleState
from iotex_ops.schedule.timing import ChainTime, next_run, run_id, upcoming

if TYPE_CHECKING:
    from rich.console import Console

_INV = click.option("-i", "--inventory", "inventory_path", type=click.Path(path_type=Path),
                    help="Inventory (its drills.yml beside hosts.yml); default: the running lab's.")  # fmt: skip
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
_DIRS = click.option("--runbooks", "runbook_dirs", multiple=True, type=click.Path(path_type=Path, file_okay=False),
                     help="Another directory of runbooks (repeatable; searched first).")  # fmt: skip
_STATE = click.option("--state-dir", type=click.Path(path_type=Path), help="Default: $IOTEX_OPS_STATE_DIR.")


def _now(at: str | None = None) -> datetime:
    """Now, or the time `--at` names (ISO 8601 with an offset, e.g. 2026-12-24T09:00+01:00)."""
    if at is None:
        return datetime.now(UTC)
    try:
        t = datetime.fromisoformat(at.replace("Z", "+00:00"))
    except ValueError:
        raise ScheduleError(f"--at {at!r}: expected an ISO 8601 time with an offset, e.g. 2026-12-24T09:00+01:00") from None
    if t.tzinfo is None:
        raise ScheduleError(f"--at {at!r}: give an offset (+01:00, Z): a time without one is ambiguous")
    return t.astimezone(UTC)


_AT = click.option("--at", "at", help="As of this time (ISO 8601 with offset) instead of now: a preview.")


def _inventory(path: Path | None) -> inv_mod.Inventory:
    if path is None:
        from iotex_ops.cli.runbook import default_inventory

        path = default_inventory()
    return inv_mod.load(path)


def _state(inv: inv_mod.Inventory, state_dir: Path | None) -> ScheduleState:
    from iotex_ops import network as network_mod

    return ScheduleState(state_dir or default_state_dir(), network_mod.network_id(inv))


def _chain(inv: inv_mod.Inventory) -> tuple[ChainTime | None, list[str]]:
    """The chain's calendar as the nodes tell it now (the real now, also under --at: heights are read now)."""
    from iotex_ops import network as network_mod

    now = datetime.now(UTC)
    try:
        net = network_mod.load(inv.path)
    except inv_mod.InventoryError as exc:
        return None, [str(exc)]
    with net:
        return edge.read_chain([d.api for d in net.delegates], now)


def _local(iso: str, tz: str) -> datetime:
    return datetime.fromisoformat(iso).astimezone(ZoneInfo(tz))


def _console() -> Console:
    c = make_console()
    if not c.is_terminal:
        c.width = 160  # a table piped or captured is read whole
    return c


def _radius(rb: Runbook | None) -> str:
    if rb is None or rb.out_of_consensus is None:
        return "?"
    return "whole chain" if rb.stops_chain else str(rb.out_of_consensus)


def _problems_note(loaded: edge.Loaded) -> None:
    if loaded.problems:
        click.echo(f"warning: {loaded.path} has {len(loaded.problems)} problem(s), its schedules with one are left out: "
                   "`iotex-ops schedule check`", err=True)  # fmt: skip


@click.group(cls=OpsGroup)
def schedule() -> None:
    """Drill schedules: declared in the inventory's drills.yml, checked, listed, suspended (docs/schedules.md)."""


@schedule.command("list")
@_INV
@_DIRS
@_STATE
@_AT
@_JSON
def list_cmd(inventory_path: Path | None, runbook_dirs: tuple[Path, ...], state_dir: Path | None, at: str | None,
             as_json: bool) -> None:  # fmt: skip
    """Every schedule: its drill, when it runs next, and whether it is enabled, suspended, approved by a person."""
    from rich.markup import escape
    from rich.table import Table

    now = _now(at)
    inv = _inventory(inventory_path)
    books = loader.discover(runbook_dirs)
    loaded = edge.require(inv, books, now)
    suspended = _state(inv, state_dir).suspended()
    rows = []
    for s in loaded.drills.schedules:
        nxt = next_run(s, now) if s.enabled else None
        sus = suspended.get(s.name)
        rows.append({**s.as_dict(), "next": nxt.isoformat() if nxt else None,
                     "next_utc": nxt.astimezone(UTC).isoformat() if nxt else None,
                     "suspended": sus.as_dict() if sus else None, "blast_radius": _radius(books.get(s.drill))})  # fmt: skip
    if as_json:
        click.echo(json.dumps({"file": str(loaded.path), "delegates": loaded.delegates, "f": fault_tolerance(loaded.delegates),
                               "schedules": rows, "problems": [p.as_dict() for p in loaded.problems]}, indent=2))  # fmt: skip
        return
    _problems_note(loaded)
    c = _console()
    table = Table(title=f"drill schedules ({loaded.path})")
    for col in ("schedule", "drill", "cron", "timezone", "next run", "state", "approval", "overlap", "out of consensus"):
        table.add_column(col)
    for r in rows:
        state = "disabled" if not r["enabled"] else (f"suspended by {r['suspended']['by']}" if r["suspended"] else "enabled")
        when = _local(r["next"], r["timezone"]).strftime("%a %Y-%m-%d %H:%M %Z") if r["next"] else "-"
        table.add_row(escape(r["name"]), escape(r["drill"]), escape(r["cron"]), r["timezone"], when, escape(state),
                      "required" if r["approval"] else "-", r["overlap"], r["blast_radius"])  # fmt: skip
    c.print(table)
    c.print(f"{loaded.delegates} delegates: at most f = {fault_tolerance(loaded.delegates)} out of consensus at once")


@schedule.command("check")
@_INV
@_DIRS
@click.option("--chain/--no-chain", default=True, show_default=True,
              help="Ask the nodes for halt heights and protocol activations (chain-time blackouts).")  # fmt: skip
@_JSON
def check_cmd(inventory_path: Path | None, runbook_dirs: tuple[Path, ...], chain: bool, as_json: bool) -> None:
    """Name every problem of the inventory's drills.yml (exit 1 if there is any)."""
    from rich.markup import escape

    now = _now()
    inv = _inventory(inventory_path)
    books = loader.discover(runbook_dirs)
    chain_time, chain_errors = _chain(inv) if chain else (None, [])
    loaded = edge.require(inv, books, now, chain_time)
    chain_note = None
    if not chain:
        chain_note = "not checked (--no-chain)"
    elif chain_time is None:
        chain_note = (
            "not checked: " + "; ".join(chain_errors[:2]) + (f" (+{len(chain_errors) - 2} more)" if len(chain_errors) > 2 else "")
        )
    if as_json:
        doc: dict[str, Any] = {"file": str(loaded.path), "schedules": [s.name for s in loaded.drills.schedules],
                               "delegates": loaded.delegates, "f": fault_tolerance(loaded.delegates),
                               "problems": [p.as_dict() for p in loaded.problems], "chain": _chain_doc(chain_time),
                               "chain_note": chain_note, "chain_errors": chain_errors}  # fmt: skip
        click.echo(json.dumps(doc, indent=2))
    else:
        c = _console()
        for p in loaded.problems:
            c.print(f"[red]problem:[/red] {escape(str(p))}")
        if chain_note:
            c.print(f"chain-time blackouts: {escape(chain_note)}")
        elif chain_time is not None:
            c.print(f"chain-time blackouts: checked at height {chain_time.height} (halts {list(chain_time.halt_heights)}, "
                    f"activations {list(chain_time.activations)})")  # fmt: skip
        verdict = "[green]ok[/green]" if loaded.ok else f"[red]{len(loaded.problems)} problem(s)[/red]"
        c.print(f"{loaded.path}: {len(loaded.drills.schedules)} valid schedule(s), {verdict}")
    if not loaded.ok:
        sys.exit(1)


def _chain_doc(chain: ChainTime | None) -> dict[str, Any] | None:
    if chain is None:
        return None
    return {"height": chain.height, "at": chain.at.isoformat(), "block_interval_s": chain.block_interval_s,
            "halt_heights": list(chain.halt_heights), "activations": list(chain.activations)}  # fmt: skip


@schedule.command("next")
@_INV
@_DIRS
@_STATE
@click.option("--days", type=click.IntRange(1, 366), default=7, show_default=True, help="How far ahead.")
@click.option("--chain/--no-chain", default=False, show_default=True, help="Also mark runs in a chain-time blackout.")
@_AT
@_JSON
def next_cmd(inventory_path: Path | None, runbook_dirs: tuple[Path, ...], state_dir: Path | None, days: int, chain: bool,
             at: str | None, as_json: bool) -> None:  # fmt: skip
    """The runs to come, in time order, each with why it will not run if that is known now."""
    from rich.markup import escape
    from rich.table import Table

    now = _now(at)
    inv = _inventory(inventory_path)
    loaded = edge.require(inv, loader.discover(runbook_dirs), now)
    chain_time = _chain(inv)[0] if chain else None
    suspended = _state(inv, state_dir).suspended()
    runs: list[dict[str, Any]] = []
    for s in loaded.drills.schedules:
        for u in upcoming(s, now, now + timedelta(days=days), suspended=s.name in suspended,
                          shared_blackouts=loaded.drills.blackouts, chain=chain_time):  # fmt: skip
            runs.append({"schedule": s.name, "drill": s.drill, "timezone": s.timezone, "run_id": run_id(s, u.at),
                         "approval": s.approval, **u.as_dict()})  # fmt: skip
    runs.sort(key=lambda r: (r["utc"], r["schedule"]))
    if as_json:
        click.echo(json.dumps({"file": str(loaded.path), "from": now.isoformat(), "days": days, "runs": runs}, indent=2))
        return
    _problems_note(loaded)
    c = _console()
    table = Table(title=f"drill runs in the next {days} day(s)")
    for col in ("when (schedule's zone)", "UTC", "schedule", "drill", "will run"):
        table.add_column(col)
    for r in runs:
        local = _local(r["at"], r["timezone"])
        will = "yes" if r["skip"] is None else f"no: {escape(r['skip'])}"
        if r["skip"] is None and r["approval"]:
            will = f"once approved: `schedule approve {escape(r['run_id'])}`"
        table.add_row(local.strftime("%a %Y-%m-%d %H:%M %Z"), datetime.fromisoformat(r["utc"]).strftime("%m-%d %H:%M"),
                      escape(r["schedule"]), escape(r["drill"]), will)  # fmt: skip
    c.print(table)
    if not runs:
        c.print("no run in that time")


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@schedule.command("suspend")
@click.argument("name")
@_INV
@_STATE
@click.option("--reason", default="", help="Why (shown by list and in the history).")
@_JSON
def suspend_cmd(name: str, inventory_path: Path | None, state_dir: Path | None, reason: str, as_json: bool) -> None:
    """Suspend schedule NAME: its runs are skipped (and recorded so) until `resume`. The drills file is untouched."""
    from rich.markup import escape

    inv = _inventory(inventory_path)
    _parsed(inv).schedule(name)  # an unknown name is refused, naming the known ones
    state = _state(inv, state_dir)
    already = state.is_suspended(name)
    sus = state.suspend(name, by=_who(), now=_now(), reason=reason)
    if as_json:
        click.echo(json.dumps({"schedule": name, "network": state.network, "suspended": sus.as_dict(), "already": already}))
        return
    what = "was already suspended" if already else "suspended"
    make_console().print(
        f"{escape(name)} {what} (by {escape(sus.by)} at {sus.at}); `iotex-ops schedule resume {escape(name)}` lifts it"
    )


@schedule.command("resume")
@click.argument("name")
@_INV
@_STATE
@_JSON
def resume_cmd(name: str, inventory_path: Path | None, state_dir: Path | None, as_json: bool) -> None:
    """Lift the suspension of schedule NAME: its next run happens as scheduled (missed ones are not caught up)."""
    from rich.markup import escape

    inv = _inventory(inventory_path)
    _parsed(inv).schedule(name)
    state = _state(inv, state_dir)
    lifted = state.resume(name)
    if as_json:
        click.echo(json.dumps({"schedule": name, "network": state.network, "lifted": lifted.as_dict() if lifted else None}))
        return
    make_console().print(f"{escape(name)} resumed" if lifted else f"{escape(name)} was not suspended")


@schedule.command("approve")
@click.argument("run_id", metavar="RUN")
@_INV
@_STATE
@click.option("--by", default=None, help="Who approves [default: user@host].")
@click.option("--note", default="", help="Why, or what was checked (kept with the approval).")
@_JSON
def approve_cmd(run_id: str, inventory_path: Path | None, state_dir: Path | None, by: str | None, note: str,
                as_json: bool) -> None:  # fmt: skip
    """Approve scheduled run RUN (TIME-SCHEDULE, as `schedule next` and `scheduler status` show it) of a schedule
    with `approval: true`: before its time or while it waits; unapproved past its start deadline it is missed."""
    from rich.markup import escape

    from iotex_ops import network as network_mod
    from iotex_ops.schedule import service
    from iotex_ops.schedule.records import SchedulerDB, db_path

    inv = _inventory(inventory_path)
    drills = _parsed(inv)
    root = state_dir or default_state_dir()
    network = network_mod.network_id(inv)
    db = SchedulerDB(db_path(root, network))
    try:
        a = service.approve(drills, db, run_id, by=by or _who(), now=_now().timestamp(), note=note)
    finally:
        db.close()
    if as_json:
        click.echo(json.dumps({"run_id": run_id, "network": network, "approval": a.as_dict()}))
        return
    when = datetime.fromtimestamp(a.at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    make_console().print(f"{escape(run_id)} approved by {escape(a.by)} at {when}; the scheduler starts it at its time")


def _parsed(inv: inv_mod.Inventory) -> Drills:
    path = drills_file(inv.path)
    if not path.is_file():
        raise ScheduleError(f"no drill schedules: {path} does not exist (docs/schedules.md)")
    drills, _ = load(path)
    return drills
