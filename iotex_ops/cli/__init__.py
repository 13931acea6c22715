"""`iotex-ops`: the operator's command line (a thin layer over the library).

Every command group's module imports only click and its own small helpers at the top; what a command needs
(the host layer and paramiko, ansible-runner, Prometheus's client, the PagerDuty client, rich, jinja2) it
imports when it runs, so that `iotex-ops --help` and a quick command such as `status` start in a fraction of
the time. The groups themselves are imported only when used (`LAZY_GROUPS`, `LazyOpsGroup`): the client's
`account balance` does not pay for the scheduler's or the runbook engine's imports.
tests/ops/test_cli_startup.py keeps it so.
"""

from __future__ import annotations

from pathlib import Path

import click

from iotex_ops import __version__
from iotex_ops.cli.common import LazyOpsGroup, default_console

# Command groups that live beside their library modules, imported when used (`iotex-ops --help` lists them all).
LAZY_GROUPS = {
    "inventory": "iotex_ops.cli.hosts:inventory",
    "exec": "iotex_ops.cli.hosts:exec_cmd",
    "lab": "iotex_ops.cli.lab:lab",
    "status": "iotex_ops.cli.lab:status",
    "playbook": "iotex_ops.cli.playbooks:playbook",
    "runbook": "iotex_ops.cli.runbook:runbook",
    "rehearsal": "iotex_ops.cli.runbook:rehearsal_cmd",
    "alertd": "iotex_ops.cli.alertd:alertd",
    "pager": "iotex_ops.cli.pager:pager",
    "monitoring": "iotex_ops.cli.monitoring:monitoring_group",
    "schedule": "iotex_ops.cli.schedule:schedule",
    "drill": "iotex_ops.cli.drill:drill",
    "gameday": "iotex_ops.cli.gameday:gameday",
    "scheduler": "iotex_ops.cli.scheduler:scheduler",
    "release": "iotex_ops.cli.release:release",
    "load": "iotex_ops.cli.load:load",
    "account": "iotex_ops.cli.client:account",
    "action": "iotex_ops.cli.client:action",
    "stake": "iotex_ops.cli.client:stake",
    "chain": "iotex_ops.cli.client:chain",
    "rewards": "iotex_ops.cli.client:rewards",
    "dashboard": "iotex_ops.cli.dashboard:dashboard",
}


@click.group(cls=LazyOpsGroup, lazy=LAZY_GROUPS)
@click.version_option(__version__, prog_name="iotex-ops")
def main() -> None:
    """Operate a Roll-DPoS delegate network: drills, runbooks, monitoring and the lab."""


@main.command()
@click.option("--delegates", type=click.IntRange(1, 50), default=4, show_default=True)
@click.option("--seconds", type=click.IntRange(1, 86_400), default=30, show_default=True, help="How long to run.")
@click.option("--dir", "root", type=click.Path(path_type=Path), help="Where to put the network (default: a temp dir).")
@click.option("--block-interval-ms", type=click.IntRange(100, 60_000), default=1000, show_default=True)
def localnet(delegates: int, seconds: int, root: Path | None, block_interval_ms: int) -> None:
    """Start a local network of delegate processes and watch it finalize blocks."""
    import shutil
    import tempfile
    import time

    from rich.live import Live
    from rich.table import Table

    from iotex_ops.lab import LocalNet

    console = default_console()
    keep = root is not None
    root = root or Path(tempfile.mkdtemp(prefix="iotex-localnet-"))
    net = LocalNet.generate(root, delegates, block_interval_ms=block_interval_ms)
    console.print(f"network in [bold]{root}[/bold]; {delegates} delegates; Ctrl-C stops it")
    with net:
        net.start()
        deadline = time.monotonic() + seconds
        with Live(console=console, refresh_per_second=2) as live:
            while time.monotonic() < deadline:
                table = Table(title="finalized blocks")
                for col in ("node", "pid", "height", "finalized hash", "state root", "round", "peers"):
                    table.add_column(col)
                for i, n in enumerate(net.nodes):
                    c = net.chain(i)
                    if c is None:
                        table.add_row(n.name, str(n.pid), "-", "starting", "", "", "")
                        continue
                    table.add_row(
                        n.name,
                        str(n.pid),
                        str(c["finalized_height"]),
                        c["finalized_hash"][:16],
                        c["state_root"][:16],
                        str(c["consensus"]["round"]),
                        str(c["peers"]),
                    )
                live.update(table)
                time.sleep(0.5)
    console.print("stopped all nodes")
    if not keep:
        shutil.rmtree(root, ignore_errors=True)
