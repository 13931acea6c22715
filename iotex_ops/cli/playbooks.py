"""`iotex-ops playbook list | run NAME -i INV`: the toolkit's playbooks (iotex_ops.content), run with a live progress view."""

from __future__ import annotations

import json
from pathlib import Path

import click

from iotex_ops.cli.common import OpsGroup, default_console


def _parse_extravars(items: tuple[str, ...]) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not key=value", param_hint="-e")
        # Values are YAML-typed the way ansible-playbook -e key=value would be: strings unless JSON says otherwise.
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


@click.group("playbook", cls=OpsGroup)
def playbook() -> None:
    """Ansible playbooks shipped with the toolkit (site, node, release, service, monitoring, alertd)."""


@playbook.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the playbooks and where they are as JSON.")
def list_cmd(as_json: bool) -> None:
    """The playbooks and roles in use, and where they come from ($IOTEX_OPS_HOME, else the installed package)."""
    from iotex_ops import content

    books = sorted(content.playbooks_dir().glob("*.yml"))
    if as_json:
        doc = {"source": content.describe(), "playbooks": {p.stem: str(p) for p in books}, "roles": content.role_names()}
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(f"playbooks in {content.playbooks_dir()} (from {content.describe()}):")
    for p in books:
        click.echo(f"  {p.stem}")
    click.echo(f"roles: {', '.join(content.role_names())}")


@playbook.command("run")
@click.argument("name")
@click.option("-i", "--inventory", type=click.Path(path_type=Path, exists=True), required=True)
@click.option("--limit", default=None, help="Ansible host pattern to restrict the run to.")
@click.option("--check", is_flag=True, help="Report what would change; change nothing.")
@click.option("-e", "--extra-var", "extra", multiple=True, help="key=value (repeatable); secrets as file paths only.")
@click.option("--runs-dir", type=click.Path(path_type=Path), default=None, help="Where each run's directory goes.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON instead of a progress view.")
def run_cmd(
    name: str, inventory: Path, limit: str | None, check: bool, extra: tuple[str, ...], runs_dir: Path | None, as_json: bool
) -> None:
    """Run playbook NAME (one of `playbook list`, or a path) on an inventory."""
    from rich.live import Live

    from iotex_ops.ansible import ProgressView, resolve_playbook, run_playbook

    console = default_console(stderr=True)

    extravars = _parse_extravars(extra)
    resolve_playbook(name)  # an unknown name (or no content) is refused before the progress view starts
    view = ProgressView(title=name)
    if as_json:
        result = run_playbook(name, inventory, extravars=extravars, limit=limit, check=check, runs_dir=runs_dir,
                              raise_on_failure=False)  # fmt: skip
    else:
        with Live(view, console=console, refresh_per_second=4):
            result = run_playbook(name, inventory, extravars=extravars, limit=limit, check=check, runs_dir=runs_dir,
                                  on_event=view, raise_on_failure=False)  # fmt: skip
    doc = {
        "playbook": name,
        "status": result.status,
        "rc": result.rc,
        "ok": result.ok,
        "changed": result.changed,
        "failed": result.failed,
        "events": result.events,
        "artifacts_dir": str(result.artifacts_dir),
    }
    if as_json:
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
    else:
        console.print(
            f"{name}: {result.status} (rc {result.rc}); changed {sum(result.changed.values())}; artifacts {result.artifacts_dir}"
        )
    if not result.ok:
        if not as_json:
            from iotex_ops.ansible import failures_from_events, load_events

            for f in failures_from_events(load_events(result.artifacts_dir)):
                console.print(f"[red]{f.host}[/red] {'unreachable' if f.unreachable else 'failed'} at {f.task!r}: {f.message}")
        raise SystemExit(2)
