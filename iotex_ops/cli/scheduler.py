"""`iotex-ops scheduler serve | status`: the service that runs due drills by themselves (docs/schedules.md).

Registered in iotex_ops/cli/__init__.py. The service is iotex_ops/schedule/service.py (decisions, gates, stop
conditions, restart safety) over iotex_ops/schedule/driver.py (the engine, Prometheus, alertd's store); this
module parses options, takes the one-service-per-network lock, and prints.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from iotex_ops import inventory as inv_mod
from iotex_ops.cli.common import OpsGroup, make_console
from iotex_ops.runbook.store import RunStore, default_state_dir
from iotex_ops.schedule.model import Drills, ScheduleError, drills_file
from iotex_ops.schedule.records import SchedulerDB, db_path

_INV = click.option("-i", "--inventory", "inventory_path", type=click.Path(path_type=Path),
                    help="Inventory (its drills.yml beside hosts.yml); default: the running lab's.")  # fmt: skip
_STATE = click.option("--state-dir", type=click.Path(path_type=Path),
                      help="Runs (the run store) and the scheduler's state; default: $IOTEX_OPS_STATE_DIR.")  # fmt: skip


def _inventory(path: Path | None) -> inv_mod.Inventory:
    if path is None:
        from iotex_ops.cli.runbook import default_inventory

        path = default_inventory()
    return inv_mod.load(path)


@click.group("scheduler", cls=OpsGroup)
def scheduler() -> None:
    """Run due drill schedules by themselves: gates, stop conditions, restart-safe (docs/schedules.md)."""


class _DrillsFile:
    """The drills file, read again when it changes; the schedules with a problem are left out (and said once)."""

    def __init__(self, inv: inv_mod.Inventory, runbook_dirs: tuple[Path, ...], say: Any) -> None:
        self.inv, self.runbook_dirs, self.say = inv, runbook_dirs, say
        self.path = drills_file(inv.path)
        self._seen: tuple[float, int] | None = None
        self._drills = Drills(str(self.path))

    def __call__(self) -> Drills:
        from iotex_ops.runbook import loader
        from iotex_ops.schedule import edge

        try:
            st = self.path.stat()
        except FileNotFoundError:
            raise ScheduleError(f"no drill schedules: {self.path} does not exist (docs/schedules.md)") from None
        key = (st.st_mtime, st.st_size)
        if key != self._seen:
            loaded = edge.require(self.inv, loader.discover(list(self.runbook_dirs)), datetime.now(UTC))
            bad = {p.field.split(".")[0] for p in loaded.problems}
            kept = tuple(s for s in loaded.drills.schedules if s.where not in bad)
            for p in loaded.problems:
                self.say(f"warning: {p}")
            self._drills = Drills(loaded.drills.source, kept, loaded.drills.blackouts)
            self._seen = key
            self.say(f"{self.path}: {len(kept)} schedule(s): " + ", ".join(
                f"{s.name} ({'enabled' if s.enabled else 'disabled'})" for s in kept))  # fmt: skip
        return self._drills


@contextlib.contextmanager
def _one_service(state_dir: Path, network: str) -> Iterator[None]:
    """One scheduler per network and state dir: an flock beside its state, held while it serves."""
    path = db_path(state_dir, network).with_suffix(".lock")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        holder = path.read_text().strip() or "another process"
        raise ScheduleError(f"{path}: a scheduler serves network {network} already (pid {holder})") from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)


@scheduler.command("serve")
@_INV
@_STATE
@click.option("--alertd-state-dir", type=click.Path(path_type=Path), help="alertd's state dir (alertd.db): the incident gate.")
@click.option("--without-alertd", is_flag=True, help="The network has no alertd: the incident gate passes, saying so.")
@click.option("--runbooks", "runbook_dirs", multiple=True, type=click.Path(path_type=Path, file_okay=False))
@click.option("--lead-s", type=click.FloatRange(0, 600), default=10.0, show_default=True,
              help="Check a run's steady state this long before its time, so it starts on time.")  # fmt: skip
@click.option("--tick-s", type=click.FloatRange(0.05, 60), default=0.2, show_default=True)
@click.option("--releases", "with_releases", is_flag=True,
              help="Also watch the release channel of the inventory's releases.yml and roll by its policy.")  # fmt: skip
@click.option("--release-interval-s", type=click.FloatRange(1, 86400), default=60.0, show_default=True)
def serve_cmd(
    inventory_path: Path | None,
    state_dir: Path | None,
    alertd_state_dir: Path | None,
    without_alertd: bool,
    runbook_dirs: tuple[Path, ...],
    lead_s: float,
    tick_s: float,
    with_releases: bool,
    release_interval_s: float,
) -> None:
    """Serve in the foreground until SIGTERM (systemd, or the lab, keeps it running). SIGTERM lets a running
    drill end (rollback included); a killed service's run is resumed at the next start."""
    from iotex_ops import network as network_mod
    from iotex_ops.schedule.driver import EngineDriver, LiveSignals
    from iotex_ops.schedule.service import Scheduler
    from iotex_ops.schedule.state import ScheduleState

    def say(msg: str) -> None:
        print(f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%S.%fZ}"[:-4] + f"Z scheduler: {msg}", flush=True)

    inv = _inventory(inventory_path)
    root = (state_dir or default_state_dir()).expanduser().resolve()
    network = network_mod.network_id(inv)
    if alertd_state_dir is None and not without_alertd:
        raise ScheduleError("--alertd-state-dir (alertd's store, the incident gate) or --without-alertd is required")
    with _one_service(root, network):
        db = SchedulerDB(db_path(root, network))
        driver = EngineDriver(inv.path, RunStore(root), runbook_dirs=runbook_dirs)
        signals = LiveSignals(driver.network.prometheus_url, alertd_state_dir, without_alertd=without_alertd)
        sus = ScheduleState(root, network)
        svc = Scheduler(
            drills=_DrillsFile(inv, runbook_dirs, say), suspended=lambda: set(sus.suspended()), driver=driver,
            signals=signals, db=db, lead_s=lead_s, chain=driver.chain, say=say,
        )  # fmt: skip
        stop = threading.Event()

        def on_term(signum: int, frame: Any) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        say(f"serving network {network} (pid {os.getpid()}); inventory {inv.path}; state in {root}")
        watcher_thread = None
        if with_releases:
            from iotex_ops.releases import policy as policy_mod
            from iotex_ops.releases import service as releases_service
            from iotex_ops.releases.edge import EngineRollout, PagerNotify
            from iotex_ops.releases.watcher import Watcher

            pol = policy_mod.load(inv.path)
            watcher = Watcher(
                network, pol, EngineRollout(inv.path, root), root, notify=PagerNotify.from_inventory(inv.path, root), say=say
            )
            watcher_thread = releases_service.start(watcher, stop, release_interval_s, signals, say)
            say(f"watching release channel {pol.channel} at {pol.source} every {release_interval_s:g} s")
        try:
            svc.serve(stop, tick_s=tick_s)
        finally:
            if watcher_thread is not None:
                watcher_thread.join(timeout=5)
            signals.close()
            driver.close()
            db.close()
        say("stopped")


def _ts(t: float | None) -> str:
    return "-" if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


@scheduler.command("status")
@_INV
@_STATE
@click.option("--last", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def status_cmd(inventory_path: Path | None, state_dir: Path | None, last: int, as_json: bool) -> None:
    """The runs the scheduler claimed (due, waiting for approval, running, ended) and what it did not start."""
    from rich.markup import escape
    from rich.table import Table

    from iotex_ops import network as network_mod

    inv = _inventory(inventory_path)
    root = (state_dir or default_state_dir()).expanduser()
    network = network_mod.network_id(inv)
    path = db_path(root, network)
    if not path.is_file():
        raise ScheduleError(f"no scheduler state for network {network} under {root} (has `iotex-ops scheduler serve` run?)")
    db = SchedulerDB(path, readonly=True)
    try:
        runs = db.runs()[-last:]
        recs = db.records()[-last:]
        approvals = {r.run_id: db.approval(r.run_id) for r in runs}
    finally:
        db.close()
    if as_json:
        doc = {
            "network": network,
            "state": str(path),
            "runs": [{**r.as_dict(), "approval": a.as_dict() if (a := approvals.get(r.run_id)) else None} for r in runs],
            "records": [r.as_dict() for r in recs],
        }
        click.echo(json.dumps(doc, indent=2))
        return
    c = make_console()
    t = Table(title=f"scheduled runs of network {escape(network)}")
    for col in ("run", "scheduled (UTC)", "status", "result", "approved by", "reason"):
        t.add_column(col)
    for r in runs:
        a = approvals.get(r.run_id)
        t.add_row(escape(r.run_id), _ts(r.scheduled_at), r.status, r.result or "-", escape(a.by) if a else "-", escape(r.reason))
    c.print(t)
    t = Table(title="not started (missed, skipped)")
    for col in ("schedule", "first (UTC)", "last (UTC)", "count", "kind", "reason"):
        t.add_column(col)
    for d in recs:
        t.add_row(escape(d.schedule), _ts(d.first), _ts(d.last), str(d.count), d.kind, escape(d.reason))
    c.print(t)
