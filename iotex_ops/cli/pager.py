"""`iotex-ops pager`: the lab's PagerDuty receiver, its incidents and faults, and test events.

Registered in iotex_ops/cli/__init__.py with `main.add_command(pager)`; also `python -m iotex_ops.cli pager ...`.
The routing key is never printed: not by `send`, not in `--json` output, not in errors.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from iotex_ops.cli.common import OpsGroup, make_console
from iotex_ops.paging import events as ev
from iotex_ops.paging.errors import DeliveryError, PagingError
from iotex_ops.paging.secret import ENV_VAR, RoutingKey

if TYPE_CHECKING:
    from iotex_ops.paging.receiver import LabClient, Receiver

# The receiver (ssl, the lab CA's cryptography), the PagerDuty client (httpx) and rich are imported by the
# commands that use them.

_DIR_HELP = "The receiver's directory (default: $IOTEX_OPS_PAGER_DIR, else <lab root>/pager)."
_DIR = click.option("--dir", "dir_", type=click.Path(path_type=Path), help=_DIR_HELP)
_URL = click.option("--url", help="A receiver's base URL (https://127.0.0.1:PORT) instead of --dir.")
_CA = click.option("--ca-file", type=click.Path(path_type=Path), help="CA certificate (PEM) to trust for --url.")
_TOKEN = click.option("--token-file", type=click.Path(path_type=Path), help="The receiver's admin token file, with --url.")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _dir(dir_: Path | None) -> Path:
    from iotex_ops.paging.receiver import default_dir

    return dir_ if dir_ is not None else default_dir()


def _lab_client(dir_: Path | None, url: str | None, ca_file: Path | None, token_file: Path | None) -> LabClient:
    from iotex_ops.paging.receiver import LabClient

    if url is None:
        return LabClient.for_dir(_dir(dir_))
    if dir_ is not None:
        raise PagingError("give --dir or --url, not both")
    if token_file is None:
        raise PagingError("--url needs --token-file (the receiver's admin_token file)")
    try:
        token = token_file.expanduser().read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise PagingError(f"admin token file {token_file}: {exc.strerror}") from None
    return LabClient(url, ca_file, token)


@click.group(cls=OpsGroup)
def pager() -> None:
    """Page the on-call delegate (PagerDuty Events API v2) and run the lab's PagerDuty receiver."""


@pager.command("receiver")
@_DIR
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="0 picks a free port.")
def receiver_cmd(dir_: Path | None, port: int) -> None:
    """Run the lab's PagerDuty receiver (HTTPS on 127.0.0.1) in the foreground until SIGTERM or Ctrl-C."""
    from iotex_ops.paging.receiver import Receiver

    d = _dir(dir_)

    def ready(r: Receiver) -> None:
        console = make_console(width=None if sys.stdout.isatty() else 200)
        console.print(f"lab PagerDuty receiver on [bold]{r.url}[/bold]")
        console.print(f"  CA file:          {r.ca_file}")
        console.print(f"  routing key file: {r.routing_key_file}")
        console.print(f"  admin token file: {r.admin_token_file}")
        console.print(f"  state:            {r.dir}")
        sys.stdout.flush()

    Receiver(d, port=port).serve_forever(on_ready=ready)
    click.echo("receiver stopped")


def _when(value: str | None) -> str:
    return value.replace("T", " ").rstrip("Z")[:19] if value else "-"


@pager.command("incidents")
@_DIR
@_URL
@_CA
@_TOKEN
@click.option("--status", type=click.Choice(ev.STATUSES), help="Only incidents with this status.")
@_JSON
def incidents_cmd(
    dir_: Path | None, url: str | None, ca_file: Path | None, token_file: Path | None, status: str | None, as_json: bool
) -> None:
    """List the receiver's incidents: with --dir from its stored state (running or not), with --url over HTTPS."""
    from rich.markup import escape
    from rich.table import Table

    from iotex_ops.paging.receiver import read_state

    if url is not None:
        incidents = _lab_client(dir_, url, ca_file, token_file).incidents(status)
    else:
        store = read_state(_dir(dir_))
        try:
            incidents = store.incidents(status)
        finally:
            store.close()
    if as_json:
        click.echo(json.dumps(incidents, indent=2))
        return
    table = Table(title=f"incidents ({len(incidents)})")
    for col in ("id", "status", "dedup key", "severity", "summary", "events", "created", "acknowledged", "resolved"):
        table.add_column(col)
    colour = {"triggered": "red", "acknowledged": "yellow", "resolved": "green"}
    for i in incidents:
        table.add_row(
            i["id"],
            f"[{colour[i['status']]}]{i['status']}[/]",
            escape(i["dedup_key"]),
            i["severity"] or "",
            escape((i["summary"] or "")[:80]),
            str(i["event_count"]),
            _when(i["created_at"]),
            _when(i["acknowledged_at"]),
            _when(i["resolved_at"]),
        )
    make_console(width=None if sys.stdout.isatty() else 200).print(table)


@pager.command("events")
@_DIR
@_JSON
def events_cmd(dir_: Path | None, as_json: bool) -> None:
    """List the events the receiver accepted, in the order it received them: pages, then change events.

    With --json, one list: each page event as before, and each change event with `event_action` "change"
    (no dedup key, no incident), in the order received."""
    from rich.markup import escape
    from rich.table import Table

    from iotex_ops.paging.receiver import read_state

    store = read_state(_dir(dir_))
    try:
        events = store.events()
        changes = store.changes()
    finally:
        store.close()
    if as_json:
        as_events = [{"seq": c["seq"], "received_at": c["received_at"], "event_action": "change", "dedup_key": None,
                      "incident_id": None, "effect": "recorded", "event": c["event"]} for c in changes]  # fmt: skip
        merged = sorted([*events, *as_events], key=lambda e: (e["received_at"], e["event_action"] == "change", e["seq"]))
        click.echo(json.dumps(merged, indent=2))
        return
    console = make_console(width=None if sys.stdout.isatty() else 200)
    table = Table(title=f"events ({len(events)})")
    for col in ("seq", "received", "action", "dedup key", "incident", "effect"):
        table.add_column(col)
    for e in events:
        incident = e["incident_id"] or "-"
        table.add_row(str(e["seq"]), _when(e["received_at"]), e["event_action"], escape(e["dedup_key"]), incident, e["effect"])
    console.print(table)
    table = Table(title=f"change events ({len(changes)}): announced, paging nobody")
    for col in ("seq", "received", "summary", "source", "run"):
        table.add_column(col)
    for c in changes:
        details = (c["event"].get("payload") or {}).get("custom_details") or {}
        run = str(details.get("run_id") or "-") if isinstance(details, dict) else "-"
        table.add_row(str(c["seq"]), _when(c["received_at"]), escape(c["summary"]), escape(c["source"] or "-"), escape(run))
    console.print(table)


@pager.command("faults")
@_DIR
@_URL
@_CA
@_TOKEN
@click.option("--status", type=int, help="Answer this status to enqueue requests: 429, 5xx, or 400.")
@click.option("--count", type=click.IntRange(1), help="For this many requests.")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), help="For this long.")
@click.option("--retry-after", type=click.FloatRange(min=0), help="Send Retry-After with this many seconds.")
@click.option("--clear", is_flag=True, help="Remove every fault.")
@_JSON
def faults_cmd(
    dir_: Path | None,
    url: str | None,
    ca_file: Path | None,
    token_file: Path | None,
    status: int | None,
    count: int | None,
    seconds: float | None,
    retry_after: float | None,
    clear: bool,
    as_json: bool,
) -> None:
    """Make a running receiver fail enqueue requests for a while (to rehearse a PagerDuty outage); with no
    --status, list the faults in force."""
    client = _lab_client(dir_, url, ca_file, token_file)
    if clear:
        client.clear_faults()
    if status is not None:
        if (count is None) == (seconds is None):
            raise PagingError("give --count N or --seconds S with --status")
        client.set_fault(status, count=count, seconds=seconds, retry_after_s=retry_after)
    elif count is not None or seconds is not None:
        raise PagingError("--count and --seconds need --status")
    faults = client.faults()
    if as_json:
        click.echo(json.dumps(faults, indent=2))
        return
    if not faults:
        click.echo("no faults: enqueue requests are processed normally")
    for f in faults:
        span = f"{f['remaining']} more request(s)" if f["remaining"] is not None else f"{f['seconds_left']:.1f} s more"
        after = f", Retry-After {f['retry_after']:g} s" if f["retry_after"] is not None else ""
        click.echo(f"answering {f['status']} for {span}{after}")


@pager.command("send")
@click.argument("action", type=click.Choice((*ev.ACTIONS, ev.CHANGE)))
@click.option("--dedup-key", help="Required for acknowledge and resolve; generated for a trigger without one.")
@click.option("--summary", default="iotex-ops test page", show_default=True)
@click.option("--source", default="iotex-ops", show_default=True)
@click.option("--severity", type=click.Choice(ev.SEVERITIES), default="info", show_default=True)
@click.option("--runbook-url", help="Link the trigger to a runbook.")
@click.option("--detail", "details", multiple=True, metavar="KEY=VALUE", help="A custom detail (repeatable).")
@_DIR
@click.option("--url", help="Events API enqueue URL (https://.../v2/enqueue) instead of the receiver in --dir.")
@_CA
@click.option("--routing-key-file", type=click.Path(path_type=Path), help=f"Default: ${ENV_VAR}, else the lab's key file.")
@_JSON
def send_cmd(
    action: str,
    dedup_key: str | None,
    summary: str,
    source: str,
    severity: str,
    runbook_url: str | None,
    details: tuple[str, ...],
    dir_: Path | None,
    url: str | None,
    ca_file: Path | None,
    routing_key_file: Path | None,
    as_json: bool,
) -> None:
    """Send one event now through the real client (one attempt; no queue): to check a routing key, a URL
    and TLS end to end."""
    from iotex_ops.paging.client import deliver, make_client
    from iotex_ops.paging.receiver import find

    lab_key_file: str | None = None
    if url is None:
        info = find(_dir(dir_))
        url, lab_key_file = info["url"], info["routing_key_file"]
        ca_file = ca_file or Path(info["ca_file"])
    elif dir_ is not None:
        raise PagingError("give --dir or --url, not both")
    if routing_key_file is not None:
        key = RoutingKey.from_file(routing_key_file)
    elif ENV_VAR in os.environ:
        key = RoutingKey.from_env()
    elif lab_key_file is not None:
        key = RoutingKey.from_file(lab_key_file)
    else:
        raise PagingError(f"no routing key: give --routing-key-file or set ${ENV_VAR}")
    custom: dict[str, str] = {}
    for d in details:
        k, sep, v = d.partition("=")
        if not sep or not k:
            raise PagingError(f"--detail must be KEY=VALUE, not {d!r}")
        custom[k] = v
    if action == ev.CHANGE:
        event = ev.change(summary, source, custom_details=custom or None)
    elif action == "trigger":
        event = ev.trigger(
            summary, source, severity=severity, dedup_key=dedup_key, runbook_url=runbook_url, custom_details=custom or None
        )
    elif dedup_key is None:
        raise PagingError(f"{action} needs --dedup-key")
    else:
        event = ev.acknowledge(dedup_key) if action == "acknowledge" else ev.resolve(dedup_key)
    client = make_client(key, url, None if ca_file is None else str(ca_file))
    try:
        outcome = deliver(client, event)
    finally:
        client.close()
    if not outcome.accepted:
        raise DeliveryError(f"{action} not accepted by {url}: {outcome.message}", outcome.status)
    dedup = outcome.dedup_key or event.get("dedup_key")
    if as_json:
        click.echo(json.dumps({"status": outcome.status, "message": outcome.message, "dedup_key": dedup, "url": url}))
    else:
        click.echo(f"{action} accepted by {url} (HTTP {outcome.status}); dedup_key {dedup}")
