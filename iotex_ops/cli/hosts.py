"""`iotex-ops inventory check` and `iotex-ops exec`: inventories and quick commands on many hosts.

Registered in iotex_ops/cli/__init__.py with `main.add_command(inventory)` and `main.add_command(exec_cmd)`.
The host layer (paramiko, fabric) and rich are imported by the commands that use them, not with the command
line: `iotex-ops --help` and every other command start without them.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from iotex_ops.cli.common import OpsCommand, OpsGroup, make_console

if TYPE_CHECKING:
    from rich.table import Table

    from iotex_ops.hosts import CommandResult, Host
    from iotex_ops.inventory import Inventory, Problem

_INV = click.option(
    "-i", "--inventory", "inventory_path", required=True, type=click.Path(path_type=Path), help="Inventory file or directory."
)


@click.group(cls=OpsGroup)
def inventory() -> None:
    """Read and check Ansible inventories of delegate hosts."""


@inventory.command("check")
@_INV
@click.option("--json", "as_json", is_flag=True, help="Print problems as JSON.")
def check_cmd(inventory_path: Path, as_json: bool) -> None:
    """Name every problem of an inventory (exit 1 if there is any), before any host is touched.

    Its drill schedules (drills.yml beside hosts.yml), when it has some, are checked too (as `iotex-ops schedule
    check --no-chain`: the chain-time blackouts need the nodes)."""
    from rich.markup import escape

    from iotex_ops import inventory as inv_mod

    inv = inv_mod.load(inventory_path)
    problems = inv_mod.check(inv) + _schedule_problems(inv)
    if as_json:
        click.echo(json.dumps({"inventory": str(inventory_path), "hosts": [h.name for h in inv.hosts],
                               "problems": [p.as_dict() for p in problems]}, indent=2))  # fmt: skip
    else:
        console = make_console()
        for p in problems:
            console.print(f"[red]problem:[/red] {escape(str(p))}")
        verdict = "[green]ok[/green]" if not problems else f"[red]{len(problems)} problem(s)[/red]"
        console.print(f"{inventory_path}: {len(inv.hosts)} host(s), {verdict}")
    if problems:
        sys.exit(1)


def _schedule_problems(inv: Inventory) -> list[Problem]:
    from datetime import UTC, datetime

    from iotex_ops import inventory as inv_mod
    from iotex_ops.schedule import drills_file

    if not drills_file(inv.path).is_file():
        return []
    from iotex_ops.runbook import loader
    from iotex_ops.schedule import edge

    loaded = edge.check_inventory(inv, loader.discover(), datetime.now(UTC))
    assert loaded is not None
    return [inv_mod.Problem(f"{p.field}: {p.message}" if p.field else p.message, file=p.source) for p in loaded.problems]


def _status_table(names: list[str], state: dict[str, Any], done: bool) -> Table:
    from rich.markup import escape
    from rich.table import Table

    from iotex_ops.hosts import CommandResult, HostError

    table = Table(title="exec" + (" (done)" if done else ""))
    for col in ("host", "status", "exit", "time", "output"):
        table.add_column(col)
    for name in names:
        s = state.get(name)
        if s is None:
            table.add_row(name, "waiting", "", "", "")
        elif s == "running":
            table.add_row(name, "[yellow]running[/yellow]", "", "", "")
        elif isinstance(s, CommandResult):
            table.add_row(name, "[green]ok[/green]", str(s.exit_code), f"{s.duration_s:.3f}s", escape(s.tail(1, "stdout")))
        else:
            res = s.result if isinstance(s, HostError) else None
            code = "" if res is None or res.exit_code is None else str(res.exit_code)
            out = res.tail(1) if res is not None else (s.message if isinstance(s, HostError) else str(s))
            dur = f"{res.duration_s:.3f}s" if res is not None else ""
            table.add_row(name, f"[red]{type(s).__name__}[/red]", code, dur, escape(out))
    return table


def _json_row(name: str, outcome: CommandResult | Exception) -> dict[str, Any]:
    from iotex_ops.hosts import CommandResult

    res = outcome if isinstance(outcome, CommandResult) else getattr(outcome, "result", None)
    return {
        "host": name,
        "exit_code": res.exit_code if res else None,
        "stdout": res.stdout if res else "",
        "stderr": res.stderr if res else "",
        "duration_s": round(res.duration_s, 6) if res else None,
        "error": None if isinstance(outcome, CommandResult) else f"{type(outcome).__name__}: {outcome}",
    }


@click.command("exec", cls=OpsCommand)
@_INV
@click.option("--limit", "limit", help="Hosts, groups or globs, as Ansible's --limit ('delegates:!d3', 'd*').")
@click.option("--concurrency", type=click.IntRange(1, 1024), default=32, show_default=True)
@click.option("--timeout", type=click.FloatRange(0.1, 86_400), default=10.0, show_default=True, help="Seconds per host.")
@click.option(
    "--known-hosts", type=click.Path(path_type=Path), help="Default: the inventory's UserKnownHostsFile, else ~/.ssh/known_hosts"
)
@click.option("--identity", type=click.Path(path_type=Path), help="Private key; default: ansible_ssh_private_key_file.")
@click.option("--json", "as_json", is_flag=True, help='Print {"hosts": [...]} for scripts.')
@click.argument("command")
def exec_cmd(
    inventory_path: Path,
    limit: str | None,
    concurrency: int,
    timeout: float,
    known_hosts: Path | None,
    identity: Path | None,
    as_json: bool,
    command: str,
) -> None:
    """Run COMMAND on every selected host at once (SSH, or local for local hosts); exit 1 if any failed."""
    from rich.live import Live

    from iotex_ops import inventory as inv_mod
    from iotex_ops.hosts import SSHPool, run_on
    from iotex_ops.network import host_for

    inv = inv_mod.load(inventory_path)
    bad = [p for p in inv.load_problems]
    if bad:
        raise inv_mod.InventoryError("; ".join(str(p) for p in bad))
    specs = inv.limit(limit)
    pool = SSHPool(known_hosts or Path("~/.ssh/known_hosts").expanduser())
    hosts: list[Host] = [
        host_for(spec, inv.raw_vars.get(spec.name, {}), pool, identity=identity, known_hosts=known_hosts) for spec in specs
    ]
    names = [h.name for h in hosts]
    state: dict[str, Any] = {}
    lock = threading.Lock()
    started = time.monotonic()
    try:
        if as_json:
            result = run_on(hosts, command, concurrency=concurrency, timeout=timeout)
        else:
            console = make_console()
            with Live(_status_table(names, state, False), console=console, refresh_per_second=8, transient=True) as live:

                def on_start(h: Host) -> None:
                    with lock:
                        state[h.name] = "running"
                        live.update(_status_table(names, state, False))

                def on_done(h: Host, outcome: CommandResult | Exception) -> None:
                    with lock:
                        state[h.name] = outcome
                        live.update(_status_table(names, state, False))

                result = run_on(hosts, command, concurrency=concurrency, timeout=timeout, on_start=on_start, on_done=on_done)
            console.print(_status_table(names, dict(result.results), True))
            failed = len(result.failed)
            console.print(
                f"{len(names)} host(s), {len(names) - failed} ok, "
                + (f"[red]{failed} failed[/red]" if failed else "0 failed")
                + f", {time.monotonic() - started:.2f} s"
            )
    finally:
        pool.close()
    if as_json:
        click.echo(json.dumps({"hosts": [_json_row(n, result[n]) for n in names]}, indent=2))
    if not result.ok:
        sys.exit(1)
