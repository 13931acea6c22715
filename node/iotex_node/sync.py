"""Catch-up: whom to ask for blocks, when to give up on a peer, and how far behind the network we are.

A peer's status (its height) is only a claim; what backs it is the blocks it serves when asked. So:

- the height "the network shows" is the lower median of the claims of the peers we weigh: the delegates
  of the epoch among our peers if any proved their operator key in the handshake (at most one claim per
  delegate), else the peers we dialed ourselves (configured), else all peers. One peer, or a minority,
  claiming a huge height moves neither readiness nor the choice of sync peers;
- a request goes to a peer chosen at random among those ahead of us whose claim the weighed median
  backs (at most one batch beyond it), and only to the others when none is; each batch is a new draw, so a
  long catch-up spreads over several peers;
- an unanswered request is asked again of another peer after `HEDGE_AFTER` seconds (at most
  `MAX_INFLIGHT` at once), and a peer that has not answered within `REQUEST_TIMEOUT` is dropped;
- a peer that answers with no block although it claimed to be ahead, a block that does not check, or
  blocks nobody asked it for, is dropped and refused for a while (see p2p.BAN_SECONDS).
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from iotex_node.p2p import Peer

SYNC_BATCH = 64
# A peer one block ahead is usually just a few ms ahead of our own commit; wait this long before syncing.
SYNC_GRACE = 1.0
HEDGE_AFTER = 0.5
REQUEST_TIMEOUT = 10.0
MAX_INFLIGHT = 3


@dataclass
class Request:
    peer: Peer
    start: int
    count: int
    sent: float


def weighed(peers: Iterable[Peer], delegates: Collection[str]) -> list[int]:
    """The height claims that count for "what the network shows", ascending (see the module doc)."""
    peers = [p for p in peers if not p.closed]
    by_delegate: dict[str, int] = {}
    for p in peers:
        if p.operator is not None and p.operator in delegates:
            by_delegate[p.operator] = max(by_delegate.get(p.operator, 0), p.height)
    if by_delegate:
        return sorted(by_delegate.values())
    outbound = [p.height for p in peers if p.outbound]
    return sorted(outbound or [p.height for p in peers])


def network_height(peers: Iterable[Peer], delegates: Collection[str]) -> int | None:
    """The lower median of the weighed claims: at least half of those peers are at or below it."""
    claims = weighed(peers, delegates)
    return claims[(len(claims) - 1) // 2] if claims else None


class SyncState:
    def __init__(self, rng: random.Random | None = None) -> None:
        self.inflight: dict[str, Request] = {}  # by node id
        self._rng = rng or random.Random()  # spreading load, not security

    def forget_closed(self) -> None:
        for node_id in [n for n, r in self.inflight.items() if r.peer.closed]:
            del self.inflight[node_id]

    def expired(self, now: float) -> list[Request]:
        """Requests older than REQUEST_TIMEOUT, removed: their peers are to be dropped."""
        self.forget_closed()
        late = [r for r in self.inflight.values() if now - r.sent > REQUEST_TIMEOUT]
        for r in late:
            del self.inflight[r.peer.node_id]
        return late

    def answered(self, peer: Peer) -> Request | None:
        """The request `peer` just answered, or None when we had asked it nothing."""
        req = self.inflight.get(peer.node_id)
        if req is None or req.peer is not peer:
            return None
        del self.inflight[peer.node_id]
        return req

    def choose(self, peers: Iterable[Peer], height: int, delegates: Collection[str], now: float) -> Peer | None:
        """A peer to ask for the blocks after `height` now, or None (nobody ahead, or wait for answers)."""
        self.forget_closed()
        if self.inflight:
            newest = max(r.sent for r in self.inflight.values())
            if now - newest < HEDGE_AFTER or len(self.inflight) >= MAX_INFLIGHT:
                return None
        peers = [p for p in peers if not p.closed]
        ahead = [p for p in peers if p.height > height and p.node_id not in self.inflight]
        if not ahead:
            return None
        backed = network_height(peers, delegates) or 0
        good = [p for p in ahead if p.height <= max(backed, height) + SYNC_BATCH]
        return self._rng.choice(good or ahead)

    def sent(self, peer: Peer, start: int, count: int, now: float) -> None:
        self.inflight[peer.node_id] = Request(peer, start, count, now)


def grace_applies(best_claim: int, height: int, joined: bool) -> bool:
    """Whether to wait SYNC_GRACE before asking for the block after `height`, the best peer claiming
    `best_claim`: only when that is one block ahead and this node is deciding that block itself (it has
    decided a height by consensus since it started). A node that just (re)started heard little or nothing
    of the height its peers finalized meanwhile; waiting would only make it late for the next one too."""
    return joined and best_claim == height + 1
