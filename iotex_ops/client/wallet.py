"""Keys and actions at the edge: keystores on disk, what an action will do (pre-checked), signing, sending,
and following it to finality.

`preview` is pure: from the account as the node shows it, the fee and what the action spends, it says what
will be signed and what the balance will be after, or refuses (balance too low, fee below the node's
minimum) before anything is signed. `follow` polls the action until it is final, rejected or the time is up:
it never sleeps a fixed time and reports "sent" as if it were done.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from iotex_ops.client.errors import EXIT_NOT_DONE, ClientError
from iotex_ops.client.units import iotx

if TYPE_CHECKING:
    from iotex_node.sdk import PrivateKey
    from iotex_ops.client.config import ClientConfig
    from iotex_ops.client.secrets import Secret
    from iotex_ops.nodeapi import Account, ActionStatus, NodeClient

# How often `follow` asks: a few times per block at the lab's 1 s blocks, without hammering the node.
POLL_S = 0.25


# --- keystores -----------------------------------------------------------------------------------------


def save_key(cfg: ClientConfig, key: PrivateKey, password: Secret) -> str:
    from iotex_node.crypto import keystore

    cfg.keystores.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = cfg.keystore_path(key.address)
    if path.exists():
        raise ClientError(f"a keystore for {key.address} already exists at {path}", "exists")
    keystore.write(path, key, password.reveal())
    return key.address


def import_keystore(cfg: ClientConfig, doc_path: Any, password: Secret) -> PrivateKey:
    from iotex_node.crypto import keystore
    from iotex_node.errors import KeystoreError

    try:
        return keystore.read(doc_path, password.reveal())
    except KeystoreError as exc:
        raise ClientError(str(exc), "wrong_password" if "wrong password" in str(exc) else "bad_keystore") from None


def load_key(cfg: ClientConfig, address: str, password: Secret) -> PrivateKey:
    from iotex_node.crypto import keystore
    from iotex_node.errors import KeystoreError

    path = cfg.keystore_path(address)
    if not path.exists():
        raise ClientError(
            f"no keystore for {address} in {cfg.keystores}: import its key with `iotex-ops account import`", "no_keystore"
        )
    try:
        return keystore.read(path, password.reveal())
    except KeystoreError as exc:
        code = "wrong_password" if "wrong password" in str(exc) else "bad_keystore"
        raise ClientError(f"cannot unlock {address}: {exc}", code) from None


def key_from_hex(secret: Secret) -> PrivateKey:
    from iotex_node.sdk import PrivateKey

    try:
        return PrivateKey.from_hex(secret.reveal())
    except ValueError:
        raise ClientError("the private key is not a valid secp256k1 key (it is not shown here)", "bad_input") from None


# --- what an action will do ----------------------------------------------------------------------------

# What each action type takes from the balance besides its fee (the payload field holding it).
_SPENDS = {"transfer": "amount", "stake_create": "amount", "stake_add": "amount", "candidate_register": "self_stake"}


@dataclass(frozen=True)
class Preview:
    """What will be signed and what it does to the balance. No secret in it."""

    type: str
    sender: str
    nonce: int
    fee: int
    payload: dict[str, Any]
    balance: int
    spends: int
    receives: int = 0  # a claim moves rewards to the balance

    @property
    def balance_after(self) -> int:
        return self.balance - self.spends - self.fee + self.receives

    def to_json(self) -> dict[str, Any]:
        payload = {k: (str(v) if k in ("amount", "self_stake") else v) for k, v in self.payload.items()}
        return {
            "type": self.type,
            "sender": self.sender,
            "nonce": self.nonce,
            "fee": str(self.fee),
            "payload": payload,
            "balance": str(self.balance),
            "balance_after": str(self.balance_after),
        }

    def lines(self) -> list[str]:
        out = [f"{self.type} from {self.sender}"]
        for k, v in self.payload.items():
            out.append(f"  {k}: {iotx(v) + ' IOTX' if k in ('amount', 'self_stake') else v}")
        out.append(f"  nonce: {self.nonce}")
        out.append(f"  fee: {iotx(self.fee)} IOTX ({self.fee} rau)")
        out.append(f"  balance: {iotx(self.balance)} IOTX -> after: {iotx(self.balance_after)} IOTX")
        return out


def preview(account: Account, min_fee: int, fee: int | None, type_: str, payload: dict[str, Any], receives: int = 0) -> Preview:
    """The action `type_` with `payload` from `account`, pre-checked; ClientError (nothing signed) when the
    fee is below the node's minimum or the balance cannot pay what it spends plus the fee."""
    fee = min_fee if fee is None else fee
    if fee < min_fee:
        raise ClientError(f"fee {fee} rau is below the node's minimum fee {min_fee} rau: the node would refuse it", "fee_too_low")
    spends = int(payload[_SPENDS[type_]]) if type_ in _SPENDS else 0
    p = Preview(type_, account.address, account.pending_nonce, fee, dict(payload), account.balance, spends, receives)
    if account.balance < spends + fee:
        raise ClientError(
            f"balance too low: {account.address} has {iotx(account.balance)} IOTX, and this {type_} needs "
            f"{iotx(spends + fee)} IOTX ({iotx(spends)} + fee {iotx(fee)}); nothing was sent",
            "balance_too_low",
        )
    return p


def sign(key: PrivateKey, chain_id: int, p: Preview) -> Any:
    from iotex_node import sdk

    if key.address != p.sender:
        raise ClientError(f"the key unlocked is {key.address}, not the sender {p.sender}", "wrong_key")
    try:
        return sdk.sign(key, chain_id=chain_id, nonce=p.nonce, fee=p.fee, type=p.type, payload=p.payload)
    except sdk.InvalidAction as exc:
        raise ClientError(f"the action cannot be signed: {exc}", "bad_input") from None


# --- sending and following -----------------------------------------------------------------------------


@dataclass
class Outcome:
    """How a sent action ended, as far as the command followed it."""

    hash: str
    status: str  # sent | finalized | failed | rejected | pending (not final within the wait)
    height: int | None = None
    error: str | None = None
    bucket: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"hash": self.hash, "status": self.status}
        for k in ("height", "bucket"):
            if getattr(self, k) is not None:
                out[k] = getattr(self, k)
        if self.error is not None:
            out["reason"] = self.error
        return {**out, **self.extra}

    def problem(self) -> ClientError | None:
        """The error (exit 3) when it did not end well; None when it did, or was only meant to be sent."""
        if self.status in ("failed", "rejected"):
            return ClientError(f"action {self.hash} {self.status}: {self.error}", self.status, EXIT_NOT_DONE)
        if self.status == "pending":
            return ClientError(f"action {self.hash} is not final yet: {self.error}", "not_final", EXIT_NOT_DONE)
        return None


def submit(node: NodeClient, signed: Any) -> str:
    from iotex_ops.nodeapi import NodeApiError

    try:
        return node.submit(signed)
    except NodeApiError as exc:
        what = f"{exc.code}: " if exc.code else ""
        raise ClientError(f"the node refused the action ({what}{exc}); nothing was sent", exc.code or "node_refused") from None


def follow(node: NodeClient, h: str, timeout: float, *, clock: Any = time.monotonic, sleep: Any = time.sleep) -> Outcome:
    """Ask where action `h` is until it is final or rejected, or `timeout` seconds have passed."""
    deadline = clock() + timeout
    last: ActionStatus | None = None
    while True:
        last = node.action(h)
        if last is not None and last.final and last.receipt is not None:
            r = last.receipt
            return Outcome(h, "finalized" if r.ok else "failed", r.height, r.error, r.bucket)
        if last is not None and last.status == "rejected":
            return Outcome(h, "rejected", error=f"{last.code}: {last.reason}")
        if clock() >= deadline:
            where = "the node does not know it" if last is None else f"it is {last.status}"
            return Outcome(h, "pending", error=f"after {timeout:g} s {where}")
        sleep(POLL_S)
