"""`iotex-ops dashboard`: the web page a delegate team keeps open (docs/dashboard.md); the library is
iotex_ops/dashboard/."""

from __future__ import annotations

from pathlib import Path

import click

from iotex_ops.cli.common import OpsCommand


@click.command("dashboard", cls=OpsCommand)
@click.option("-i", "--inventory", "inventory_path", type=click.Path(path_type=Path),
              help="Inventory of the network; default: the running lab's.")  # fmt: skip
@click.option("--listen", default="127.0.0.1:8470", show_default=True,
              help="HOST:PORT. Another address than loopback needs --tls-cert/--tls-key and --token-file.")  # fmt: skip
@click.option("--state-dir", type=click.Path(path_type=Path),
              help="Runs (the run store) and the schedules' state; default: $IOTEX_OPS_STATE_DIR.")  # fmt: skip
@click.option("--alertd-state-dir", type=click.Path(path_type=Path), help="alertd's state dir: its remediation runs.")
@click.option("--token-file", type=click.Path(path_type=Path),
              help="The login token (a 0600 file): without it the dashboard is read-only.")  # fmt: skip
@click.option("--tls-cert", type=click.Path(path_type=Path, dir_okay=False), help="Serve HTTPS with this certificate (PEM).")
@click.option("--tls-key", type=click.Path(path_type=Path, dir_okay=False), help="... and this key (PEM).")
def dashboard(
    inventory_path: Path | None,
    listen: str,
    state_dir: Path | None,
    alertd_state_dir: Path | None,
    token_file: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
) -> None:
    """Serve the dashboard: the network now, alerts and incidents, runs, drills and charts, live.

    Read-only by default; with --token-file, a person who logs in with the token may approve a scheduled drill,
    suspend or resume a schedule, acknowledge a page (each action journaled with who did it)."""
    from iotex_ops.dashboard import server
    from iotex_ops.runbook.store import default_state_dir

    if inventory_path is None:
        from iotex_ops.cli.runbook import default_inventory

        inventory_path = default_inventory()
    opts = server.Options(
        inventory=inventory_path,
        state_dir=(state_dir or default_state_dir()).expanduser(),
        listen=listen,
        alertd_state_dir=alertd_state_dir,
        token_file=token_file,
        tls_cert=tls_cert,
        tls_key=tls_key,
    )
    server.prepare(opts)  # a refused bind or token file is said before anything is read
    server.serve(opts, say=lambda s: click.echo(s))
