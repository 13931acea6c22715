"""`iotex-node rollback | snapshot | restore | db check`: the node's data maintenance (see iotex_node.maintenance).

rollback and restore run on a stopped node only; snapshot works on a stopped node (reading the database)
and on a running one (through its admin channel). Every refusal ends with exit code 2 and one line
`error: ...` naming the problem; nothing has changed then.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from iotex_node.errors import NodeError

F = TypeVar("F", bound=Callable[..., Any])

# An online snapshot of a large database takes a while; the admin call waits for it.
ONLINE_SNAPSHOT_TIMEOUT = 3600.0


def _refusals(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (NodeError, OSError, sqlite3.Error) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def _echo_json(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, sort_keys=True))


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


_home = click.option("--home", type=click.Path(path_type=Path), required=True, help="The node's home.")
_json = click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")


@click.command()
@_home
@click.option("--to", "to_height", required=True, metavar="HEIGHT", help="Height to roll back to (blocks above it go).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_json
@_refusals
def rollback(home: Path, to_height: str, yes: bool, as_json: bool) -> None:
    """Revert the blocks above HEIGHT on a stopped node, with their state; back up the database first and
    write the removed blocks' actions to a file that can be re-submitted (POST /v1/actions/batch)."""
    from iotex_node import maintenance

    def confirm(plan: maintenance.RollbackPlan) -> bool:
        if yes:
            return True
        question = (
            f"Roll back {plan.home} from height {plan.from_height} to {plan.to_height}, removing {plan.blocks} blocks "
            f"with {plan.actions} actions? (a backup is taken first)"
        )
        try:
            return click.confirm(question, default=False, err=True)
        except click.Abort:
            return False

    r = maintenance.rollback(home, to_height, confirm=confirm)
    if as_json:
        _echo_json(r.to_json())
        return
    if r.noop:
        click.echo(f"{r.home}: already at height {r.to_height}; nothing to roll back")
        return
    click.echo(
        f"rolled back {r.home} from height {r.from_height} to {r.to_height}: removed {r.removed_blocks} blocks "
        f"with {r.removed_actions} actions in {r.seconds:.2f}s"
    )
    click.echo(f"backup               {r.backup}")
    click.echo(f"actions to re-submit {r.actions_file} ({r.removed_actions} actions, JSON lines)")
    click.echo(f"tip                  {r.to_height} {r.tip_hash}")
    click.echo(f"state root           {r.state_root} (verified)")
    if r.cleared_meta:
        click.echo(f"cleared              {', '.join(r.cleared_meta)} (signing records above {r.to_height})")
    for note in r.notes:
        click.echo(f"note                 {note}")


@click.command()
@_home
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Snapshot file to write (must not exist).")
@_json
@_refusals
def snapshot(home: Path, out: Path, as_json: bool) -> None:
    """Write a consistent snapshot of the node's database (with OUT.sha256 and OUT.manifest.json):
    through the admin channel while the node runs, from the database when it is stopped."""
    from iotex_node import admin as admin_mod
    from iotex_node import config as config_mod
    from iotex_node import maintenance

    cfg = config_mod.load(home)
    out = maintenance.check_snapshot_out(Path(out).absolute())
    try:
        doc = maintenance.snapshot_home(cfg.home, out).to_json()
    except maintenance.NodeBusy as exc:
        if exc.holder != "node":
            raise
        doc = admin_mod.call(cfg, "POST", "/snapshot", {"out": str(out)}, timeout=ONLINE_SNAPSHOT_TIMEOUT)
    if as_json:
        _echo_json(doc)
        return
    mode = "online, from the running node" if doc["online"] else "offline"
    click.echo(f"snapshot of {cfg.home} at height {doc['height']} ({mode}) in {doc['seconds']:.2f}s")
    click.echo(f"file       {doc['path']} ({_mib(doc['bytes'])})")
    click.echo(f"sha256     {doc['sha256']}")
    click.echo(f"tip        {doc['tip_hash']}")
    click.echo(f"state root {doc['state_root']}")


@click.command()
@_home
@click.option("--from", "snap", type=click.Path(path_type=Path), required=True, help="Snapshot file to restore.")
@click.option("--force", is_flag=True, help="Restore even if the current database is unreadable (its signing records are lost).")
@_json
@_refusals
def restore(home: Path, snap: Path, force: bool, as_json: bool) -> None:
    """Replace a stopped node's database with a checked snapshot (also to start a new node from a peer's);
    the current database is backed up first, and the node's own signing records are kept."""
    from iotex_node import maintenance

    r = maintenance.restore(home, snap, force=force)
    if as_json:
        _echo_json(r.to_json())
        return
    prev = "a new home" if r.previous_height is None else f"height {r.previous_height}"
    click.echo(f"restored {r.home} from {r.snapshot}: height {r.height} (was {prev}) in {r.seconds:.2f}s")
    click.echo(f"sha256     {'checked' if r.sha256_checked else 'not checked (no .sha256 beside the snapshot)'}")
    click.echo(f"tip        {r.tip_hash}")
    click.echo(f"state root {r.state_root} (verified)")
    click.echo(f"backup     {r.backup or '-'}")
    click.echo(f"kept       {', '.join(r.kept_meta) or '-'} (this node's own records)")
    for w in r.warnings:
        click.echo(f"warning    {w}", err=True)


@click.group()
def db() -> None:
    """The node's database."""


@db.command("check")
@_home
@click.option("--quick", is_flag=True, help="SQLite's quick_check instead of the full integrity_check (faster).")
@_json
@_refusals
def db_check(home: Path, quick: bool, as_json: bool) -> None:
    """Check the database (running or stopped node, read-only): every page (SQLite's integrity_check), the
    genesis it belongs to, every block up to the tip, the state root against the tip's. Exit 0 when whole,
    1 when damaged (each problem printed), 2 when refused (no home, no database)."""
    from iotex_node import maintenance

    r = maintenance.check_database(home, quick=quick)
    if as_json:
        _echo_json(r.to_json())
    elif r.ok:
        click.echo(f"{r.database}: ok at height {r.height} ({_mib(r.bytes)}, {r.seconds:.2f}s)")
        click.echo(f"tip        {r.tip_hash}")
        click.echo(f"state root {r.state_root} (verified)")
    else:
        click.echo(f"{r.database}: DAMAGED ({_mib(r.bytes)})", err=True)
        for p in r.problems:
            click.echo(f"problem    {p}", err=True)
        click.echo("fix        restore it from a peer's snapshot (iotex-node restore, or the rebuild-node runbook)", err=True)
    if not r.ok:
        sys.exit(1)


@click.command("set-standby")
@_home
@_json
@_refusals
def set_standby(home: Path, as_json: bool) -> None:
    """Make a STOPPED node a standby before it starts (a failed-over primary coming back): it follows the
    chain and signs nothing until `iotex-node admin promote`. A running node: `iotex-node admin demote`."""
    from iotex_node import maintenance

    doc = maintenance.set_standby(home)
    if as_json:
        _echo_json(doc)
    else:
        click.echo(f"{doc['home']}: standby (signs nothing until promoted)" + (" - it already was" if doc["was_standby"] else ""))


@click.group()
def backups() -> None:
    """The database backups in HOME/backups (taken before a rollback or a restore): list, prune."""


@backups.command("list")
@_home
@_json
@_refusals
def backups_list(home: Path, as_json: bool) -> None:
    """The backups, oldest first: name, when taken, size."""
    from iotex_node import backups as backups_mod

    rows = backups_mod.list_backups(home)
    if as_json:
        _echo_json({"home": str(home), "backups": [b.to_json() for b in rows]})
        return
    for b in rows:
        d = b.to_json()
        click.echo(f"{d['name']:48} {d['taken']:21} {_mib(b.size)}")


@backups.command("prune")
@_home
@click.option("--keep", type=click.IntRange(1, 10_000), required=True, help="The newest backups always kept.")
@click.option("--max-age-days", type=click.FloatRange(0, 36_500), default=None, help="Keep older ones younger than this.")
@click.option("--dry-run", is_flag=True, help="Say what would go; remove nothing.")
@_json
@_refusals
def backups_prune(home: Path, keep: int, max_age_days: float | None, dry_run: bool, as_json: bool) -> None:
    """Remove the backups past the retention: all but the KEEP newest, unless younger than --max-age-days."""
    import time

    from iotex_node import backups as backups_mod

    max_age = None if max_age_days is None else max_age_days * 86400
    kept, removed = backups_mod.prune(home, keep, max_age, time.time(), dry_run=dry_run)
    if as_json:
        _echo_json({"kept": [b.name for b in kept], "removed": [b.name for b in removed], "dry_run": dry_run})
        return
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {len(removed)} backup(s) ({_mib(sum(b.size for b in removed))}); kept {len(kept)}")
