"""`iotex-ops release keygen | publish | channel list | policy | watch | approve | history`: signed releases,
their channel and the update policy that rolls them (docs/releases.md).

Registered in iotex_ops/cli/__init__.py; the logic is in iotex_ops/releases/ and the node's public
iotex_node.signed_release. Exit status: 0; 2 for what the operator must fix (`error: ...`, no traceback).
"""

from __future__ import annotations

import getpass
import json
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from iotex_ops.cli.common import OpsGroup, make_console
from iotex_ops.errors import OpsError

_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
_INV = click.option("-i", "--inventory", "inventory_path", type=click.Path(path_type=Path),
                    help="Inventory (its releases.yml beside hosts.yml); default: the running lab's.")  # fmt: skip
_STATE = click.option("--state-dir", type=click.Path(path_type=Path), help="Default: $IOTEX_OPS_STATE_DIR.")


@contextmanager
def _as_ops_errors() -> Iterator[None]:
    """The node's ReleaseError (a refused manifest, a bad key file) as an OpsError: one line, exit 2."""
    from iotex_node.errors import NodeError

    try:
        yield
    except NodeError as exc:
        raise OpsError(str(exc)) from None
    except OSError as exc:
        raise OpsError(f"{getattr(exc, 'filename', '') or ''}: {exc.strerror or exc}".lstrip(": ")) from None


def _echo_json(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, sort_keys=True))


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(t)) if t else "-"


def _parse_expiry(text: str) -> float:
    from iotex_ops.durations import parse_duration

    try:
        return float(parse_duration(text))
    except (ValueError, OpsError) as exc:
        raise OpsError(f"--expires {text!r}: a duration such as 30d or 12h ({exc})") from None


def _inventory(path: Path | None) -> Path:
    if path is None:
        from iotex_ops.cli.runbook import default_inventory

        return Path(default_inventory())
    return path


def _network_id(inventory: Path) -> str:
    from iotex_ops import inventory as inv_mod
    from iotex_ops import network as network_mod

    return network_mod.network_id(inv_mod.load(inventory))


@click.group(cls=OpsGroup)
def release() -> None:
    """Signed releases: keys, publishing into a channel, update policies, the watcher that rolls them."""


@release.command()
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Private key file to create (mode 0600).")
@_JSON
def keygen(out: Path, as_json: bool) -> None:
    """Make a publisher's Ed25519 key: OUT (0600, never overwritten); prints the public key for inventories."""
    from iotex_node.signed_release import PrivateKey

    with _as_ops_errors():
        key = PrivateKey.generate()
        key.save(out)
    doc = {"key_file": str(out), "public_key": key.public.text(), "key_id": key.public.id}
    if as_json:
        _echo_json(doc)
    else:
        click.echo(f"wrote {out} (mode 0600); public key (trusted_keys in releases.yml):\n{key.public.text()}")


@release.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--to", "to", type=click.Path(path_type=Path), required=True, help="The channel tree (a directory).")
@click.option("--channel", default="stable", show_default=True, help="stable, candidate, ...")
@click.option("--kind", type=click.Choice(["patch", "minor", "major", "protocol"]), required=True)
@click.option("--key", "key_file", type=click.Path(path_type=Path), required=True, help="The publisher's private key.")
@click.option("--expires", default="30d", show_default=True, help="How long the manifest is valid.")
@_JSON
def publish(artifact: Path, to: Path, channel: str, kind: str, key_file: Path, expires: str, as_json: bool) -> None:
    """Sign ARTIFACT (from `iotex-node release build`) into CHANNEL of the tree TO, with the next sequence."""
    from iotex_node.signed_release import PrivateKey
    from iotex_ops.releases import channel as channel_mod

    with _as_ops_errors():
        key = PrivateKey.load(key_file)
        p = channel_mod.publish(to, artifact, key, channel=channel, kind=kind, expires_in_s=_parse_expiry(expires))
    if as_json:
        _echo_json(p.to_json())
    else:
        i = p.info
        click.echo(f"published {i.version} ({i.kind}) on {i.channel}: sequence {i.sequence}, expires {_when(i.expires)}")
        click.echo(f"manifest {p.manifest} (signed by {key.public.id})")


@release.group("channel", cls=OpsGroup)
def channel_group() -> None:
    """A release channel: its signed manifests."""


@channel_group.command("list")
@click.option("--source", default=None, help="Channel tree: a directory or http(s) URL [default: the inventory's releases.yml].")
@click.option("--channel", "channels", multiple=True, help="Channels to list (repeatable) [default: stable, candidate].")
@click.option("--trusted-key", "keys", multiple=True, help="ed25519:<hex> to verify with [default: the inventory's].")
@_INV
@_JSON
def channel_list(
    source: str | None, channels: tuple[str, ...], keys: tuple[str, ...], inventory_path: Path | None, as_json: bool
) -> None:
    """The channel's manifests, newest first, each verified (signature, key, expiry) or refused by name."""
    from iotex_node.signed_release import parse_keys
    from iotex_ops.releases import channel as channel_mod
    from iotex_ops.releases import policy as policy_mod

    with _as_ops_errors():
        trusted = parse_keys(keys, "--trusted-key") if keys else None
        if source is None or trusted is None:
            pol = policy_mod.load(_inventory(inventory_path))
            source = source or pol.source
            trusted = trusted or pol.trusted()
        rows = channel_mod.listing(channel_mod.Source(source), channels or ("stable", "candidate"), trusted, time.time())
    if as_json:
        _echo_json({"source": source, "manifests": [r.to_json() for r in rows]})
        return
    from rich.table import Table

    t = Table(title=f"release channel {source}")
    for col in ("channel", "version", "kind", "seq", "published", "expires", "status"):
        t.add_column(col)
    for r in rows:
        style = "green" if r.status == "ok" else "red"
        t.add_row(r.channel, r.version, r.kind, str(r.sequence), _when(r.published), _when(r.expires), f"[{style}]{r.status}[/]")
    make_console().print(t)


def _watcher(inventory_path: Path | None, state_dir: Path | None, say: Callable[[str], None] = lambda s: None) -> Any:
    from iotex_ops.releases import policy as policy_mod
    from iotex_ops.releases.edge import EngineRollout, PagerNotify
    from iotex_ops.releases.watcher import Watcher
    from iotex_ops.runbook.store import default_state_dir

    inv = _inventory(inventory_path)
    state = state_dir or default_state_dir()
    with _as_ops_errors():
        pol = policy_mod.load(inv)
        return Watcher(
            _network_id(inv), pol, EngineRollout(inv, state), state, notify=PagerNotify.from_inventory(inv, state), say=say
        )


@release.command()
@_INV
@_STATE
@_JSON
def policy(inventory_path: Path | None, state_dir: Path | None, as_json: bool) -> None:
    """The network's update policy, the channel's newest release and what the policy says about it now."""
    from iotex_ops.releases.policy import decide

    w = _watcher(inventory_path, state_dir)
    with _as_ops_errors():
        now = time.time()
        info, refused = w.latest(now)
        d = decide(w.policy, info, w.rollout.running(), now, info.version in w.ledger.approvals()) if info else None
    doc = {"policy": w.policy.as_dict(), "latest": info.to_json() if info else None,
           "decision": d.as_dict() if d else None, "refused": refused}  # fmt: skip
    if as_json:
        _echo_json(doc)
        return
    p = w.policy
    click.echo(f"channel {p.channel} at {p.source}; automatic {sorted(p.automatic)}, approval {sorted(p.approval)}, "
               f"scheduled {sorted(p.scheduled)}; hold {p.hold or '-'}")  # fmt: skip
    click.echo(f"latest: {info.version} ({info.kind}, sequence {info.sequence})" if info else "latest: none")
    if d:
        click.echo(f"decision: {d.action}: {d.reason}")
    for r in refused:
        click.echo(f"refused: {r}")


@release.command()
@_INV
@_STATE
@click.option("--once", is_flag=True, help="One look at the channel, then exit.")
@click.option("--interval", type=click.FloatRange(1, 86400), default=60.0, show_default=True, help="Seconds between looks.")
@_JSON
def watch(inventory_path: Path | None, state_dir: Path | None, once: bool, interval: float, as_json: bool) -> None:
    """Watch the channel: roll, ask for approval or hold as the network's releases.yml says (Ctrl-C stops)."""
    w = _watcher(inventory_path, state_dir, say=lambda s: None if as_json else click.echo(s))
    while True:
        with _as_ops_errors():
            res = w.tick()
        if as_json:
            click.echo(json.dumps(res.as_dict(), sort_keys=True))
        elif res.decision is not None:
            click.echo(f"{res.decision.version}: {res.decision.action}: {res.decision.reason}")
        if once:
            return
        time.sleep(interval)


@release.command()
@click.argument("version")
@_INV
@_STATE
@click.option("--height", type=click.IntRange(1), default=None, help="The halt height the delegates agreed (protocol changes).")
@click.option("--note", default="")
@_JSON
def approve(
    version: str, inventory_path: Path | None, state_dir: Path | None, height: int | None, note: str, as_json: bool
) -> None:
    """Approve release VERSION on this network (a minor release, or a protocol change with --height)."""
    from iotex_node.release import validate_version
    from iotex_ops.releases.watcher import Ledger
    from iotex_ops.releases.watcher import state_dir as releases_dir
    from iotex_ops.runbook.store import default_state_dir

    with _as_ops_errors():
        validate_version(version)
    inv = _inventory(inventory_path)
    ledger = Ledger(releases_dir(state_dir or default_state_dir(), _network_id(inv)))
    row = ledger.approve(version, f"{getpass.getuser()}@{socket.gethostname()}", time.time(), height=height, note=note)
    if as_json:
        _echo_json(row)
    else:
        click.echo(f"approved {version}" + (f" at height {height}" if height else "") + "; the watcher rolls it in its window")


@release.command()
@_INV
@_STATE
@_JSON
def history(inventory_path: Path | None, state_dir: Path | None, as_json: bool) -> None:
    """The watcher's record on this network: decisions, approvals, rollouts and their run ids."""
    from iotex_ops.releases.watcher import Ledger
    from iotex_ops.releases.watcher import state_dir as releases_dir
    from iotex_ops.runbook.store import default_state_dir

    inv = _inventory(inventory_path)
    rows = Ledger(releases_dir(state_dir or default_state_dir(), _network_id(inv))).entries()
    if as_json:
        _echo_json({"entries": rows})
        return
    from rich.table import Table

    t = Table(title="release history")
    for col in ("at", "version", "action", "reason", "run"):
        t.add_column(col)
    for r in rows:
        t.add_row(
            _when(r.get("at")),
            str(r.get("version")),
            str(r.get("action")),
            str(r.get("reason", ""))[:90],
            str(r.get("run_id") or ""),
        )
    make_console().print(t)
