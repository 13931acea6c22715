"""`iotex-ops account | action | stake | chain | rewards`: the delegate's client (docs/client.md).

Thin: every command parses, calls `iotex_ops.client`, and prints text or, with --json, one JSON object (an
error too: {"error": {"code", "message", "exit_code"}}). Exit statuses are `iotex_ops.client.errors`'s.
Only click is imported at the top; `balance` loads no signing library (tests/ops/test_cli_startup.py).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from iotex_ops.cli.common import OpsCommand, OpsGroup
from iotex_ops.errors import OpsError

if TYPE_CHECKING:
    from iotex_ops.client.config import ClientConfig
    from iotex_ops.client.secrets import PasswordSource
    from iotex_ops.client.wallet import Outcome, Preview
    from iotex_ops.nodeapi import NodeClient

DEFAULT_WAIT_S = 60.0


def _fail(ctx: click.Context | None, exc: OpsError) -> NoReturn:
    from iotex_ops.client.errors import ClientError

    err = exc if isinstance(exc, ClientError) else ClientError(str(exc), getattr(exc, "code", None) or "node_error")
    if ctx is not None and ctx.meta.get("iotex_json") and not err.emitted:
        click.echo(json.dumps(err.to_json()))
    click.echo(f"{click.style('error:', fg='red')} {err}", err=True)
    sys.exit(err.exit_code)


class ClientCommand(OpsCommand):
    """An OpsCommand whose errors keep their exit status and, with --json, are one JSON object on stdout."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return click.Command.invoke(self, ctx)  # not OpsCommand's: it would make every error exit 2
        except OpsError as exc:
            _fail(ctx, exc)


class ClientGroup(OpsGroup):
    command_class = ClientCommand
    group_class = type

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return click.Group.invoke(self, ctx)
        except OpsError as exc:
            _fail(ctx, exc)


# --- shared options ------------------------------------------------------------------------------------


def _set_json(ctx: click.Context, _p: click.Parameter, value: bool) -> bool:
    if value:
        ctx.meta["iotex_json"] = True
    return value


def common(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--endpoint", metavar="URL", help="The node's API (default: $IOTEX_OPS_ENDPOINT, then the config's).")(f)
    f = click.option("--json", "as_json", is_flag=True, is_eager=True, callback=_set_json, help="One JSON object on stdout.")(f)
    return f


def signing(f: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option(
            "--from", "sender", metavar="ACCOUNT", help="Alias or address whose keystore signs (default: the default account)."
        ),
        click.option(
            "--password-file",
            type=click.Path(path_type=Path, dir_okay=False),
            help="The keystore's password: this file's first line.",
        ),
        click.option("--password-env", metavar="NAME", help="The keystore's password: this environment variable."),
        click.option("--password-stdin", is_flag=True, help="The keystore's password: the first line of stdin."),
        click.option("--fee", metavar="AMOUNT", help="Fee (IOTX, or NNNrau); default: the node's minimum fee."),
        click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation."),
        click.option("--wait/--no-wait", default=True, show_default=True, help="Follow the action until it is final."),
        click.option(
            "--timeout",
            type=click.FloatRange(0.5, 3600),
            default=DEFAULT_WAIT_S,
            show_default=True,
            help="Seconds --wait follows it.",
        ),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _cfg() -> ClientConfig:
    from iotex_ops.client import config

    return config.load()


def _node(cfg: ClientConfig, endpoint: str | None) -> NodeClient:
    from iotex_ops.nodeapi import NodeClient

    return NodeClient(cfg.endpoint_for(endpoint), max_retry_wait=30.0)


def _emit(as_json: bool, doc: Any, lines: list[str]) -> None:
    if as_json:
        click.echo(json.dumps(doc))
    else:
        for line in lines:
            click.echo(line)


def _passwords(kw: dict[str, Any]) -> PasswordSource:
    from iotex_ops.client.secrets import PasswordSource

    return PasswordSource(kw.pop("password_file", None), kw.pop("password_env", None), bool(kw.pop("password_stdin", False)))


def _confirm(yes: bool, lines: list[str], question: str = "Sign and send it?") -> None:
    from iotex_ops.client.errors import EXIT_NOT_CONFIRMED, ClientError

    for line in lines:
        click.echo(line, err=True)
    if yes:
        return
    if not sys.stdin.isatty():
        raise ClientError(
            "not confirmed: stdin is not a terminal to ask on; pass --yes to go ahead", "not_confirmed", EXIT_NOT_CONFIRMED
        )
    if not click.confirm(question, default=False, err=True):
        raise ClientError("declined: nothing was sent", "declined", EXIT_NOT_CONFIRMED)


def _send(
    kw: dict[str, Any], type_: str, payload: Callable[[ClientConfig, NodeClient], dict[str, Any]], receives: int = 0
) -> None:
    """The one path of every action command: resolve, pre-check, show, confirm, unlock, sign, send, follow."""
    from iotex_ops.client import wallet
    from iotex_ops.client.units import iotx, parse_amount

    as_json = kw["as_json"]
    cfg = _cfg()
    node = _node(cfg, kw["endpoint"])
    sender = cfg.resolve(kw["sender"], "sender")
    passwords = _passwords(kw)
    body = payload(cfg, node)
    chain = node.chain()
    fee = parse_amount(kw["fee"], "fee", positive=False) if kw["fee"] else None
    p: Preview = wallet.preview(node.account(sender), chain.min_fee or 1, fee, type_, body, receives)
    _confirm(kw["yes"], p.lines())
    key = wallet.load_key(cfg, sender, passwords.read(f"password for {cfg.name_of(sender) or sender}"))
    signed = wallet.sign(key, chain.chain_id, p)
    h = wallet.submit(node, signed)
    out: Outcome = wallet.follow(node, h, kw["timeout"]) if kw["wait"] else wallet.Outcome(h, "sent")
    doc = {"action": p.to_json(), **out.to_json()}
    text = [f"{out.status}: {h}" + (f" at height {out.height}" if out.height else "")]
    if out.bucket is not None:
        text.append(f"bucket: {out.bucket}")
    if out.error:
        text.append(f"why: {out.error}")
    if out.status == "finalized":
        text.append(f"balance after: about {iotx(p.balance_after)} IOTX")
    problem = out.problem()
    if problem is not None:
        doc.update(problem.to_json())  # one object: what was sent, and why it did not end well
        problem.emitted = True
    _emit(as_json, doc, text)
    if problem is not None:
        raise problem


# --- account -------------------------------------------------------------------------------------------


@click.group(cls=ClientGroup)
def account() -> None:
    """Accounts, keystores, aliases, balances; the client's config (endpoint, default account)."""


@account.command("create")
@click.option("--alias", required=True, help="A name for the new account.")
@click.option("--password-file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--password-env", metavar="NAME")
@click.option("--password-stdin", is_flag=True)
@common
def account_create(alias: str, **kw: Any) -> None:
    """Make a new key, store it encrypted, and name it ALIAS."""
    from iotex_node.sdk import PrivateKey
    from iotex_ops.client import config, wallet

    cfg = _cfg()
    config.check_alias(alias)
    _no_alias_clash(cfg, alias)
    password = _passwords(kw).read("new keystore password", confirm=True)
    address = wallet.save_key(cfg, PrivateKey(), password)
    config.save(cfg.with_alias(alias, address))
    _emit(kw["as_json"], {"alias": alias, "address": address}, [f"{alias}: {address}"])


def _no_alias_clash(cfg: ClientConfig, alias: str) -> None:
    from iotex_ops.client.errors import ClientError

    if alias in cfg.aliases:
        raise ClientError(f"alias {alias!r} already names {cfg.aliases[alias]}", "exists")


@account.command("import")
@click.option("--alias", required=True)
@click.option("--private-key-file", type=click.Path(path_type=Path, dir_okay=False), help="A file holding the private key (hex).")
@click.option("--private-key-stdin", is_flag=True, help="Read the private key (hex) from stdin's first line.")
@click.option("--keystore", type=click.Path(path_type=Path, dir_okay=False), help="An iotex-node keystore file.")
@click.option("--password-file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--password-env", metavar="NAME")
@click.option("--password-stdin", is_flag=True)
@common
def account_import(alias: str, private_key_file: Path | None, private_key_stdin: bool, keystore: Path | None, **kw: Any) -> None:
    """Import a private key (file, stdin or prompt: never an argument) or a keystore, and name it ALIAS.
    The password encrypts the stored key (for --keystore: the keystore's own password)."""
    from iotex_ops.client import config, secrets, wallet
    from iotex_ops.client.errors import ClientError

    cfg = _cfg()
    config.check_alias(alias)
    _no_alias_clash(cfg, alias)
    if keystore is not None and (private_key_file or private_key_stdin):
        raise ClientError("give a private key or a keystore, not both", "bad_input")
    passwords = _passwords(kw)
    if keystore is not None:
        password = passwords.read("keystore password")
        key = wallet.import_keystore(cfg, keystore, password)
    else:
        if private_key_stdin and passwords.stdin:
            raise ClientError("stdin cannot carry both the private key and the password", "bad_input")
        key = wallet.key_from_hex(secrets.read_private_key(private_key_file, private_key_stdin))
        password = passwords.read("new keystore password", confirm=True)
    address = wallet.save_key(cfg, key, password)
    config.save(cfg.with_alias(alias, address))
    _emit(kw["as_json"], {"alias": alias, "address": address}, [f"{alias}: {address}"])


@account.command("list")
@common
def account_list(**kw: Any) -> None:
    """Aliases and stored keys."""
    cfg = _cfg()
    stored = {p.stem for p in cfg.keystores.glob("io1*.json")} if cfg.keystores.exists() else set()
    rows = []
    for addr in sorted(set(cfg.aliases.values()) | stored):
        rows.append(
            {
                "alias": cfg.name_of(addr),
                "address": addr,
                "keystore": addr in stored,
                "default": cfg.default_account in (addr, cfg.name_of(addr)),
            }
        )
    lines = [
        f"{'*' if r['default'] else ' '} {r['alias'] or '-':<16} {r['address']}  {'key' if r['keystore'] else 'watch'}"
        for r in rows
    ]
    _emit(kw["as_json"], {"accounts": rows}, lines or ["no accounts: `iotex-ops account create --alias NAME`"])


@account.command("export")
@click.argument("name")
@click.option("--confirm", "typed", metavar="ADDRESS", help="The account's address, typed: needed when stdin is not a terminal.")
@click.option("--password-file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--password-env", metavar="NAME")
@click.option("--password-stdin", is_flag=True)
@common
def account_export(name: str, typed: str | None, **kw: Any) -> None:
    """Print NAME's private key, after the address is typed back. The one command that shows a secret."""
    from iotex_ops.client import wallet
    from iotex_ops.client.errors import EXIT_NOT_CONFIRMED, ClientError

    cfg = _cfg()
    address = cfg.resolve(name)
    if typed is None:
        if not sys.stdin.isatty():
            raise ClientError(
                "not confirmed: stdin is not a terminal; give --confirm ADDRESS", "not_confirmed", EXIT_NOT_CONFIRMED
            )
        click.echo(f"This prints the private key of {address}: anyone who sees it controls the account.", err=True)
        typed = click.prompt("Type the address to confirm", err=True)
    if typed.strip() != address:
        raise ClientError(
            "not confirmed: the address typed does not match; nothing was shown", "not_confirmed", EXIT_NOT_CONFIRMED
        )
    key = wallet.load_key(cfg, address, _passwords(kw).read(f"password for {name}"))
    _emit(kw["as_json"], {"address": address, "private_key": key.secret().hex()}, [key.secret().hex()])


@account.command("balance")
@click.argument("names", nargs=-1)
@common
def account_balance(names: tuple[str, ...], **kw: Any) -> None:
    """Balance, unclaimed rewards and nonce of each NAME (alias or address; default: the default account)."""
    from iotex_ops.client.units import iotx

    cfg = _cfg()
    node = _node(cfg, kw["endpoint"])
    addresses = [cfg.resolve(n) for n in names] if names else [cfg.resolve(None)]
    rows: list[dict[str, Any]] = []
    for addr in addresses:
        a = node.account(addr)
        rows.append(
            {
                "address": addr,
                "alias": cfg.name_of(addr),
                "balance": str(a.balance),
                "unclaimed_rewards": str(a.unclaimed_rewards),
                "nonce": a.nonce,
                "pending_nonce": a.pending_nonce,
                "height": a.height,
            }
        )
    lines = [
        f"{r['alias'] or r['address']}: {iotx(int(r['balance']))} IOTX (unclaimed rewards {iotx(int(r['unclaimed_rewards']))})"
        for r in rows
    ]
    _emit(kw["as_json"], {"accounts": rows}, lines)


@account.command("nonce")
@click.argument("name", required=False)
@common
def account_nonce(name: str | None, **kw: Any) -> None:
    """The last nonce used and the one the next action takes."""
    cfg = _cfg()
    addr = cfg.resolve(name)
    a = _node(cfg, kw["endpoint"]).account(addr)
    _emit(
        kw["as_json"],
        {"address": addr, "nonce": a.nonce, "pending_nonce": a.pending_nonce},
        [f"{addr}: nonce {a.nonce}, next {a.pending_nonce}"],
    )


@account.command("actions")
@click.argument("name", required=False)
@common
def account_actions(name: str | None, **kw: Any) -> None:
    """The finalized actions an account sent, and the transfers it received (memos included)."""
    from iotex_ops.client.units import iotx

    cfg = _cfg()
    addr = cfg.resolve(name)
    acts = _node(cfg, kw["endpoint"]).account_actions(addr)
    docs = [
        {
            "hash": a.hash,
            "height": a.height,
            "type": a.type,
            "sender": a.sender,
            "nonce": a.nonce,
            "fee": str(a.fee),
            "payload": dict(a.payload),
            "status": a.status,
        }
        for a in acts
    ]
    lines = []
    for a in acts:
        amount = a.payload.get("amount")
        what = f"{a.type} {iotx(int(amount))} IOTX" if amount is not None else a.type
        to = f" to {a.payload['to']}" if "to" in a.payload else ""
        memo = f" memo {a.memo!r}" if a.memo else ""
        lines.append(f"{a.height:>8} {a.hash[:16]} {what}{to}{memo} {a.status}")
    _emit(kw["as_json"], {"address": addr, "actions": docs}, lines or [f"{addr}: no finalized action"])


@account.group("alias", cls=ClientGroup)
def alias_group() -> None:
    """Names for addresses."""


@alias_group.command("set")
@click.argument("name")
@click.argument("address")
@common
def alias_set(name: str, address: str, **kw: Any) -> None:
    """Name ADDRESS as NAME (replacing what NAME named)."""
    from iotex_ops.client import config

    config.save(_cfg().with_alias(name, address))
    _emit(kw["as_json"], {"alias": name, "address": address}, [f"{name}: {address}"])


@alias_group.command("remove")
@click.argument("name")
@common
def alias_remove(name: str, **kw: Any) -> None:
    """Forget the alias NAME (its keystore stays)."""
    from iotex_ops.client import config

    config.save(_cfg().without_alias(name))
    _emit(kw["as_json"], {"removed": name}, [f"removed {name}"])


@alias_group.command("list")
@common
def alias_list(**kw: Any) -> None:
    cfg = _cfg()
    _emit(kw["as_json"], {"aliases": dict(sorted(cfg.aliases.items()))}, [f"{k}: {v}" for k, v in sorted(cfg.aliases.items())])


@account.command("config")
@click.option("--endpoint", "new_endpoint", metavar="URL", help="Save the node endpoint commands use.")
@click.option("--default", "default", metavar="NAME", help="Save the default account (alias or address).")
@click.option("--json", "as_json", is_flag=True, is_eager=True, callback=_set_json, help="One JSON object on stdout.")
def account_config(new_endpoint: str | None, default: str | None, **kw: Any) -> None:
    """Show the client's config, or save its endpoint (--endpoint) and default account (--default)."""
    from dataclasses import replace

    from iotex_ops.client import config

    cfg = _cfg()
    if new_endpoint is not None:
        replace(cfg, endpoint=new_endpoint).endpoint_for(new_endpoint)  # validates
        cfg = replace(cfg, endpoint=new_endpoint.rstrip("/"))
    if default is not None:
        cfg.resolve(default)  # an unknown alias is refused here, not when it is first used
        cfg = replace(cfg, default_account=default)
    if new_endpoint is not None or default is not None:
        config.save(cfg)
    doc = {"home": str(cfg.home), **cfg.to_json()}
    _emit(
        kw["as_json"],
        doc,
        [
            f"home: {cfg.home}",
            f"endpoint: {cfg.endpoint or '-'}",
            f"default account: {cfg.default_account or '-'}",
            f"aliases: {len(cfg.aliases)}",
        ],
    )


# --- action --------------------------------------------------------------------------------------------


@click.group(cls=ClientGroup)
def action() -> None:
    """Sign and send actions: each shows what it will sign and asks first (unless --yes)."""


@action.command("transfer")
@click.argument("to")
@click.argument("amount")
@click.option("--memo", help="Printable ASCII, at most 256 characters, kept on chain with the transfer.")
@signing
@common
def action_transfer(to: str, amount: str, memo: str | None, **kw: Any) -> None:
    """Send AMOUNT (IOTX, or NNNrau) to TO (alias or address)."""
    from iotex_ops.client.units import parse_amount

    def payload(cfg: ClientConfig, node: NodeClient) -> dict[str, Any]:
        body: dict[str, Any] = {"to": cfg.resolve(to, "recipient"), "amount": parse_amount(amount)}
        if memo is not None:
            _check_memo(memo)
            body["memo"] = memo
        return body

    _send(kw, "transfer", payload)


def _check_memo(memo: str) -> None:
    from iotex_ops.client.errors import ClientError

    if len(memo) > 256 or any(not (" " <= c <= "~") for c in memo):
        raise ClientError("memo must be at most 256 characters of printable ASCII", "bad_input")


def _claim(amount: str | None, kw: dict[str, Any]) -> None:
    from iotex_ops.client.errors import ClientError
    from iotex_ops.client.units import iotx, parse_amount

    cfg = _cfg()
    sender = cfg.resolve(kw["sender"], "sender")
    have = _node(cfg, kw["endpoint"]).unclaimed_rewards(sender)
    want = have if amount in (None, "all") else parse_amount(amount)
    if have == 0:
        raise ClientError(f"{sender} has no unclaimed rewards; nothing was sent", "nothing_to_claim")
    if want > have:
        raise ClientError(
            f"{sender} has {iotx(have)} IOTX of unclaimed rewards, less than the {iotx(want)} asked", "balance_too_low"
        )
    _send(kw, "rewards_claim", lambda c, n: {"amount": want}, receives=want)


@action.command("claim")
@click.argument("amount", required=False)
@signing
@common
def action_claim(amount: str | None, **kw: Any) -> None:
    """Claim AMOUNT of the sender's unclaimed rewards (default: all of them)."""
    _claim(amount, kw)


@action.command("show")
@click.argument("hash_")
@common
def action_show(hash_: str, **kw: Any) -> None:
    """Where an action is: pending, finalized (with its receipt), rejected."""
    _show_action(hash_, kw)


# --- stake ---------------------------------------------------------------------------------------------


@click.group(cls=ClientGroup)
def stake() -> None:
    """Buckets: create, add, unstake, change candidate; register a candidate; list buckets."""


@stake.command("create")
@click.argument("candidate")
@click.argument("amount")
@click.option("--days", type=click.IntRange(0, 1050), required=True, help="Lock duration in days (more days, more votes).")
@signing
@common
def stake_create(candidate: str, amount: str, days: int, **kw: Any) -> None:
    """Lock AMOUNT in a new bucket voting for CANDIDATE (its name or owner address)."""
    from iotex_ops.client.units import parse_amount

    _send(kw, "stake_create", lambda c, n: {"candidate": candidate, "amount": parse_amount(amount), "duration_days": days})


@stake.command("add")
@click.argument("bucket", type=click.IntRange(0))
@click.argument("amount")
@signing
@common
def stake_add(bucket: int, amount: str, **kw: Any) -> None:
    """Add AMOUNT to BUCKET (one the sender owns)."""
    from iotex_ops.client.units import parse_amount

    _send(kw, "stake_add", lambda c, n: {"bucket": _own_bucket(c, n, bucket, kw), "amount": parse_amount(amount)})


def _own_bucket(cfg: ClientConfig, node: NodeClient, bucket: int, kw: dict[str, Any]) -> int:
    from iotex_ops.client.errors import ClientError

    b = node.bucket(bucket)
    sender = cfg.resolve(kw["sender"], "sender")
    if b is None:
        raise ClientError(f"bucket {bucket} does not exist; nothing was sent", "not_found")
    if b.owner != sender:
        raise ClientError(f"bucket {bucket} is owned by {b.owner}, not {sender}; nothing was sent", "not_owner")
    return bucket


@stake.command("unstake")
@click.argument("bucket", type=click.IntRange(0))
@signing
@common
def stake_unstake(bucket: int, **kw: Any) -> None:
    """Release BUCKET once unlocked: its amount returns to the balance at once (this chain has no withdraw wait)."""
    _send(kw, "stake_unstake", lambda c, n: {"bucket": _own_bucket(c, n, bucket, kw)})


@stake.command("withdraw")
@click.argument("bucket", type=click.IntRange(0))
@common
def stake_withdraw(bucket: int, **kw: Any) -> None:
    """On this chain, `stake unstake` returns the amount at once: there is never anything to withdraw."""
    from iotex_ops.client.errors import ClientError

    raise ClientError(
        f"this chain has no withdraw step: `iotex-ops stake unstake {bucket}` returns the bucket's amount to the balance "
        "in the same action; nothing was sent",
        "not_supported",
    )


@stake.command("change")
@click.argument("bucket", type=click.IntRange(0))
@click.argument("candidate")
@signing
@common
def stake_change(bucket: int, candidate: str, **kw: Any) -> None:
    """Move BUCKET's votes to CANDIDATE (its name or owner address)."""
    _send(kw, "stake_vote", lambda c, n: {"bucket": _own_bucket(c, n, bucket, kw), "candidate": candidate})


@stake.command("register")
@click.argument("name")
@click.option("--operator", required=True, help="The address (or alias) whose key signs blocks for the candidate.")
@click.option("--self-stake", required=True, help="Amount locked in the candidate's self-stake bucket.")
@click.option("--days", type=click.IntRange(0, 1050), required=True)
@signing
@common
def stake_register(name: str, operator: str, self_stake: str, days: int, **kw: Any) -> None:
    """Register the sender as candidate NAME."""
    from iotex_ops.client.units import parse_amount

    _send(
        kw,
        "candidate_register",
        lambda c, n: {
            "name": name,
            "operator": c.resolve(operator, "operator"),
            "self_stake": parse_amount(self_stake),
            "duration_days": days,
        },
    )


@stake.command("buckets")
@click.option("--owner", help="Alias or address.")
@click.option("--candidate", help="The candidate's owner address or alias.")
@common
def stake_buckets(owner: str | None, candidate: str | None, **kw: Any) -> None:
    """Buckets, by owner and/or candidate."""
    from iotex_ops.client.units import iotx

    cfg = _cfg()
    node = _node(cfg, kw["endpoint"])
    bs = node.buckets(owner=cfg.resolve(owner) if owner else None, candidate=cfg.resolve(candidate) if candidate else None)
    docs = [_bucket_doc(b) for b in bs]
    _emit(
        kw["as_json"],
        {"buckets": docs},
        [f"{b.id:>6} {b.owner} -> {b.candidate} {iotx(b.amount)} IOTX {b.days}d votes {iotx(b.votes)}" for b in bs]
        or ["no bucket"],
    )


def _bucket_doc(b: Any) -> dict[str, Any]:
    return {
        "id": b.id,
        "owner": b.owner,
        "candidate": b.candidate,
        "amount": str(b.amount),
        "days": b.days,
        "created_ms": b.created_ms,
        "unlock_ms": b.unlock_ms,
        "votes": str(b.votes),
    }


@stake.command("bucket")
@click.argument("bucket", type=click.IntRange(0))
@common
def stake_bucket(bucket: int, **kw: Any) -> None:
    """One bucket."""
    from iotex_ops.client.errors import ClientError
    from iotex_ops.client.units import iotx

    b = _node(_cfg(), kw["endpoint"]).bucket(bucket)
    if b is None:
        raise ClientError(f"bucket {bucket} does not exist", "not_found")
    _emit(
        kw["as_json"],
        _bucket_doc(b),
        [
            f"bucket {b.id}: {b.owner} -> {b.candidate}, {iotx(b.amount)} IOTX, {b.days} days, "
            f"votes {iotx(b.votes)}, unlocks at {b.unlock_ms} ms"
        ],
    )


# --- chain ---------------------------------------------------------------------------------------------


@click.group(cls=ClientGroup)
def chain() -> None:
    """Read the chain: info, blocks, actions, delegates."""


@chain.command("info")
@click.option(
    "--blocks", "span", type=click.IntRange(2, 1000), default=20, show_default=True, help="Blocks TPS is measured over."
)
@common
def chain_info(span: int, **kw: Any) -> None:
    """Height, finalized height, epoch, and TPS over the last blocks."""
    node = _node(_cfg(), kw["endpoint"])
    c = node.chain()
    start = max(1, c.finalized_height - span + 1)
    blocks = node.blocks(start, c.finalized_height) if c.finalized_height >= 1 else []
    tps = None
    if len(blocks) >= 2:
        secs = (blocks[-1].timestamp_ms - blocks[0].timestamp_ms) / 1000
        tps = round(sum(b.action_count for b in blocks[1:]) / secs, 2) if secs > 0 else None
    doc = {
        "chain_id": c.chain_id,
        "height": c.height,
        "finalized_height": c.finalized_height,
        "epoch": c.epoch,
        "epoch_length": c.epoch_length,
        "min_fee": str(c.min_fee),
        "node_version": c.node_version,
        "protocol_version": c.protocol_version,
        "tps": tps,
        "tps_blocks": len(blocks),
    }
    _emit(
        kw["as_json"],
        doc,
        [
            f"chain {c.chain_id}: height {c.height}, finalized {c.finalized_height}, epoch {c.epoch}",
            f"TPS over the last {len(blocks)} blocks: {tps if tps is not None else '-'}",
            f"min fee {c.min_fee} rau; node {c.node_version}, protocol {c.protocol_version}",
        ],
    )


@chain.command("block")
@click.argument("ref", default="latest")
@common
def chain_block(ref: str, **kw: Any) -> None:
    """A block by height, hash or `latest`."""
    b = _node(_cfg(), kw["endpoint"]).block(ref)
    doc = {
        "height": b.height,
        "hash": b.hash,
        "round": b.round,
        "timestamp_ms": b.timestamp_ms,
        "proposer": b.proposer,
        "epoch": b.epoch,
        "action_count": b.action_count,
        "actions": list(b.actions or ()),
    }
    _emit(
        kw["as_json"],
        doc,
        [
            f"block {b.height} {b.hash}",
            f"  epoch {b.epoch} round {b.round} proposer {b.proposer}",
            f"  {b.action_count} actions, time {b.timestamp_ms} ms",
        ],
    )


@chain.command("action")
@click.argument("hash_")
@common
def chain_action(hash_: str, **kw: Any) -> None:
    """An action by hash: pending, finalized (receipt, payload, memo) or rejected."""
    _show_action(hash_, kw)


def _show_action(h: str, kw: dict[str, Any]) -> None:
    from iotex_ops.client.errors import ClientError

    st = _node(_cfg(), kw["endpoint"]).action(h)
    if st is None:
        raise ClientError(f"action {h} is not known to this node", "not_found")
    doc: dict[str, Any] = {"hash": st.hash, "status": st.status}
    lines = [f"{st.hash}: {st.status}"]
    if st.receipt is not None:
        doc["receipt"] = {
            "status": st.receipt.status,
            "height": st.receipt.height,
            "index": st.receipt.index,
            "error": st.receipt.error,
        }
        lines.append(
            f"  {st.receipt.status} at height {st.receipt.height}" + (f": {st.receipt.error}" if st.receipt.error else "")
        )
    if st.action is not None:
        doc["action"] = dict(st.action)
        lines.append(f"  {st.action.get('type')} from {st.action.get('sender')}: {json.dumps(st.action.get('payload'))}")
    if st.code:
        doc["code"], doc["reason"] = st.code, st.reason
        lines.append(f"  {st.code}: {st.reason}")
    _emit(kw["as_json"], doc, lines)


@chain.command("delegates")
@click.option("--epoch", type=click.IntRange(1), help="Default: the current epoch.")
@common
def chain_delegates(epoch: int | None, **kw: Any) -> None:
    """Candidates of an epoch: votes, active, productivity (expected / produced / missed), unclaimed rewards."""
    from iotex_ops.client.units import iotx

    d = _node(_cfg(), kw["endpoint"]).delegates(epoch)
    docs = [
        {
            "name": c.name,
            "owner": c.owner,
            "operator": c.operator,
            "votes": str(c.votes),
            "active": c.active,
            "unclaimed_rewards": str(c.unclaimed_rewards),
            "productivity": {"expected": c.expected, "produced": c.produced, "missed": c.missed},
        }
        for c in d.candidates
    ]
    lines = [f"epoch {d.epoch}"] + [
        f"{'*' if c.active else ' '} {c.name:<12} votes {iotx(c.votes):>14}  "
        f"produced {c.produced}/{c.expected} missed {c.missed}  "
        f"unclaimed {iotx(c.unclaimed_rewards)}"
        for c in d.candidates
    ]
    _emit(kw["as_json"], {"epoch": d.epoch, "active": list(d.active), "candidates": docs}, lines)


# --- rewards -------------------------------------------------------------------------------------------


@click.group(cls=ClientGroup)
def rewards() -> None:
    """Unclaimed rewards, claims, and paying voters: bookkeep, distribute, statement."""


@rewards.command("unclaimed")
@click.argument("name", required=False)
@common
def rewards_unclaimed(name: str | None, **kw: Any) -> None:
    """Unclaimed rewards of NAME (default: the default account)."""
    from iotex_ops.client.units import iotx

    cfg = _cfg()
    addr = cfg.resolve(name)
    amount = _node(cfg, kw["endpoint"]).unclaimed_rewards(addr)
    _emit(kw["as_json"], {"address": addr, "unclaimed": str(amount)}, [f"{addr}: {iotx(amount)} IOTX unclaimed"])


@rewards.command("claim")
@click.argument("amount", required=False)
@signing
@common
def rewards_claim(amount: str | None, **kw: Any) -> None:
    """Claim AMOUNT of the sender's unclaimed rewards (default: all)."""
    _claim(amount, kw)


@rewards.command("bookkeep")
@click.option("--delegate", required=True, help="The candidate's name.")
@click.option("--from-epoch", type=click.IntRange(1), required=True)
@click.option("--to-epoch", type=click.IntRange(1), required=True)
@click.option("--percentage", required=True, help="Percent of the delegate's rewards that goes to voters (0-100).")
@click.option("--include-block-rewards", is_flag=True, help="Share block rewards too (default: the epoch reward only).")
@click.option("--min-payout", default="0", show_default=True, help="Amounts below it are carried to the next run.")
@click.option("--carry-in", type=click.Path(path_type=Path, dir_okay=False), help="The carry file a previous run wrote.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True, help="The plan (CSV).")
@click.option("--carry-out", type=click.Path(path_type=Path, dir_okay=False), help="Default: OUT with .carry.json.")
@common
def rewards_bookkeep(
    delegate: str,
    from_epoch: int,
    to_epoch: int,
    percentage: str,
    include_block_rewards: bool,
    min_payout: str,
    carry_in: Path | None,
    out: Path,
    carry_out: Path | None,
    **kw: Any,
) -> None:
    """Each voter's share of DELEGATE's rewards over the epochs, into a plan for `rewards distribute`."""
    from iotex_ops.client import books, plan
    from iotex_ops.client.errors import ClientError
    from iotex_ops.client.units import iotx, parse_amount

    if to_epoch < from_epoch:
        raise ClientError(f"--to-epoch {to_epoch} is before --from-epoch {from_epoch}", "bad_input")
    pct = books.parse_percentage(percentage)
    minimum = parse_amount(min_payout, "--min-payout", positive=False)
    carried = books.Carry()
    if carry_in is not None:
        try:
            carried = books.Carry.from_json(json.loads(carry_in.read_text()), str(carry_in))
        except (OSError, ValueError) as exc:
            raise ClientError(f"carry file {carry_in} cannot be read: {exc}", "bad_input") from None
    node = _node(_cfg(), kw["endpoint"])
    owner = next((c.owner for c in node.delegates().candidates if c.name == delegate), None)
    if owner is None:
        raise ClientError(f"no candidate is named {delegate!r}", "not_found")
    shares = []
    for e in range(from_epoch, to_epoch + 1):
        b = node.epoch_books(e, candidate=owner)
        shares.append(books.epoch_share(e, owner, b.rewards, b.buckets, include_block_rewards=include_block_rewards))
    p = books.bookkeep(delegate, shares, pct, min_payout=minimum, carried_in=carried)
    out.write_text(plan.render(p))
    carry_path = carry_out or out.with_suffix(".carry.json")
    carry_path.write_text(json.dumps(p.carry.to_json(), indent=2) + "\n")
    doc = {**p.summary(), "plan": str(out), "carry_file": str(carry_path)}
    _emit(
        kw["as_json"],
        doc,
        [
            f"{delegate}, epochs {from_epoch}-{to_epoch}: reward {iotx(p.reward)} IOTX x {float(pct * 100):g}%",
            f"to {len(p.payouts)} voters: {iotx(p.paid)} IOTX -> {out}",
            f"carried to the next run: {iotx(int(p.carry.total))} IOTX "
            f"({len(p.carry.voters)} voters below the minimum) -> {carry_path}",
        ],
    )


@rewards.command("distribute")
@click.argument("plan_file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--from", "sender", metavar="ACCOUNT", help="Alias or address that pays (default: the default account).")
@click.option("--dry-run", is_flag=True, help="Say what would be paid; send nothing, write nothing.")
@click.option("--batch", type=click.IntRange(1, 2000), default=200, show_default=True, help="Payouts per request.")
@click.option("--claim", is_flag=True, help="Claim the payer's unclaimed rewards first.")
@click.option(
    "--ledger",
    "ledger_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Default: the client home's ledgers/ADDRESS.sqlite.",
)
@click.option("--fee", metavar="AMOUNT", help="Fee per payout; default: the node's minimum fee.")
@click.option(
    "--timeout", type=click.FloatRange(1, 86400), default=300.0, show_default=True, help="Seconds to wait for finality."
)
@click.option("--password-file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--password-env", metavar="NAME")
@click.option("--password-stdin", is_flag=True)
@click.option("--yes", "-y", is_flag=True)
@common
def rewards_distribute(
    plan_file: Path,
    sender: str | None,
    dry_run: bool,
    batch: int,
    claim: bool,
    ledger_path: Path | None,
    fee: str | None,
    timeout: float,
    yes: bool,
    **kw: Any,
) -> None:
    """Pay each voter of PLAN_FILE exactly once (resumable; checked against the chain's memos)."""
    from iotex_ops.client import plan, wallet
    from iotex_ops.client.errors import EXIT_NOT_DONE, ClientError
    from iotex_ops.client.ledger import Ledger
    from iotex_ops.client.payouts import Distributor, KeySigner
    from iotex_ops.client.units import iotx, parse_amount

    cfg = _cfg()
    node = _node(cfg, kw["endpoint"])
    payer = cfg.resolve(sender, "payer")
    rows = plan.read(plan_file)
    chain = node.chain()
    min_fee = chain.min_fee or 1
    per = parse_amount(fee, "fee", positive=False) if fee else min_fee
    if per < min_fee:
        raise ClientError(f"fee {per} rau is below the node's minimum fee {min_fee} rau", "fee_too_low")
    total = sum(r.amount for r in rows)
    lines = [
        f"pay {len(rows)} voters {iotx(total)} IOTX from {payer}, memo {rows[0].memo!r}" if rows else "empty plan",
        f"fee {iotx(per)} IOTX per payout",
    ]
    if dry_run:
        signer: Any = _WatchOnly(payer)
    else:
        _confirm(yes, lines, "Pay them?")
        key = wallet.load_key(cfg, payer, _passwords(kw).read(f"password for {cfg.name_of(payer) or payer}"))
        signer = KeySigner(key, chain.chain_id)
    ledger = Ledger(ledger_path or cfg.home / "ledgers" / f"{payer}.sqlite")
    try:
        dist = Distributor(
            node, signer, ledger, fee=per, batch=batch, timeout=timeout, progress=lambda s: click.echo(s, err=True)
        )
        report = dist.run(rows, dry_run=dry_run, claim=claim)
    finally:
        ledger.close()
    text = [
        f"{report.already_paid} already paid, {report.to_pay} to pay"
        + (" (dry run: nothing sent)" if dry_run else f", {report.sent} sent"),
        f"fees: {iotx(report.fees)} IOTX",
    ] + (["verified on chain: every voter paid exactly once"] if report.verified else [])
    text += [f"problem: {p}" for p in report.problems]
    doc = report.to_json()
    problem = None
    if report.problems:
        problem = ClientError(f"{len(report.problems)} problems found on chain (see above)", "not_verified", EXIT_NOT_DONE)
        doc.update(problem.to_json())
        problem.emitted = True
    _emit(kw["as_json"], doc, text)
    if problem is not None:
        raise problem


class _WatchOnly:
    """A dry run's signer: it knows the address and signs nothing."""

    def __init__(self, address: str) -> None:
        self.address = address

    def transfer(self, **_kw: Any) -> tuple[str, dict[str, Any]]:
        raise AssertionError("a dry run signs nothing")

    claim = transfer


@rewards.command("statement")
@click.argument("voter")
@common
def rewards_statement(voter: str, **kw: Any) -> None:
    """The reward payouts VOTER received: delegate, epochs, amount, transfer, per payout and in total."""
    from iotex_ops.client.plan import MEMO_RE
    from iotex_ops.client.units import iotx

    cfg = _cfg()
    addr = cfg.resolve(voter, "voter")
    rows = []
    for a in _node(cfg, kw["endpoint"]).account_actions(addr):
        m = MEMO_RE.fullmatch(a.memo or "")
        if a.type != "transfer" or not a.ok or m is None or a.payload.get("to") != addr:
            continue
        rows.append(
            {
                "delegate": m.group(1),
                "from_epoch": int(m.group(2)),
                "to_epoch": int(m.group(3)),
                "amount": str(a.payload["amount"]),
                "payer": a.sender,
                "hash": a.hash,
                "height": a.height,
            }
        )
    total = sum(int(r["amount"]) for r in rows)
    lines = [
        f"{r['delegate']:<12} epochs {r['from_epoch']}-{r['to_epoch']}: {iotx(int(str(r['amount'])))} IOTX  "
        f"({str(r['hash'])[:16]}, height {r['height']})"
        for r in rows
    ]
    lines.append(f"total: {iotx(total)} IOTX in {len(rows)} payouts")
    _emit(kw["as_json"], {"voter": addr, "payouts": rows, "total": str(total)}, lines)
