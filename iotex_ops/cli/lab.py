"""`iotex-ops lab up|status|down` and `iotex-ops status`."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from iotex_ops.cli.common import OpsCommand, OpsGroup, default_console
from iotex_ops.errors import OpsError


@contextlib.contextmanager
def _null() -> Iterator[None]:
    yield


_root = click.option(
    "--dir",
    "root",
    type=click.Path(path_type=Path),
    help="Lab directory (default: $IOTEX_OPS_LAB_DIR or ~/.local/state/iotex-ops/lab).",
)


@click.group(cls=OpsGroup)
def lab() -> None:
    """A delegate network on this machine, built with the same playbooks as real hosts."""


def _print_status(state: Any, as_json: bool) -> None:
    from iotex_ops.lab import ops_services
    from iotex_ops.status import collect, table

    rows = collect(state.endpoints(), prometheus_url=state.prometheus_url, pid_of=lambda ep: state.node_pid(ep.name))
    services = ops_services.services(Path(state.root))
    standbys = _standbys(state)
    if as_json:
        doc = {"mode": state.mode, "delegates": [r.to_json() for r in rows], "standbys": standbys}
        doc |= {"prometheus": state.prometheus_url, "alertmanager": state.alertmanager_url, "services": services}
        doc |= {"dashboard": getattr(state, "dashboard_url", "")}
        click.echo(json.dumps(doc, indent=2))
        return
    console = default_console()
    console.print(table(rows, title=f"lab ({state.mode} hosts, {state.root})"))
    for sb in standbys:
        h = "down" if sb["finalized_height"] is None else f"finalized {sb['finalized_height']}"
        console.print(
            f"  {sb['name']:15} hot standby of {sb['standby_of']}: {sb['role'] or 'not answering'}, {h}, {sb['api_url']}"
        )
    for s in services:
        running = f"[green]running[/green] (pid {s['pid']})" if s["running"] else "[red]not running[/red]"
        console.print(f"  {s['service']:15} {running}")
    if getattr(state, "dashboard_url", ""):
        console.print(f"  dashboard: {state.dashboard_url}")
    if getattr(state, "scheduler_state_dir", ""):
        console.print(f"  drill schedules: `iotex-ops scheduler status --state-dir {state.scheduler_state_dir}`")


def _standbys(state: Any) -> list[dict[str, Any]]:
    """The lab's hot standbys as their nodes answer: role (standby, or primary once promoted), height, pid."""
    from iotex_ops.nodeapi import NodeClient

    out = []
    for n in getattr(state, "standbys", []):
        c = NodeClient(n.api_url, name=n.name).try_chain(timeout=1.0)
        role = None if c is None else ("standby" if c.standby else "primary")
        out.append(
            {"name": n.name, "standby_of": n.standby_of, "api_url": n.api_url, "role": role,
             "finalized_height": c.finalized_height if c else None, "pid": state.node_pid(n.name)}
        )  # fmt: skip
    return out


@lab.command()
@click.option("--delegates", type=click.IntRange(1, 50), default=4, show_default=True)
@click.option("--hosts", type=click.Choice(["local", "netns"]), default="local", show_default=True)
@click.option("--block-interval", type=click.FloatRange(0.1, 60), default=1.0, show_default=True, help="Seconds.")
@click.option("--standby", metavar="DELEGATE", help="Add a hot standby of this delegate (e.g. node3): the failover drill.")
@_root
@click.option("--json", "as_json", is_flag=True)
def up(delegates: int, hosts: str, block_interval: float, standby: str | None, root: Path | None, as_json: bool) -> None:
    """Build the lab: hosts, keys, genesis, release, playbooks, nodes, Prometheus and Alertmanager, alertd and
    a PagerDuty-compatible receiver."""
    from rich.live import Live

    from iotex_ops.ansible import ProgressView
    from iotex_ops.lab import lab as lab_mod

    console = default_console()

    view = ProgressView(title="site.yml")
    with Live(view, console=console, refresh_per_second=4, transient=True, redirect_stdout=False) if not as_json else _null():
        state = lab_mod.up(
            delegates,
            hosts,
            int(block_interval * 1000),
            root,
            on_event=view,
            say=(lambda s: None) if as_json else (lambda s: console.print(f"[bold]lab:[/bold] {s}")),
            standby=standby,
        )
    if not as_json:
        console.print(f"lab up in {state.timings.get('up_to_first_block_s', 0):.1f}s (to the first finalized block)")
        for n in state.nodes:
            console.print(f"  {n.name:8} node API  {n.api_url}")
        console.print(f"  Prometheus    {state.prometheus_url}")
        console.print(f"  Alertmanager  {state.alertmanager_url}")
        console.print(f"  alertd        {state.alertd_url}  (`iotex-ops alertd status --state-dir {state.alertd_state_dir}`)")
        console.print(f"  pager         {state.pager_dir}  (`iotex-ops pager incidents`)")
        if getattr(state, "dashboard_url", ""):
            console.print(f"  dashboard     {state.dashboard_url}  (login token: {state.root}/dashboard/login.token)")
        console.print(f"  inventory     {state.inventory}")
    _print_status(state, as_json)


@lab.command("status")
@_root
@click.option("--json", "as_json", is_flag=True)
def lab_status(root: Path | None, as_json: bool) -> None:
    """Every delegate of the running lab."""
    from iotex_ops.lab import lab as lab_mod

    state = lab_mod.load_state(root)
    if state is None:
        raise OpsError(f"no lab at {root or lab_mod.default_root()}: `iotex-ops lab up` builds one")
    _print_status(state, as_json)


@lab.command()
@_root
def down(root: Path | None) -> None:
    """Remove everything the lab made: processes, namespaces, links, files."""
    console = default_console()
    from iotex_ops.lab import lab as lab_mod

    removed = lab_mod.down(root)
    if not removed:
        console.print("no lab to remove")
    for r in removed:
        console.print(f"removed {r}")


@click.command("status", cls=OpsCommand)
@click.option("-i", "--inventory", "inventory_path", type=click.Path(path_type=Path), help="Inventory; default: the running lab.")
@_root
@click.option("--json", "as_json", is_flag=True)
def status(inventory_path: Path | None, root: Path | None, as_json: bool) -> None:
    """A row per delegate: heights, version, protocol, peers, paused/halted, last block age, up."""
    from iotex_ops.lab import lab as lab_mod
    from iotex_ops.status import Endpoint, collect, table

    if inventory_path is None:
        state = lab_mod.load_state(root)
        if state is None:
            raise OpsError("no running lab and no -i INVENTORY: give an inventory or `iotex-ops lab up`")
        _print_status(state, as_json)
        return
    from iotex_ops.inventory import load

    inv = load(inventory_path)
    delegates = set(inv.groups.get("delegates", ()))
    eps = [
        Endpoint(h.delegate_name or h.name, h.ansible_host, f"http://{h.ansible_host}:{h.node_api_port}")
        for h in inv.hosts
        if h.name in delegates and h.node_api_port
    ]
    rows = collect(eps)
    if as_json:
        click.echo(json.dumps({"delegates": [r.to_json() for r in rows]}, indent=2))
    else:
        default_console().print(table(rows))
