"""`iotex-node`: keygen, init, run, testnet and the local admin commands."""

from __future__ import annotations

import getpass
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import click

from iotex_node import __version__
from iotex_node.errors import NodeError


def _fail(exc: Exception) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(2)


EXIT_DATABASE = 3  # `run`: the database is damaged or missing; restarting would not help


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NodeError as exc:
            _fail(exc)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="iotex-node")
def main() -> None:
    """The iotex delegate node."""


def _password(password_file: Path | None, confirm: bool) -> str:
    from iotex_node.config import read_secret_file

    if password_file is not None:
        return read_secret_file(password_file, "password")
    env = os.environ.get("IOTEX_KEYSTORE_PASSWORD")
    if env is not None:
        return env
    pw = getpass.getpass("keystore password: ")
    if confirm and getpass.getpass("repeat password: ") != pw:
        raise click.UsageError("passwords differ")
    return pw


@main.command()
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Keystore file to write.")
@click.option("--password-file", type=click.Path(path_type=Path), help="File (mode 0600) holding the password.")
@click.option("--json", "as_json", is_flag=True, help="Print the address as JSON.")
def keygen(out: Path, password_file: Path | None, as_json: bool) -> None:
    """Create a new key in an encrypted keystore; print its address (never the key)."""
    from iotex_node.crypto import keystore
    from iotex_node.crypto.keys import PrivateKey

    if out.exists():
        raise click.UsageError(f"{out} exists; refusing to overwrite a keystore")
    key = PrivateKey()
    keystore.write(out, key, _password(password_file, confirm=True))
    click.echo(json.dumps({"address": key.address, "keystore": str(out)}) if as_json else key.address)


@main.command()
@click.option("--home", type=click.Path(path_type=Path), required=True)
@click.option("--genesis", "genesis_file", type=click.Path(path_type=Path, exists=True), required=True)
@click.option("--keystore", "keystore_file", type=click.Path(path_type=Path, exists=True), required=True)
@click.option("--password-file", type=click.Path(path_type=Path, exists=True), required=True)
@click.option("--name", default="node")
@click.option("--p2p-listen", default="127.0.0.1:4689")
@click.option("--api-listen", default="127.0.0.1:14014")
@click.option("--peer", "peers", multiple=True, help="host:port of a peer (repeatable).")
def init(home: Path, genesis_file: Path, keystore_file: Path, password_file: Path, name: str,
         p2p_listen: str, api_listen: str, peers: tuple[str, ...]) -> None:  # fmt: skip
    """Create a node home: config, admin token, key and an initialized database."""
    import shutil

    from iotex_node import config as config_mod
    from iotex_node import genesis as genesis_mod
    from iotex_node.chain import Chain
    from iotex_node.crypto import keystore

    g = genesis_mod.load(genesis_file)
    pw = config_mod.read_secret_file(password_file, "password")
    key = keystore.read(keystore_file, pw)  # fail now, not at first start
    home.mkdir(parents=True, exist_ok=True)
    if (home / config_mod.CONFIG_FILE).exists():
        raise click.UsageError(f"{home} is already a node home")
    shutil.copyfile(genesis_file, home / "genesis.json")
    shutil.copyfile(keystore_file, home / "keystore.json")
    os.chmod(home / "keystore.json", 0o600)
    config_mod.write_secret_file(home / "keystore.pass", pw)
    config_mod.write_secret_file(home / config_mod.ADMIN_TOKEN, secrets.token_urlsafe(32))
    cfg = config_mod.NodeConfig(home=home, name=name, p2p_listen=p2p_listen, api_listen=api_listen, peers=list(peers))
    cfg.write()
    config_mod.load(home)
    (home / "data").mkdir(exist_ok=True)
    Chain.initialize(g, cfg.path(cfg.database))
    click.echo(f"initialized {home} for {key.address} on chain {g.chain_id}")


@main.command()
@click.option("--home", type=click.Path(path_type=Path), required=True)
def run(home: Path) -> None:
    """Run the node in the foreground until SIGTERM. Exit status 3: its database is damaged or missing (a
    service manager must not restart it in a loop: systemd's RestartPreventExitStatus=3; restore it)."""
    from iotex_node import startup
    from iotex_node.errors import StorageError

    try:
        code = startup.run(home)
    except StorageError as exc:
        click.echo(f"error: {exc}", err=True)
        startup.exit_now(EXIT_DATABASE)
    startup.exit_now(code)


@main.command()
@click.option("--delegates", type=click.IntRange(1, 100), default=4, show_default=True)
@click.option("--full-nodes", type=click.IntRange(0, 100), default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--chain-id", type=click.IntRange(1, 2**32 - 1), default=4690, show_default=True)
@click.option("--block-interval-ms", type=click.IntRange(100, 3_600_000), default=1000, show_default=True)
@click.option("--epoch-length", type=click.IntRange(1, 1_000_000), default=20, show_default=True)
@click.option("--accounts", type=click.IntRange(0, 100_000), default=0, help="Funded test accounts for load.")
@click.option("--base-port", type=click.IntRange(0, 65000), default=0, help="0 picks free ports.")
@click.option("--rate-limit", type=float, default=200.0, show_default=True, help="API requests/s per client.")
@click.option("--propose-timeout-ms", type=click.IntRange(100, 600_000), default=1500, show_default=True)
@click.option("--min-fee", type=click.IntRange(0, 2**128 - 1), default=None, show_default="10^16 (0.01 IOTX)",
              help="The genesis minimum fee of every action, in rau (10^18 rau = 1 IOTX).")  # fmt: skip
def testnet(delegates: int, full_nodes: int, out: Path, chain_id: int, block_interval_ms: int, epoch_length: int,
            accounts: int, base_port: int, rate_limit: float, propose_timeout_ms: int, min_fee: int | None) -> None:  # fmt: skip
    """Generate a genesis and one home per node, ready to run on loopback."""
    from iotex_node.genesis import DEFAULT_MIN_FEE
    from iotex_node.testnet import TestnetSpec, generate

    homes = generate(
        TestnetSpec(
            delegates=delegates,
            full_nodes=full_nodes,
            out=out,
            chain_id=chain_id,
            block_interval_ms=block_interval_ms,
            epoch_length=epoch_length,
            accounts=accounts,
            base_port=base_port,
            rate_limit_per_second=rate_limit,
            propose_timeout_ms=propose_timeout_ms,
            min_fee=DEFAULT_MIN_FEE if min_fee is None else min_fee,
        )
    )
    for h in homes:
        click.echo(str(h))


@main.group(cls=_Group)
def admin() -> None:
    """Local admin commands over the node's Unix socket."""


@admin.command()
@click.option("--home", type=click.Path(path_type=Path), required=True)
@click.option("--json", "as_json", is_flag=True)
def status(home: Path, as_json: bool) -> None:
    """Height, finality, version, protocol and peers of a running node."""
    from iotex_node import admin as admin_mod
    from iotex_node import config as config_mod

    s = admin_mod.call(config_mod.load(home), "GET", "/status")
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return
    for k in ("name", "address", "height", "finalized_height", "finalized_hash", "epoch", "version", "protocol",
              "peers", "mempool", "synced", "is_delegate", "api_url"):  # fmt: skip
        click.echo(f"{k:18} {s[k]}")


def _admin_call(home: Path, path: str, body: dict[str, Any] | None, as_json: bool) -> None:
    from iotex_node import admin as admin_mod
    from iotex_node import config as config_mod

    s = admin_mod.call(config_mod.load(home), "POST", path, body if body is not None else {})
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return
    state = "halted: " + s["halted"] if s["halted"] else ("paused" if s["paused"] else ("standby" if s["standby"] else "active"))
    halt = f", halt at {s['halt_height']}" if s["halt_height"] else ""
    click.echo(f"{s['name']}: {state}{halt}; finalized height {s['finalized_height']}")


_home = click.option("--home", type=click.Path(path_type=Path), required=True, help="The running node's home.")
_json = click.option("--json", "as_json", is_flag=True, help="Print the node's status as JSON.")


@admin.command()
@_home
@_json
def pause(home: Path, as_json: bool) -> None:
    """Stop proposing and endorsing (keeps syncing and serving); survives restarts."""
    _admin_call(home, "/pause", None, as_json)


@admin.command()
@_home
@_json
def resume(home: Path, as_json: bool) -> None:
    """Take part in consensus again after a pause."""
    _admin_call(home, "/resume", None, as_json)


class _HaltHeight(click.ParamType):
    """H (a height) or +N (N blocks above the finalized height, resolved by the node when it gets the command)."""

    name = "HEIGHT|+N"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> dict[str, int]:
        text = str(value).strip()
        try:
            return {"after": int(text[1:])} if text.startswith("+") else {"height": int(text)}
        except ValueError:
            self.fail(f"{value!r} is not a height (H) nor a number of blocks from now (+N)", param, ctx)


@admin.command("halt-at")
@click.argument("height", type=_HaltHeight(), required=False)
@click.option("--clear", is_flag=True, help="Remove the scheduled halt (and leave a halt reached by it).")
@_home
@_json
def halt_at(height: dict[str, int] | None, clear: bool, home: Path, as_json: bool) -> None:
    """Finalize up to and including HEIGHT, then stop participating.

    HEIGHT is a block height, or +N: N blocks above the finalized height, resolved by the node itself when
    it receives the command (the chain cannot move past it meanwhile, as it can between reading the height
    and sending H). The status printed afterwards shows the height it chose."""
    if clear == (height is not None):
        raise click.UsageError("give a HEIGHT (or +N) or --clear")
    _admin_call(home, "/halt", {"clear": True} if clear else height, as_json)


@admin.command()
@_home
@_json
def standby(home: Path, as_json: bool) -> None:
    """Become a hot standby: synced, not signing."""
    _admin_call(home, "/standby", None, as_json)


@admin.command("schedule-protocol")
@click.argument("version", type=click.IntRange(1, 1000))
@click.option("--height", type=click.IntRange(1, 2**62), required=True, help="First height the protocol applies to.")
@click.option("--block-reward", help="New block reward from that height (smallest unit).")
@_home
@_json
def schedule_protocol(version: int, height: int, block_reward: str | None, home: Path, as_json: bool) -> None:
    """Schedule a protocol activation (run on every delegate: it must be agreed network-wide)."""
    body: dict[str, Any] = {"version": version, "height": height}
    if block_reward is not None:
        body["block_reward"] = block_reward
    _admin_call(home, "/protocols", body, as_json)


@admin.command()
@click.option("--force", is_flag=True, help="Activate even if this delegate key signed elsewhere just now.")
@_home
@_json
def activate(force: bool, home: Path, as_json: bool) -> None:
    """Leave standby and sign as the delegate (refused while another node signs with its key)."""
    _admin_call(home, "/activate", {"force": force}, as_json)


@admin.command()
@click.option("--force", is_flag=True, help="Promote even if the key signed elsewhere just now (the fence holds).")
@_home
@_json
def promote(force: bool, home: Path, as_json: bool) -> None:
    """Make this standby the primary: it signs from the fence on (above any height its key's other holder
    can have signed); refused while another node was heard signing with the key lately."""
    _admin_call(home, "/promote", {"force": force}, as_json)


@admin.command()
@_home
@_json
def demote(home: Path, as_json: bool) -> None:
    """Make this primary a standby: it stops signing at once and keeps following the chain."""
    _admin_call(home, "/demote", None, as_json)


@admin.command()
@click.option("--from", "first", type=click.IntRange(0), default=0, help="First height.")
@click.option("--to", "last", type=click.IntRange(0), default=None, help="Last height (default: all).")
@_home
@click.option("--json", "as_json", is_flag=True, help="Accepted for symmetry: the output is always JSON.")
def signed(first: int, last: int | None, home: Path, as_json: bool) -> None:
    """What this node signed (height, round, kind, block hash), as JSON: its signing history."""
    from iotex_node import admin as admin_mod
    from iotex_node import config as config_mod

    q = f"/signed?from={first}" + (f"&to={last}" if last is not None else "")
    click.echo(json.dumps(admin_mod.call(config_mod.load(home), "GET", q), indent=1))


from iotex_node.cli_maintenance import backups, db, restore, rollback, set_standby, snapshot  # noqa: E402 - does not import this module
from iotex_node.cli_release import release  # noqa: E402 - registered last; it does not import this module

main.add_command(release)
main.add_command(rollback)
main.add_command(snapshot)
main.add_command(restore)
main.add_command(db)
main.add_command(backups)

main.add_command(set_standby)


if __name__ == "__main__":
    main()
