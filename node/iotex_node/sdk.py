"""The node's public signing module: build and sign actions, keys and addresses, the chain's minimum fee.

Everything outside the node that makes actions (the ops toolkit, its load generators, a wallet) goes
through this module, never through the node's internals; its names are the stable surface.

    from iotex_node import sdk

    key = sdk.PrivateKey.from_hex(secret_hex)
    params = sdk.ChainParams.from_chain_info(requests.get(api + "/v1/chain").json())
    action = sdk.transfer(key, chain_id=params.chain_id, nonce=1, fee=params.min_fee, to="io1...", amount=10**18)
    requests.post(api + "/v1/actions", json=action.to_wire())   # its hash: action.hash_hex

Every builder validates exactly as the node validates an incoming action (it never makes an action the
node's parser would refuse) and raises `InvalidAction` naming the field at fault (`nonce`, `fee`,
`payload.to`, `payload.amount`...). Amounts are integers in rau (1 IOTX = 10**18 rau). A node refuses an
action whose fee is below its minimum (`min_fee` of GET /v1/chain, at least the genesis `min_fee`) with
`fee_too_low`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iotex_node import actions as _actions
from iotex_node.actions import ACTION_TYPES, MEMO_MAX_BYTES, Action
from iotex_node.constants import MAX_AMOUNT, MAX_NONCE, MAX_STAKE_DAYS
from iotex_node.crypto.keys import PrivateKey, recover_address, valid_address
from iotex_node.errors import ConfigError, InvalidAction
from iotex_node.genesis import DEFAULT_MIN_FEE

__all__ = [
    "ACTION_TYPES",
    "DEFAULT_MIN_FEE",
    "MAX_AMOUNT",
    "MAX_NONCE",
    "MAX_STAKE_DAYS",
    "MEMO_MAX_BYTES",
    "RAU_PER_IOTX",
    "Action",
    "ChainParams",
    "InvalidAction",
    "PrivateKey",
    "action_hash",
    "candidate_register",
    "check",
    "parse",
    "recover_address",
    "rewards_claim",
    "sign",
    "stake_add",
    "stake_create",
    "stake_unstake",
    "stake_vote",
    "transfer",
    "valid_address",
]

RAU_PER_IOTX = 10**18


# --- the chain's parameters a signer needs -----------------------------------------------------------


@dataclass(frozen=True)
class ChainParams:
    """What every action of a chain must carry: its chain id, and the lowest fee a node admits (never
    below 1: no node admits a free action)."""

    chain_id: int
    min_fee: int

    @classmethod
    def from_chain_info(cls, doc: object) -> ChainParams:
        """From a node's GET /v1/chain answer. A node that does not say its minimum (one from before
        `min_fee`) is taken to want the default genesis minimum, `DEFAULT_MIN_FEE`."""
        if not isinstance(doc, dict):
            raise InvalidAction("a GET /v1/chain answer must be a JSON object", "chain")
        chain_id = _actions.parse_uint(doc.get("chain_id"), "chain.chain_id", 2**32 - 1)
        fee = _actions.parse_amount(doc.get("min_fee", str(DEFAULT_MIN_FEE)), "chain.min_fee", positive=False)
        return cls(chain_id, max(fee, 1))

    @classmethod
    def from_genesis(cls, path: str | Path) -> ChainParams:
        """From a genesis file (`genesis.json`): its chain id and minimum fee (a genesis without `min_fee`
        has no minimum, and then 1 is the lowest fee a node admits)."""
        from iotex_node import genesis as genesis_mod

        g = genesis_mod.load(Path(path))
        return cls(g.chain_id, max(g.min_fee, 1))

    @classmethod
    def from_testnet(cls, directory: str | Path) -> ChainParams:
        """From the directory `iotex-node testnet --out DIR` wrote (its genesis.json)."""
        path = Path(directory) / "genesis.json"
        if not path.exists():
            raise ConfigError(f"{directory}: no genesis.json (is it a directory written by `iotex-node testnet`?)")
        return cls.from_genesis(path)


# --- building and signing ----------------------------------------------------------------------------


def sign(key: PrivateKey, *, chain_id: int, nonce: int, fee: int, type: str, payload: dict[str, Any]) -> Action:
    """Build and sign an action of any type (`ACTION_TYPES`) from its payload fields; the typed builders
    below are the same with the payload spelled out."""
    if not isinstance(key, PrivateKey):
        raise InvalidAction(f"must be an iotex_node.sdk.PrivateKey, not {_kind(key)}", "key")
    return _actions.sign(key, chain_id=chain_id, nonce=nonce, fee=fee, type=type, payload=payload)


def _kind(value: object) -> str:
    return type(value).__name__  # `sign` cannot say this itself: its parameter `type` hides the builtin


def transfer(key: PrivateKey, *, chain_id: int, nonce: int, fee: int, to: str, amount: int, memo: str | None = None) -> Action:
    """Move `amount` rau from the key's account to `to`, with an optional `memo` (printable ASCII, at most
    `MEMO_MAX_BYTES` characters, kept on chain with the action; a node from before memos refuses it)."""
    payload: dict[str, Any] = {"to": to, "amount": amount}
    if memo is not None:
        payload["memo"] = memo
    return sign(key, chain_id=chain_id, nonce=nonce, fee=fee, type="transfer", payload=payload)


def stake_create(
    key: PrivateKey, *, chain_id: int, nonce: int, fee: int, candidate: str, amount: int, duration_days: int
) -> Action:
    """Lock `amount` rau in a new bucket voting for `candidate` (its name or owner address) for
    `duration_days` (the receipt names the new bucket's id)."""
    payload = {"candidate": candidate, "amount": amount, "duration_days": duration_days}
    return sign(key, chain_id=chain_id, nonce=nonce, fee=fee, type="stake_create", payload=payload)


def stake_add(key: PrivateKey, *, chain_id: int, nonce: int, fee: int, bucket: int, amount: int) -> Action:
    """Add `amount` rau to a bucket the key owns."""
    return sign(key, chain_id=chain_id, nonce=nonce, fee=fee, type="stake_add", payload={"bucket": bucket, "amount": amount})


def stake_unstake(key: PrivateKey, *, chain_id: int, nonce: int, fee: int, bucket: int) -> Action:
    """Release an unlocked bucket the key owns: its amount returns to the key's balance."""
    return sign(key, chain_id=chain_id, nonce=nonce, fee=fee, type="stake_unstake", payload={"bucket": bucket})


def stake_vote(key: PrivateKey, *, chain_id: int, nonce: int, fee: int, bucket: int, candidate: str) -> Action:
    """Move a bucket's votes to another candidate (its name or owner address)."""
    payload = {"bucket": bucket, "candidate": candidate}
    return sign(key, chain_id=chain_id, nonce=nonce, fee=fee, type="stake_vote", payload=payload)


def candidate_register(
    key: PrivateKey, *, chain_id: int, nonce: int, fee: int, name: str, operator: str, self_stake: int, duration_days: int
) -> Action:
    """Register the key's account as a candidate `name`, signing blocks with `operator`'s key, with a
    self-stake bucket of `self_stake` rau locked for `duration_days`."""
    payload = {"name": name, "operator": operator, "self_stake": self_stake, "duration_days": duration_days}
    return sign(key, chain_id=chain_id, nonce=nonce, fee=fee, type="candidate_register", payload=payload)


def rewards_claim(key: PrivateKey, *, chain_id: int, nonce: int, fee: int, amount: int) -> Action:
    """Move `amount` rau of the key's unclaimed rewards to its balance."""
    return sign(key, chain_id=chain_id, nonce=nonce, fee=fee, type="rewards_claim", payload={"amount": amount})


# --- reading actions back ----------------------------------------------------------------------------


def parse(wire: object, *, verify: bool = True) -> Action:
    """A wire action (the JSON object the API takes and blocks hold), validated as the node validates it;
    `verify=False` skips the signature check (for reading hashes of actions already on chain)."""
    return _actions.parse(wire, verify=verify)


def check(wire: object) -> None:
    """Validate a wire action's form (every field, type and range) without checking its signature."""
    _actions.check(wire)


def action_hash(wire: object) -> str:
    """The hash (hex) the node gives a wire action: what GET /v1/actions/{hash} takes."""
    return _actions.parse(wire, verify=False).hash_hex
