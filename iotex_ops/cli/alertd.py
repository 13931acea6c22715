"""`iotex-ops alertd`: the automated remediation service (run, status, check-policy)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import click

from iotex_ops.cli.common import OpsGroup, make_console
from iotex_ops.errors import OpsError
from iotex_ops.remediation import DEFAULT_POLICY


def _state_dir(given: Path | None) -> Path:
    if given is not None:
        return given
    from iotex_ops.runbook.engine import default_state_dir

    return default_state_dir() / "alertd"


@click.group("alertd", cls=OpsGroup)
def alertd() -> None:
    """Receive Alertmanager's webhooks, page through PagerDuty, run remediation runbooks."""


@alertd.command("run")
@click.option("-i", "--inventory", type=click.Path(path_type=Path), required=True, help="The network's inventory.")
@click.option("--token-file", type=click.Path(path_type=Path), required=True, help="Bearer token Alertmanager sends.")
@click.option("--policy", "policy_file", type=click.Path(path_type=Path), default=DEFAULT_POLICY, show_default=True)
@click.option("--listen", default="127.0.0.1:9095", show_default=True, help="HOST:PORT for webhooks, /metrics, /healthz.")
@click.option("--state-dir", type=click.Path(path_type=Path), help="State, journals, page queue [default: <state>/alertd].")
@click.option("--pager-url", default="https://events.pagerduty.com/v2/enqueue", show_default=True)
@click.option(
    "--routing-key-file", type=click.Path(path_type=Path), help="Events API v2 routing key [default: $PAGERDUTY_ROUTING_KEY]."
)
@click.option("--pager-ca-file", type=click.Path(path_type=Path), help="CA bundle for the pager URL (the lab's receiver).")
@click.option("--alertmanager-url", default="", help="Alertmanager to reconcile with (its active alerts are the truth).")
@click.option("--runbooks", "runbook_dirs", multiple=True, type=click.Path(path_type=Path), help="More runbook directories.")
@click.option("--reconcile-s", type=click.FloatRange(1, 3600), default=30.0, show_default=True)
@click.option(
    "--pager-backoff-max-s", type=click.FloatRange(0.1, 3600), default=30.0, show_default=True,
    help="Longest wait between two delivery attempts of a page while PagerDuty answers 429/5xx.",
)  # fmt: skip
def run_cmd(
    inventory: Path,
    token_file: Path,
    policy_file: Path,
    listen: str,
    state_dir: Path | None,
    pager_url: str,
    routing_key_file: Path | None,
    pager_ca_file: Path | None,
    alertmanager_url: str,
    runbook_dirs: tuple[Path, ...],
    reconcile_s: float,
    pager_backoff_max_s: float,
) -> None:
    """Run the service in the foreground until SIGTERM (systemd, or the lab, keeps it running)."""
    import logging

    from iotex_ops.remediation.daemon import Alertd, Config, configure_logging, read_token

    configure_logging()
    cfg = Config(
        inventory=inventory, state_dir=_state_dir(state_dir), token=read_token(token_file), policy_file=policy_file,
        listen=listen, pager_url=pager_url, routing_key_file=routing_key_file, pager_ca_file=pager_ca_file,
        alertmanager_url=alertmanager_url, runbook_dirs=runbook_dirs, reconcile_s=reconcile_s,
        pager_backoff_max_s=pager_backoff_max_s,
    )  # fmt: skip
    daemon = Alertd(cfg)

    def ready(d: Alertd) -> None:
        logging.getLogger("alertd").info("alertd listening on %s (pid %d); state in %s", d.server.url, os.getpid(), cfg.state_dir)

    daemon.serve(on_ready=ready)


def _ago(t: float | None) -> str:
    return "-" if not t else f"{max(0.0, time.time() - t):.0f}s ago"


@alertd.command("status")
@click.option("--state-dir", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status_cmd(state_dir: Path | None, as_json: bool) -> None:
    """Alerts, pages, remediations and breakers as the service recorded them (works while it is down)."""
    from iotex_ops.remediation.store import Store

    if state_dir is None and not (_state_dir(None) / "alertd.db").is_file():
        from iotex_ops.lab.lab import load_state

        lab = load_state()
        if lab is not None and lab.alertd_state_dir:
            state_dir = Path(lab.alertd_state_dir)  # the lab's alertd
    db = _state_dir(state_dir) / "alertd.db"
    if not db.is_file():
        raise OpsError(f"no alertd state at {db}: is alertd running with --state-dir {db.parent}?")
    store = Store(db, readonly=True)
    try:
        doc = store.snapshot()
    finally:
        store.close()
    if as_json:
        print(json.dumps(doc, indent=2, default=str))
        return
    from rich.markup import escape
    from rich.table import Table

    c = make_console()
    t = Table(title="alerts")
    for col in ("alert", "host", "status", "page", "attempts", "flaps", "last seen", "note"):
        t.add_column(col)
    for a in doc["alerts"]:
        page = a["page"] + (" +escalated" if a["escalated"] else "")
        t.add_row(a["alertname"], a["host"] or "-", a["status"], page, str(a["attempts"]), str(a["flaps"]),
                  _ago(a["last_seen"]), escape(a["note"]))  # fmt: skip
    c.print(t)
    t = Table(title="remediations")
    for col in ("#", "runbook", "host", "attempt", "state", "step", "run", "error"):
        t.add_column(col)
    for r in doc["remediations"][-30:]:
        t.add_row(str(r["id"]), r["runbook"], r["host"], str(r["attempt"]), r["state"], r["step"], r["run_id"],
                  escape((r["error"] or "")[:120]))  # fmt: skip
    c.print(t)
    for rb, b in doc["breakers"].items():
        if b["open_until"]:
            c.print(f"[red]breaker open[/red] for {rb} until {time.strftime('%H:%M:%S', time.localtime(b['open_until']))}")


@alertd.command("check-policy")
@click.argument("policy_file", type=click.Path(path_type=Path))
@click.option("--runbooks", "runbook_dirs", multiple=True, type=click.Path(path_type=Path))
def check_policy_cmd(policy_file: Path, runbook_dirs: tuple[Path, ...]) -> None:
    """Validate a policy file and that the runbooks it names exist."""
    from rich.table import Table

    from iotex_ops.remediation import policy as policy_mod
    from iotex_ops.runbook import loader

    pol = policy_mod.load(policy_file)
    books = loader.discover(runbook_dirs)
    missing = sorted(rb for rb in pol.runbooks() if rb not in books)
    if missing:
        raise OpsError(f"{policy_file}: runbook(s) not found: {', '.join(missing)}; known: {', '.join(sorted(books))}")
    c = make_console()
    t = Table(title=f"{policy_file}")
    for col in ("alert", "runbook", "params", "max attempts", "once within"):
        t.add_column(col)
    for r in pol.remediations.values():
        t.add_row(r.alert, r.runbook, json.dumps(dict(r.params)), str(r.max_attempts), f"{r.once_within_s:g}s")
    c.print(t)
    c.print(
        f"limits: {pol.max_concurrent} at once, one per host, {pol.rate_starts} starts per {pol.rate_per_s:g}s; "
        f"breaker after {pol.breaker_failures} failures for {pol.breaker_open_s:g}s; pages resolve after "
        f"{pol.resolve_after_s:g}s resolved"
    )
