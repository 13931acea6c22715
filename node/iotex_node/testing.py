"""A test kit for chains built in-process: a one-delegate chain, signed transfers, genesis and node homes.

Shipped with iotex-node so that its tests, its benchmarks and other projects' tests build chains the same
way, without a network or a node process:

    from iotex_node.chain import Chain
    from iotex_node.store import Store
    from iotex_node.testing import OneDelegate

    solo = OneDelegate.new()
    cfg = solo.init_home(tmp_path / "node")                 # config.toml, genesis.json, an initialized database
    chain = Chain(solo.genesis, Store(cfg.path(cfg.database)))
    solo.grow(chain, blocks=10, per_block=20)                # blocks of transfers, each certified by the delegate

The only delegate certifies its own blocks (a precommit of its key is the whole certificate), so a block
is final as soon as it is committed. Nothing here is safe for a real network: keys are made on the spot.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iotex_node import config as config_mod
from iotex_node import genesis as genesis_mod
from iotex_node.actions import Action
from iotex_node.block import PRECOMMIT, Block, Certificate, sign_vote
from iotex_node.chain import Chain
from iotex_node.config import NodeConfig
from iotex_node.crypto.keys import PrivateKey
from iotex_node.genesis import Genesis
from iotex_node.sdk import transfer

__all__ = [
    "OneDelegate",
    "certify",
    "commit_block",
    "genesis_doc",
    "init_home",
    "one_delegate_genesis",
    "signed_transfer",
    "signed_transfers",
    "submit_transfers",
]

BLOCK_REWARD = 16 * 10**18
EPOCH_REWARD = 1000 * 10**18
SELF_STAKE = 10**24
SENDER_BALANCE = 10**30

# --- genesis ------------------------------------------------------------------------------------------


def genesis_doc(
    delegate: str,
    owner: str,
    *,
    funded: Mapping[str, int] | None = None,
    name: str = "solo",
    self_stake: int = SELF_STAKE,
    chain_id: int = 77,
    genesis_time_ms: int | None = None,
    age_ms: int = 10_000,
    block_interval_ms: int = 1000,
    epoch_length: int = 7,
    block_reward: int = BLOCK_REWARD,
    epoch_reward: int = EPOCH_REWARD,
    min_fee: int | None = None,
    protocols: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A genesis document (JSON) with one candidate, `name`, owned by `owner` and signing with `delegate`,
    the only active delegate. Its clock starts `age_ms` ago (unless `genesis_time_ms` says when); `funded`
    gives balances; `min_fee` None leaves the field out (no minimum, as a document from before it)."""
    doc: dict[str, Any] = {
        "chain_id": chain_id,
        "genesis_time_ms": int(time.time() * 1000) - age_ms if genesis_time_ms is None else genesis_time_ms,
        "active_delegates": 1,
        "block_interval_ms": block_interval_ms,
        "epoch_length": epoch_length,
        "block_reward": str(block_reward),
        "epoch_reward": str(epoch_reward),
        "balances": {addr: str(amount) for addr, amount in (funded or {}).items()},
        "candidates": [{"name": name, "owner": owner, "operator": delegate, "self_stake": str(self_stake)}],
    }
    if min_fee is not None:
        doc["min_fee"] = str(min_fee)
    if protocols is not None:
        doc["protocols"] = protocols
    return doc


def one_delegate_genesis(delegate: PrivateKey, owner: PrivateKey, **kw: Any) -> Genesis:
    """`genesis_doc` for these keys, validated as a node validates its genesis file."""
    return genesis_mod.from_json(genesis_doc(delegate.address, owner.address, **kw))


def init_home(home: Path, genesis: Genesis, *, undo_depth: int | None = None) -> NodeConfig:
    """A node home as `iotex-node init` leaves it, minus the keystore: config.toml, genesis.json, and the
    database initialized with the genesis state."""
    home.mkdir(parents=True, exist_ok=True)
    cfg = NodeConfig(home=home) if undo_depth is None else NodeConfig(home=home, undo_depth=undo_depth)
    cfg.write()
    genesis_mod.write(home / "genesis.json", genesis)
    (home / "data").mkdir(exist_ok=True)
    cfg = config_mod.load(home)
    Chain.initialize(genesis, cfg.path(cfg.database))
    return cfg


# --- actions and blocks ----------------------------------------------------------------------------


def signed_transfer(key: PrivateKey, *, chain_id: int, nonce: int, to: str, amount: int = 1, fee: int = 1) -> Action:
    """One signed transfer (`iotex_node.sdk.transfer` with a test's defaults)."""
    return transfer(key, chain_id=chain_id, nonce=nonce, fee=fee, to=to, amount=amount)


def signed_transfers(
    key: PrivateKey, *, chain_id: int, first_nonce: int, count: int, to: str, amount: int = 1, fee: int = 1
) -> list[Action]:
    """`count` transfers with consecutive nonces from `first_nonce`."""
    return [
        signed_transfer(key, chain_id=chain_id, nonce=n, to=to, amount=amount, fee=fee)
        for n in range(first_nonce, first_nonce + count)
    ]


Recipient = str | Callable[[int], str]
Amount = int | Callable[[int], int] | None


def submit_transfers(
    chain: Chain, sender: PrivateKey, count: int, *, to: Recipient, amount: Amount = None, fee: int | None = None
) -> list[Action]:
    """Put `count` transfers of `sender` into the chain's mempool, from its next committed nonce on.

    `to` and `amount` are values or functions of the nonce; amount None pays the nonce itself (so that no
    two transfers are alike); fee None pays the chain's minimum (at least 1)."""
    cid = chain.genesis.chain_id
    pay = max(chain.genesis.min_fee, 1) if fee is None else fee
    first = chain.committed_nonce(sender.address) + 1
    made = []
    for n in range(first, first + count):
        recipient = to(n) if callable(to) else to
        value = n if amount is None else amount(n) if callable(amount) else amount
        a = signed_transfer(sender, chain_id=cid, nonce=n, to=recipient, amount=value, fee=pay)
        chain.submit(a)
        made.append(a)
    return made


def certify(delegate: PrivateKey, chain_id: int, block: Block, round_: int = 0) -> Certificate:
    """The commit certificate of a one-delegate chain: the delegate's own precommit for the block."""
    vote = sign_vote(delegate, chain_id, PRECOMMIT, block.height, round_, block.hash)
    return Certificate(round_, ((delegate.address, vote.signature),))


def commit_block(chain: Chain, delegate: PrivateKey, *, timestamp_ms: int | None = None) -> Block:
    """Build the next block from the mempool (proposed by `delegate` in round 0), certify and commit it."""
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    block = chain.build_block(0, delegate.address, ts).block
    chain.commit(block, certify(delegate, chain.genesis.chain_id, block))
    return block


# --- the chain builder ------------------------------------------------------------------------------


@dataclass(frozen=True)
class OneDelegate:
    """A one-delegate chain's keys and genesis: `delegate` signs blocks, `owner` owns the candidate (and
    collects its rewards), `sender` is funded to send transfers."""

    genesis: Genesis
    delegate: PrivateKey
    owner: PrivateKey
    sender: PrivateKey

    @classmethod
    def new(
        cls,
        *,
        sender_balance: int = SENDER_BALANCE,
        owner_balance: int = SELF_STAKE,
        funded: Mapping[str, int] | None = None,
        **genesis: Any,
    ) -> OneDelegate:
        """New keys and a genesis for them (`genesis` overrides `genesis_doc`'s defaults: chain_id,
        epoch_length, min_fee...); the sender and the owner hold the given balances, `funded` adds others."""
        delegate, owner, sender = PrivateKey(), PrivateKey(), PrivateKey()
        balances = {sender.address: sender_balance, owner.address: owner_balance, **(funded or {})}
        return cls(one_delegate_genesis(delegate, owner, funded=balances, **genesis), delegate, owner, sender)

    @property
    def chain_id(self) -> int:
        return self.genesis.chain_id

    def init_home(self, home: Path, *, undo_depth: int | None = None) -> NodeConfig:
        return init_home(home, self.genesis, undo_depth=undo_depth)

    def init_db(self, db: Path) -> None:
        """Only a database, initialized with the genesis state (no home around it)."""
        Chain.initialize(self.genesis, db)

    def transfer(self, nonce: int, *, to: str | None = None, amount: int = 1, fee: int | None = None) -> Action:
        """A signed transfer of the sender (to the delegate unless `to`); fee None: the chain's minimum."""
        pay = max(self.genesis.min_fee, 1) if fee is None else fee
        return signed_transfer(
            self.sender, chain_id=self.chain_id, nonce=nonce, to=to or self.delegate.address, amount=amount, fee=pay
        )

    def commit(self, chain: Chain, *, timestamp_ms: int | None = None) -> Block:
        return commit_block(chain, self.delegate, timestamp_ms=timestamp_ms)

    def grow(
        self,
        chain: Chain,
        blocks: int,
        per_block: int,
        *,
        to: Recipient | None = None,
        amount: Amount = None,
        on_block: Callable[[Chain], None] | None = None,
    ) -> int:
        """Commit `blocks` blocks of `per_block` transfers of the sender (to the delegate unless `to`);
        `on_block` is called after each commit. Returns the chain's height."""
        for _ in range(blocks):
            submit_transfers(chain, self.sender, per_block, to=to or self.delegate.address, amount=amount)
            self.commit(chain)
            if on_block is not None:
                on_block(chain)
        return chain.height
