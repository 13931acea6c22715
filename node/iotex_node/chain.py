"""The chain: committed state and blocks, validation and execution of new blocks, and the mempool.

Everything here is synchronous and deterministic except `now_ms` (used only to bound a proposal's
timestamp). The node's event loop calls it; it never calls the network.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from iotex_node import actions as actions_mod
from iotex_node import execution as ex
from iotex_node.actions import Action
from iotex_node.block import Block, Certificate, Header, actions_root, verify_certificate
from iotex_node.constants import MAX_BLOCK_ACTIONS, MAX_CLOCK_DRIFT_MS, SUPPORTED_PROTOCOLS
from iotex_node.errors import ExecutionError, InvalidAction, InvalidBlock, StorageError
from iotex_node.genesis import Genesis
from iotex_node.mempool import Mempool, MempoolLimits
from iotex_node.protocol import DELEGATES_ROOT_FROM, Activation, Schedule, delegates_root
from iotex_node.state import Overlay, State
from iotex_node.store import BlockBooks, Store

log = logging.getLogger("iotex_node.chain")


@dataclass
class Executed:
    """A block executed against the current tip, ready to commit once final."""

    block: Block
    receipts: list[ex.Receipt]
    changes: dict[str, bytes | None]
    books: BlockBooks | None = None


@dataclass(frozen=True)
class CommitInfo:
    height: int
    hash: bytes
    timestamp_ms: int
    round: int
    proposer: str
    action_count: int


class Chain:
    def __init__(
        self,
        genesis: Genesis,
        store: Store,
        *,
        mempool_limits: MempoolLimits | None = None,
        undo_depth: int = 1000,
        max_block_actions: int = 5000,
        supported_protocols: tuple[int, ...] = SUPPORTED_PROTOCOLS,
    ) -> None:
        self.genesis = genesis
        self.store = store
        self.undo_depth = undo_depth
        self.max_block_actions = min(max_block_actions, MAX_BLOCK_ACTIONS)
        self.supported_protocols = supported_protocols
        stored_genesis = store.get_meta("genesis_hash")
        if stored_genesis != genesis.hash.hex():
            raise StorageError(
                f"database {store.path} belongs to genesis {stored_genesis}, not this genesis {genesis.hash.hex()}"
            )
        self.state = State(store.load_state())
        self.height, self.tip_hash = store.tip()
        self.tip_header: Header | None = None
        if self.height > 0:
            self.tip_header = self.block(self.height).header  # type: ignore[union-attr]
            if self.tip_header.state_root != self.state.root():
                raise StorageError(
                    f"state root {self.state.root().hex()} does not match block {self.height}'s "
                    f"{self.tip_header.state_root.hex()}: the database is corrupt"
                )
        self.schedule = genesis.schedule()
        for v, h, reward in store.get_meta("protocol_schedule") or []:
            extra = Activation(v, h, None if reward is None else int(reward))
            self.schedule = Schedule((*self.schedule.activations, extra), self.schedule.base_block_reward)
        # The mempool admits nothing a block could not include: never below the genesis minimum fee,
        # and never a free action (on a genesis without a minimum too). A node may only raise the bar.
        limits = mempool_limits or MempoolLimits()
        floor = max(genesis.min_fee, 1)
        if limits.min_fee < floor:
            limits = replace(limits, min_fee=floor)
        self.mempool = Mempool(genesis.chain_id, limits)
        self._executed: dict[bytes, Executed] = {}
        # Actions whose signatures were checked, by (hash, signature): blocks reuse mempool checks.
        self._verified: dict[bytes, bytes] = {}

    @classmethod
    def initialize(cls, genesis: Genesis, db_path: Path) -> None:
        store = Store(db_path, create=True)
        try:
            store.initialize(genesis.hash, ex.genesis_state(genesis).data)
        finally:
            store.close()

    # --- reading -----------------------------------------------------------------------------------

    @property
    def tip_timestamp_ms(self) -> int:
        return self.tip_header.timestamp_ms if self.tip_header else self.genesis.genesis_time_ms

    def delegates_for(self, height: int) -> list[str]:
        return ex.delegates_of_epoch(self.state, self.genesis.epoch_of(height))

    def block(self, height: int) -> Block | None:
        data = self.store.block_data(height)
        return None if data is None else self.decode_block(orjson.loads(data), verify=False)

    def committed_nonce(self, sender: str) -> int:
        return ex.account(self.state, sender)[1]

    # --- actions -----------------------------------------------------------------------------------

    def parse_action(self, wire: object) -> Action:
        a = actions_mod.parse(wire, verify=False)
        if self._verified.get(a.hash) == a.signature:
            return a
        a = actions_mod.parse(wire, verify=True)
        self._remember_verified(a)
        return a

    def _remember_verified(self, a: Action) -> None:
        self._verified[a.hash] = a.signature
        if len(self._verified) > 400_000:
            # Drop the oldest half; dicts keep insertion order.
            for k in list(self._verified)[:200_000]:
                del self._verified[k]

    def submit(self, action: Action) -> None:
        """Admit a verified action to the mempool, or raise Rejected."""
        bal, nonce = ex.account(self.state, action.sender)
        self.mempool.add(action, nonce, bal)
        self._remember_verified(action)

    # --- blocks ------------------------------------------------------------------------------------

    def decode_block(self, wire: object, *, verify: bool = True) -> Block:
        if not isinstance(wire, dict) or set(wire) != {"header", "actions", "certificate"}:
            raise InvalidBlock("block must have exactly header, actions and certificate")
        header = Header.from_wire(wire["header"])
        raw_actions = wire["actions"]
        if not isinstance(raw_actions, list) or len(raw_actions) > MAX_BLOCK_ACTIONS:
            raise InvalidBlock(f"block {header.height} actions must be a list of at most {MAX_BLOCK_ACTIONS}")
        try:
            acts = tuple(self.parse_action(a) if verify else actions_mod.parse(a, verify=False) for a in raw_actions)
        except InvalidAction as exc:
            raise InvalidBlock(f"block {header.height} carries an invalid action: {exc}") from None
        cert = Certificate.from_wire(wire["certificate"]) if wire["certificate"] is not None else None
        return Block(header, acts, cert)

    def _context(self, header: Header) -> tuple[ex.BlockContext, int]:
        delegates = self.delegates_for(header.height)
        if not delegates:
            raise InvalidBlock(f"no active delegates are known for height {header.height}")
        ctx = ex.BlockContext(
            header.height,
            header.round,
            header.timestamp_ms,
            header.proposer,
            tuple(delegates),
            self.schedule.block_reward_at(header.height),
        )
        return ctx, self.genesis.epoch_of(header.height)

    def protocol_at(self, height: int) -> int:
        return self.schedule.version_at(height)

    def schedule_protocol(self, version: int, height: int, block_reward: int | None = None) -> None:
        """Add an activation agreed by all delegates (each runs this on its node, like a genesis change)."""
        self.schedule = self.schedule.with_activation(Activation(version, height, block_reward), self.height)
        extra = self.store.get_meta("protocol_schedule") or []
        reward = None if block_reward is None else str(block_reward)  # amounts exceed JSON's safe integers
        self.store.set_meta("protocol_schedule", [*extra, [version, height, reward]])

    def protocol_check(self, height: int) -> None:
        """Raise when this release cannot execute the protocol active at `height`."""
        proto = self.protocol_at(height)
        if proto not in self.supported_protocols:
            raise ExecutionError(f"upgrade required: protocol {proto} active at height {height}")

    def build_block(self, round_: int, proposer: str, timestamp_ms: int) -> Executed:
        height = self.height + 1
        self.protocol_check(height)
        timestamp_ms = max(timestamp_ms, self.tip_timestamp_ms + 1)
        ov = Overlay(self.state)
        delegates = tuple(self.delegates_for(height))
        ctx = ex.BlockContext(height, round_, timestamp_ms, proposer, delegates, self.schedule.block_reward_at(height))
        chosen: list[Action] = []
        receipts: list[ex.Receipt] = []
        for a in self.mempool.select(self.max_block_actions, self.committed_nonce):
            try:
                receipts.append(ex.execute_action(ov, self.genesis, ctx, a))
            except ExecutionError:
                continue  # not includable now (e.g. its fee is no longer payable): leave it pending
            chosen.append(a)
        epoch = self.genesis.epoch_of(height)
        books = self._books(ov, ctx, epoch, chosen, ex.finish_block(ov, self.genesis, ctx, epoch))
        changes = ov.changes()
        header = Header(
            chain_id=self.genesis.chain_id,
            height=height,
            round=round_,
            prev_hash=self.tip_hash,
            timestamp_ms=timestamp_ms,
            proposer=proposer,
            epoch=epoch,
            protocol=self.protocol_at(height),
            actions_root=actions_root(chosen),
            receipts_root=ex.receipts_root(receipts),
            state_root=self.state.root_after(changes),
            delegates_root=delegates_root(delegates) if self.protocol_at(height) >= DELEGATES_ROOT_FROM else None,
        )
        done = Executed(Block(header, tuple(chosen)), receipts, changes, books)
        self._executed[header.hash] = done
        return done

    def execute(self, block: Block, *, check_clock: bool) -> Executed:
        """Validate a block for height tip+1 by executing it; raise InvalidBlock naming the problem."""
        cached = self._executed.get(block.hash)
        if cached is not None:
            return cached
        h = block.header
        if h.chain_id != self.genesis.chain_id:
            raise InvalidBlock(f"block is for chain {h.chain_id}, not {self.genesis.chain_id}")
        if h.height != self.height + 1:
            raise InvalidBlock(f"block height {h.height} does not follow the tip {self.height}")
        if h.prev_hash != self.tip_hash:
            raise InvalidBlock(f"block {h.height} builds on {h.prev_hash.hex()[:16]}, not the tip {self.tip_hash.hex()[:16]}")
        try:
            self.protocol_check(h.height)
        except ExecutionError as exc:
            raise InvalidBlock(str(exc)) from None
        if h.protocol != self.protocol_at(h.height):
            raise InvalidBlock(f"block {h.height} says protocol {h.protocol}, the schedule says {self.protocol_at(h.height)}")
        if h.epoch != self.genesis.epoch_of(h.height):
            raise InvalidBlock(f"block {h.height} says epoch {h.epoch}, not {self.genesis.epoch_of(h.height)}")
        if h.timestamp_ms <= self.tip_timestamp_ms:
            raise InvalidBlock(f"block {h.height} timestamp {h.timestamp_ms} is not after its parent's")
        if check_clock and h.timestamp_ms > int(time.time() * 1000) + MAX_CLOCK_DRIFT_MS:
            raise InvalidBlock(f"block {h.height} timestamp {h.timestamp_ms} is in the future")
        ctx, epoch = self._context(h)
        want_root = delegates_root(ctx.delegates) if h.protocol >= DELEGATES_ROOT_FROM else None
        if h.delegates_root != want_root:
            raise InvalidBlock(f"block {h.height} delegates_root does not match protocol {h.protocol}'s rule")
        expected = ex.proposer_of(ctx.delegates, h.height, h.round)
        if h.proposer != expected:
            raise InvalidBlock(f"block {h.height} round {h.round} is proposed by {h.proposer}, the slot is {expected}'s")
        if len(block.actions) > self.max_block_actions and len(block.actions) > MAX_BLOCK_ACTIONS:
            raise InvalidBlock(f"block {h.height} has too many actions")
        if actions_root(block.actions) != h.actions_root:
            raise InvalidBlock(f"block {h.height} actions do not match its actions root")
        if len({a.hash for a in block.actions}) != len(block.actions):
            raise InvalidBlock(f"block {h.height} includes an action twice")
        ov = Overlay(self.state)
        receipts = []
        for a in block.actions:
            try:
                receipts.append(ex.execute_action(ov, self.genesis, ctx, a))
            except ExecutionError as exc:
                raise InvalidBlock(f"block {h.height} includes action {a.hash_hex[:16]} that is not admissible: {exc}") from None
        books = self._books(ov, ctx, epoch, block.actions, ex.finish_block(ov, self.genesis, ctx, epoch))
        if ex.receipts_root(receipts) != h.receipts_root:
            raise InvalidBlock(f"block {h.height} receipts root does not match execution")
        changes = ov.changes()
        root = self.state.root_after(changes)
        if root != h.state_root:
            raise InvalidBlock(f"block {h.height} state root {h.state_root.hex()[:16]} != executed {root.hex()[:16]}")
        done = Executed(block, receipts, changes, books)
        self._executed[block.hash] = done
        return done

    def _books(
        self, ov: Overlay, ctx: ex.BlockContext, epoch: int, actions: list[Action] | tuple[Action, ...], grants: list[ex.Grant]
    ) -> BlockBooks:
        """What the block adds to the books (store.py): not consensus, derived from the block as executed."""
        granted = [(g.owner, g.kind, g.amount) for g in (ex.fee_grant(ov, ctx, actions), *grants)]
        votes = orjson.dumps(ex.votes_snapshot(ov, self.genesis)) if self.genesis.is_epoch_end(ctx.height) else None
        accounts = []
        for i, a in enumerate(actions):
            accounts.append((a.sender, i, a.hash))
            to = a.payload.get("to") if a.type == "transfer" else None
            if to and to != a.sender:
                accounts.append((to, i, a.hash))
        return BlockBooks(epoch, granted, votes, accounts)

    def commit(self, block: Block, cert: Certificate) -> CommitInfo:
        """Commit a final block (executing it first if needed); the certificate must already be checked."""
        executed = self.execute(block, check_clock=False)
        final = executed.block.with_certificate(cert)
        h = final.header
        receipts = [
            (r.action_hash, i, orjson.dumps({**r.to_wire(), "height": h.height, "index": i}))
            for i, r in enumerate(executed.receipts)
        ]
        prune = h.height - self.undo_depth if h.height > self.undo_depth else 0
        self.store.commit_block(
            h.height,
            final.hash,
            orjson.dumps(final.to_wire()),
            receipts,
            executed.changes,
            {k: self.state.get_raw(k) for k in executed.changes},
            prune,
            executed.books,
        )
        self.state.apply(executed.changes)
        self.height, self.tip_hash, self.tip_header = h.height, final.hash, h
        self._executed.clear()
        self.mempool.remove_committed(final.actions, self.committed_nonce)
        return CommitInfo(h.height, final.hash, h.timestamp_ms, h.round, h.proposer, len(final.actions))

    def apply_synced(self, block: Block) -> CommitInfo:
        """A block from a peer's history: check its certificate, then execute and commit it."""
        if block.height != self.height + 1:
            raise InvalidBlock(f"synced block {block.height} does not follow the tip {self.height}")
        verify_certificate(self.genesis.chain_id, block.header, block.certificate, self.delegates_for(block.height))
        assert block.certificate is not None
        return self.commit(block, block.certificate)

    def receipt(self, h: bytes) -> dict[str, Any] | None:
        found = self.store.receipt(h)
        if found is None:
            return None
        _height, _idx, rec = found
        return rec
