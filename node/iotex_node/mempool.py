"""Pending actions: per-sender nonce order, fee priority across senders, caps, and a reason per refusal.

An action enters only if it is the sender's next nonce (counting what is already pending), so nonce
gaps and replays are refused at the door rather than queued forever. A pending action with the same
nonce may be replaced only by one paying a strictly higher fee. Blocks take, across senders, the
highest-fee next action first; within a sender, nonces in order.

Fees: an action must pay at least `min_fee` (never below 1: a free action costs its sender nothing
and everyone else block space and state), and the sender's committed balance must cover its fee plus
the fees of its other pending actions. So a key that holds nothing gets nothing in, whatever it pays.

When the pool is full (`max_total`), an action paying more than the cheapest evictable action takes its
place: the evictable actions are each sender's last pending one (never a nonce in the middle, which would
leave a gap), and the evicted one is reported like a displaced action (reason "evicted"), so that its
sender can learn that it never will be final. An action paying no more than the cheapest is refused
(mempool_full). Spam at the lowest fee thus cannot push out anything paying more.
The chain sets `min_fee` to at least the genesis minimum (a block below it is invalid anyway).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from iotex_node.actions import Action
from iotex_node.errors import Rejected

# Told which actions left the pool: (final hashes, displaced actions with the reason each never will be).
# The node journals both (mempool_store.py); the pool itself does no I/O.
RemovedHook = Callable[[list[bytes], list[tuple[Action, str, str]]], None]

# Rejection codes (also the `reason` label of iotex_api_rejections_total).
DUPLICATE = "duplicate"
NONCE_TOO_LOW = "nonce_too_low"
NONCE_GAP = "nonce_gap"
WRONG_CHAIN = "wrong_chain_id"
INSUFFICIENT_BALANCE = "insufficient_balance"
MEMPOOL_FULL = "mempool_full"
SENDER_QUOTA = "sender_quota_exceeded"
FEE_TOO_LOW = "fee_too_low"
REPLACEMENT_UNDERPRICED = "replacement_underpriced"
# Why an action accepted earlier left the pool without becoming final (GET /v1/actions/{hash} says so).
NONCE_TAKEN = "nonce_taken"
REPLACED = "replaced"
EVICTED = "evicted"


@dataclass(frozen=True)
class MempoolLimits:
    max_total: int = 100_000
    max_per_sender: int = 2_000
    min_fee: int = 1  # the lowest fee admitted; the chain raises it to the genesis minimum


class Mempool:
    def __init__(self, chain_id: int, limits: MempoolLimits | None = None) -> None:
        self.chain_id = chain_id
        self.limits = limits or MempoolLimits()
        self._by_sender: dict[str, dict[int, Action]] = {}
        self._by_hash: dict[bytes, Action] = {}
        # Recently finalized or refused hashes, so a replayed action gets a precise answer.
        self._recent_final: OrderedDict[bytes, None] = OrderedDict()
        self.on_removed: RemovedHook | None = None

    def __len__(self) -> int:
        return len(self._by_hash)

    def get(self, h: bytes) -> Action | None:
        return self._by_hash.get(h)

    def pending_nonce(self, sender: str, committed_nonce: int) -> int:
        """Next nonce the sender should use, given its committed nonce and what is pending."""
        pending = self._by_sender.get(sender)
        if not pending:
            return committed_nonce + 1
        return max(max(pending) + 1, committed_nonce + 1)

    def add(self, action: Action, committed_nonce: int, balance: int) -> None:
        """Admit a verified action or raise Rejected with the reason."""
        if action.chain_id != self.chain_id:
            raise Rejected(WRONG_CHAIN, f"chain id {action.chain_id} is not this chain's {self.chain_id}")
        if action.hash in self._by_hash or action.hash in self._recent_final:
            raise Rejected(DUPLICATE, f"action {action.hash.hex()} is already known")
        if action.nonce <= committed_nonce:
            raise Rejected(NONCE_TOO_LOW, f"nonce {action.nonce} was already used (next is {committed_nonce + 1})")
        if action.fee < self.limits.min_fee:
            raise Rejected(FEE_TOO_LOW, f"fee {action.fee} is below this node's minimum fee {self.limits.min_fee}")
        pending = self._by_sender.get(action.sender, {})
        existing = pending.get(action.nonce)
        victim: Action | None = None
        if existing is not None:
            if action.fee <= existing.fee:
                raise Rejected(
                    REPLACEMENT_UNDERPRICED,
                    f"nonce {action.nonce} is already pending with fee {existing.fee}; a replacement must pay more",
                )
        else:
            expected = self.pending_nonce(action.sender, committed_nonce)
            if action.nonce != expected:
                raise Rejected(NONCE_GAP, f"nonce {action.nonce} leaves a gap: the sender's next nonce is {expected}")
            if len(pending) >= self.limits.max_per_sender:
                raise Rejected(
                    SENDER_QUOTA, f"sender already has {len(pending)} pending actions (limit {self.limits.max_per_sender})"
                )
            if len(self._by_hash) >= self.limits.max_total:
                victim = self._cheapest_tail(exclude=action.sender)
                if victim is None or victim.fee >= action.fee:
                    cheapest = f"; pay more than {victim.fee} to displace the cheapest" if victim is not None else ""
                    raise Rejected(
                        MEMPOOL_FULL, f"mempool holds {len(self._by_hash)} actions (limit {self.limits.max_total}){cheapest}"
                    )
        others = [a.fee for n, a in pending.items() if n != action.nonce]
        spend = sum(others) + action.fee
        if balance < spend:
            what = f"{spend}: fee {action.fee} plus {spend - action.fee} for {len(others)} pending" if others else f"fee {spend}"
            raise Rejected(INSUFFICIENT_BALANCE, f"balance {balance} cannot pay {what}")
        if victim is not None:
            self._evict(victim, action)
        if existing is not None:
            del self._by_hash[existing.hash]
            if self.on_removed is not None:
                why = f"replaced by action {action.hash.hex()} (same nonce {action.nonce}, higher fee {action.fee})"
                self.on_removed([], [(existing, REPLACED, why)])
        self._by_sender.setdefault(action.sender, {})[action.nonce] = action
        self._by_hash[action.hash] = action

    def _cheapest_tail(self, exclude: str) -> Action | None:
        """The lowest-fee action among each other sender's last pending one (the newest of the cheapest)."""
        best: Action | None = None
        for sender, pending in self._by_sender.items():
            if sender == exclude or not pending:
                continue
            tail = pending[max(pending)]
            if best is None or tail.fee < best.fee:
                best = tail
        return best

    def _evict(self, victim: Action, by: Action) -> None:
        pending = self._by_sender[victim.sender]
        del pending[victim.nonce]
        if not pending:
            del self._by_sender[victim.sender]
        del self._by_hash[victim.hash]
        if self.on_removed is not None:
            why = f"evicted from a full mempool by action {by.hash.hex()}, which pays a higher fee ({by.fee} > {victim.fee})"
            self.on_removed([], [(victim, EVICTED, why)])

    def select(self, max_count: int, committed_nonce: Callable[[str], int]) -> list[Action]:
        """Up to max_count actions for a block: next nonces first, highest fee first across senders."""
        heap: list[tuple[int, str, int]] = []
        for sender, pending in self._by_sender.items():
            start = committed_nonce(sender) + 1
            if start in pending:
                heap.append((-pending[start].fee, sender, start))
        heapq.heapify(heap)
        out: list[Action] = []
        while heap and len(out) < max_count:
            _negfee, sender, nonce = heapq.heappop(heap)
            pending = self._by_sender[sender]
            out.append(pending[nonce])
            nxt = pending.get(nonce + 1)
            if nxt is not None:
                heapq.heappush(heap, (-nxt.fee, sender, nonce + 1))
        return out

    def remove_committed(self, actions: list[Action] | tuple[Action, ...], committed_nonce: Callable[[str], int]) -> None:
        """Drop what a final block included, and anything of those senders its nonces made stale."""
        senders = set()
        included: dict[tuple[str, int], bytes] = {}
        for a in actions:
            senders.add(a.sender)
            included[(a.sender, a.nonce)] = a.hash
            self._remember(a.hash)
        final: list[bytes] = []
        displaced: list[tuple[Action, str, str]] = []
        for sender in senders:
            pending = self._by_sender.get(sender)
            if not pending:
                continue
            floor = committed_nonce(sender)
            for n in [n for n in pending if n <= floor]:
                gone = pending.pop(n)
                self._by_hash.pop(gone.hash, None)
                winner = included.get((sender, n))
                if winner == gone.hash:
                    final.append(gone.hash)
                else:
                    by = f"action {winner.hex()}" if winner is not None else "another action"
                    displaced.append((gone, NONCE_TAKEN, f"nonce {n} of {sender} was taken by {by}, now final"))
            if not pending:
                del self._by_sender[sender]
        if self.on_removed is not None and (final or displaced):
            self.on_removed(final, displaced)

    def _remember(self, h: bytes) -> None:
        self._recent_final[h] = None
        if len(self._recent_final) > 200_000:
            self._recent_final.popitem(last=False)

    def forget_recent(self) -> None:
        self._recent_final.clear()
