"""`iotex-ops monitoring render|check`: the monitoring configuration generated from the inventory, and its check.

Registered in iotex_ops/cli/__init__.py with `main.add_command(monitoring_group)`. The monitoring role runs it
with Ansible's own interpreter as `python -m iotex_ops.cli monitoring render ...`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from iotex_ops.cli.common import OpsGroup, make_console


@click.group("monitoring", cls=OpsGroup)
def monitoring_group() -> None:
    """Prometheus rules and config and Alertmanager routing, generated from the inventory."""


@monitoring_group.command("render")
@click.option(
    "-i", "--inventory", "inventory_path", required=True, type=click.Path(path_type=Path), help="Inventory file or directory."
)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Directory to write.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def render_cmd(inventory_path: Path, out_dir: Path, as_json: bool) -> None:
    """Write prometheus.yml, rules.yml, rules.test.yml and alertmanager.yml for the inventory's delegates."""
    from rich.markup import escape
    from rich.table import Table

    from iotex_ops import inventory as inv_mod
    from iotex_ops.alerting import render as render_mod
    from iotex_ops.alerting.settings import fmt_duration

    rendered = render_mod.render(inv_mod.load(inventory_path))
    written = render_mod.write_rendered(rendered, out_dir)
    s = rendered.settings
    if as_json:
        doc = {
            "inventory": str(inventory_path),
            "out": str(out_dir),
            "files": [str(p) for p in written],
            "targets": [{"host": t.host, "address": t.address} for t in rendered.targets],
            "alerts": list(rendered.alerts),
            "interval": fmt_duration(s.interval_s),
            "alertd": s.alertd_base,
            "pagerduty": bool(s.pagerduty_routing_key_file),
            "warnings": list(rendered.warnings),
        }
        click.echo(json.dumps(doc, indent=2))
        return
    console = make_console()
    table = Table(title=f"monitoring configuration for {escape(str(inventory_path))}")
    for col in ("file", "bytes"):
        table.add_column(col)
    for p in written:
        table.add_row(escape(str(p)), str(p.stat().st_size))
    console.print(table)
    targets = Table(title="scraped delegates")
    for col in ("host", "/metrics at"):
        targets.add_column(col)
    for t in rendered.targets:
        targets.add_row(escape(t.host), escape(t.address))
    console.print(targets)
    console.print(f"alerts: {', '.join(rendered.alerts)}")
    console.print(
        f"interval {fmt_duration(s.interval_s)}; alertd: {escape(s.alertd_base) or 'none'}; "
        f"PagerDuty: {'routing key file ' + escape(s.pagerduty_routing_key_file) if s.pagerduty_routing_key_file else 'none'}"
    )
    for w in rendered.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(w)}")


@monitoring_group.command("check")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--files/--no-files",
    default=True,
    show_default=True,
    help="Also check that the token and key files it names exist (on the monitoring host they must).",
)
@click.option("--json", "as_json", is_flag=True, help="Print every check with its output as JSON.")
def check_cmd(directory: Path, files: bool, as_json: bool) -> None:
    """Check a rendered directory with promtool (config, rules, rule tests) and amtool (exit 1 on a problem)."""
    from rich.markup import escape
    from rich.table import Table

    from iotex_ops.alerting import check as check_mod

    runs = check_mod.run_checks(directory, files=files)
    problems = [r for r in runs if not r.ok]
    if as_json:
        click.echo(json.dumps({"directory": str(directory), "ok": not problems, "checks": [r.as_dict() for r in runs]}, indent=2))
    else:
        console = make_console()
        table = Table(title=f"checks of {escape(str(directory))}")
        for col in ("check", "file", "result"):
            table.add_column(col)
        for r in runs:
            result = "[green]ok[/green]" if r.ok else ("[red]timed out[/red]" if r.rc is None else f"[red]exit {r.rc}[/red]")
            table.add_row(escape(r.name), escape(Path(r.file).name), result)
        console.print(table)
        for r in problems:
            console.print(f"[red]problem:[/red] {escape(r.name)} ({escape(r.file)}):")
            console.print(r.tail(), markup=False)
        console.print("[green]all checks passed[/green]" if not problems else f"[red]{len(problems)} check(s) failed[/red]")
    if problems:
        sys.exit(1)
