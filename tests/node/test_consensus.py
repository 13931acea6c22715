"""Roll-DPoS consensus: the HeightConsensus state machine, alone and in a simulated network.

The simulation runs N=4 delegates, each a real `HeightConsensus`, with real secp256k1 keys and real
signed proposals and votes (checked on receipt like the node does). A seeded message bus delays,
reorders and drops messages; timeouts are events in simulated time. Honest nodes relay each message
once (as the node does) and, while a height is undecided, gossip again what they sent and relayed, so
that a message survives losses (Tendermint's liveness assumes such gossip; the node re-sends only its
own last messages). They help a peer that is behind with the decided block and its certificate (as
sync does). A byzantine delegate signs conflicting proposals and votes and sends each honest node a
different one.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from iotex_node import consensus as cs
from iotex_node.block import (
    PRECOMMIT,
    PREVOTE,
    Block,
    Certificate,
    Header,
    Vote,
    actions_root,
    proposal_digest,
    sign_vote,
    verify_certificate,
    vote_digest,
)
from iotex_node.crypto.keys import PrivateKey, recover_address
from iotex_node.errors import InvalidBlock

CHAIN_ID = 7
KEYS = tuple(PrivateKey(hashlib.sha256(f"consensus-delegate-{i}".encode()).digest()) for i in range(4))
DELEGATES = tuple(k.address for k in KEYS)
GENESIS_HASH = b"\x00" * 32
PROPOSE_TIMEOUT_MS = 1000
VOTE_TIMEOUT_MS = 500
RESEND_EVERY_MS = 1500


BACKSTOP_FACTOR = 4


def timeout_ms(kind: str, round_: int, backstop: bool = False) -> int:
    """The node's timeouts (node.py `_timeout_delay`) in simulated time."""
    if backstop:
        return int(BACKSTOP_FACTOR * max(PROPOSE_TIMEOUT_MS, VOTE_TIMEOUT_MS) * (1 + 0.5 * min(round_, 20)))
    base = PROPOSE_TIMEOUT_MS if kind == "propose" else VOTE_TIMEOUT_MS
    return int(base * (1 + 0.5 * min(round_, 20)))


def make_block(height: int, round_: int, proposer: str, prev_hash: bytes, tag: bytes = b"") -> Block:
    """A block the simulation never executes: its roots just make it unique per proposer, round and tag."""
    salt = hashlib.sha256(f"{height}/{round_}/{proposer}/".encode() + tag).digest()
    header = Header(CHAIN_ID, height, round_, prev_hash, 1000 * height + round_, proposer, 1, 1, actions_root(()), salt, salt)
    return Block(header, ())


def sign_proposal(key: PrivateKey, height: int, round_: int, pol_round: int, block: Block) -> cs.Proposal:
    sig = key.sign(proposal_digest(CHAIN_ID, height, round_, pol_round, block.hash))
    return cs.Proposal(height, round_, pol_round, block, key.address, sig)


# --- messages --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProposalMsg:
    proposal: cs.Proposal


@dataclass(frozen=True)
class VoteMsg:
    wire: dict[str, Any]  # what travels; the receiver parses and checks it with Vote.from_wire


@dataclass(frozen=True)
class GetBlockMsg:
    height: int
    block_hash: bytes


@dataclass(frozen=True)
class BlockMsg:
    block: Block


@dataclass(frozen=True)
class CommitMsg:
    block: Block
    certificate: Certificate


Msg = ProposalMsg | VoteMsg | GetBlockMsg | BlockMsg | CommitMsg


# --- the simulated network -------------------------------------------------------------------------


class Sim:
    def __init__(
        self,
        seed: int,
        *,
        heights: int = 3,
        silent: frozenset[int] = frozenset(),
        byzantine: int | None = None,
        byzantine_cls: type[ByzantineNode] | None = None,
        drop: float = 0.0,
        max_delay_ms: int = 300,
        gst_ms: int = 0,
        pre_gst_delay_ms: int = 4000,
    ) -> None:
        """Messages take 1..max_delay_ms, except before the global stabilization time `gst_ms`, when
        they take up to pre_gst_delay_ms (longer than the timeouts: rounds fail, votes split)."""
        self.rng = random.Random(seed)
        self.heights = heights
        self.drop = drop
        self.max_delay_ms = max_delay_ms
        self.gst_ms = gst_ms
        self.pre_gst_delay_ms = pre_gst_delay_ms
        self.now = 0
        self._queue: list[tuple[int, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self.nodes: dict[int, HonestNode | ByzantineNode] = {}
        for i, key in enumerate(KEYS):
            if i in silent:
                continue
            self.nodes[i] = (byzantine_cls or ByzantineNode)(self, i, key) if i == byzantine else HonestNode(self, i, key)
        self.honest = [n for n in self.nodes.values() if isinstance(n, HonestNode)]
        self.byzantine = [n for n in self.nodes.values() if isinstance(n, ByzantineNode)]
        self.split_locks = False  # were two honest nodes ever locked on different blocks at one height?

    def at(self, delay_ms: int, fn: Callable[..., None], *args: Any) -> None:
        heapq.heappush(self._queue, (self.now + delay_ms, self._seq, fn, args))
        self._seq += 1

    def send(self, src: int, dst: int, msg: Msg) -> None:
        node = self.nodes.get(dst)
        if node is None or self.rng.random() < self.drop:
            return  # a silent delegate, or a lost message
        limit = self.pre_gst_delay_ms if self.now < self.gst_ms else self.max_delay_ms
        self.at(self.rng.randint(1, limit), self._deliver, node, src, msg)

    def broadcast(self, src: int, msg: Msg) -> None:
        for dst in range(len(KEYS)):
            if dst != src:
                self.send(src, dst, msg)

    def _deliver(self, node: HonestNode | ByzantineNode, src: int, msg: Msg) -> None:
        node.receive(src, msg)

    def observe(self, height: int, round_: int) -> None:
        """The adversary sees every honest node's height and round as it changes."""
        for b in self.byzantine:
            b.observe(height, round_)
        if not self.split_locks:
            locks = {(n.hc.height, n.hc.locked_block.hash) for n in self.honest if n.hc.locked_block is not None}
            self.split_locks = len(locks) > len({h for h, _ in locks})

    def done(self) -> bool:
        return all(len(n.decisions) >= self.heights for n in self.honest)

    def run(self, until_ms: int) -> Sim:
        for node in self.nodes.values():
            node.boot()
        while self._queue and not self.done():
            t, _seq, fn, args = heapq.heappop(self._queue)
            if t > until_ms:
                break
            self.now = t
            fn(*args)
        return self

    def decided_hashes(self) -> dict[int, set[bytes]]:
        out: dict[int, set[bytes]] = {}
        for n in self.honest:
            for h, d in n.decisions.items():
                out.setdefault(h, set()).add(d.block.hash)
        return out


class HonestNode:
    """Drives one HeightConsensus per height the way the node does (node.py `_handle`)."""

    def __init__(self, sim: Sim, idx: int, key: PrivateKey) -> None:
        self.sim, self.idx, self.key, self.address = sim, idx, key, key.address
        self.hc = cs.HeightConsensus(1, DELEGATES, self.address)
        self.decisions: dict[int, cs.Decide] = {}
        self.evidence: list[cs.Equivocation] = []
        self.signed: dict[tuple[str, int, int], bytes | None] = {}
        self.future: dict[int, list[tuple[int, Msg]]] = {}
        self.gossip: list[Msg] = []  # what we sent or relayed at the current height
        self.helped: dict[tuple[int, int], int] = {}
        self.seen: set[tuple[Any, ...]] = set()

    def boot(self) -> None:
        self.start_height(1)
        self.sim.at(RESEND_EVERY_MS, self.resend)

    def start_height(self, h: int) -> None:
        self.hc = cs.HeightConsensus(h, DELEGATES, self.address)
        self.gossip = []
        self.handle(self.hc.start())
        for src, msg in self.future.pop(h, []):
            self.receive(src, msg)

    def prev_hash(self, h: int) -> bytes:
        return self.decisions[h - 1].block.hash if h > 1 else GENESIS_HASH

    def _sign_once(self, kind: str, h: int, r: int, value: bytes | None) -> None:
        """An honest machine must never ask to sign two different things for one height, round and step."""
        first = self.signed.setdefault((kind, h, r), value)
        assert first == value, f"honest {self.address} asked to sign two different {kind}s at {h}/{r}"

    def handle(self, effects: list[cs.Effect]) -> None:
        hc = self.hc
        queue = list(effects)
        while queue:
            e = queue.pop(0)
            if isinstance(e, cs.SendVote):
                vote = self.send_vote(e)
                if vote is not None:
                    queue.extend(hc.on_vote(vote))
            elif isinstance(e, cs.Propose):
                assert hc.proposer(e.round) == self.address
                if hc.round != e.round or hc.step != cs.PROPOSE or hc.decided:
                    continue
                p = self.send_proposal(e)
                if p is not None:
                    queue.extend(hc.on_proposal(p, True))
            elif isinstance(e, cs.ScheduleTimeout):
                self.schedule_timeout(e)
            elif isinstance(e, cs.Decide):
                verify_certificate(CHAIN_ID, e.block.header, e.certificate, list(DELEGATES))
                assert e.block.certificate == e.certificate
                assert e.block.height == hc.height
                self.decisions[hc.height] = e
                self.on_decided(hc.height)
                self.start_height(hc.height + 1)
                return  # effects of the decided height are void, as in the node
            elif isinstance(e, cs.FetchBlock):
                self.sim.broadcast(self.idx, GetBlockMsg(e.height, e.block_hash))
            elif isinstance(e, cs.Equivocation):
                self.evidence.append(e)
        self.sim.observe(hc.height, hc.round)

    def send_vote(self, e: cs.SendVote) -> Vote | None:
        self._sign_once(e.type, e.height, e.round, e.block_hash)
        vote = sign_vote(self.key, CHAIN_ID, e.type, e.height, e.round, e.block_hash)
        msg: Msg = VoteMsg(vote.to_wire())
        self.gossip.append(msg)
        self.sim.broadcast(self.idx, msg)
        return vote

    def new_block(self, e: cs.Propose) -> Block:
        return e.block or make_block(e.height, e.round, self.address, self.prev_hash(e.height))

    def send_proposal(self, e: cs.Propose) -> cs.Proposal | None:
        block = self.new_block(e)
        self._sign_once("proposal", e.height, e.round, block.hash)
        p = sign_proposal(self.key, e.height, e.round, e.pol_round, block)
        msg = ProposalMsg(p)
        self.gossip.append(msg)
        self.sim.broadcast(self.idx, msg)
        return p

    def schedule_timeout(self, e: cs.ScheduleTimeout) -> None:
        self.sim.at(timeout_ms(e.kind, e.round, e.backstop), self.on_timeout, e)

    def on_decided(self, height: int) -> None:
        """Hook: a height was decided (committed) here."""

    def on_timeout(self, e: cs.ScheduleTimeout) -> None:
        if self.hc.height == e.height:
            self.handle(self.hc.on_timeout(e.kind, e.height, e.round))

    def resend(self, last_height: int = 0) -> None:
        if self.hc.height == last_height:  # stuck since the last tick
            for msg in self.gossip:
                self.sim.broadcast(self.idx, msg)
        self.sim.at(RESEND_EVERY_MS, self.resend, self.hc.height)

    def receive(self, src: int, msg: Msg) -> None:
        hc = self.hc
        if isinstance(msg, ProposalMsg):
            p = msg.proposal
            key: tuple[Any, ...] = ("p", p.proposer, p.height, p.round, p.pol_round, p.block.hash)
            digest = proposal_digest(CHAIN_ID, p.height, p.round, p.pol_round, p.block.hash)
            if p.block.height != p.height or recover_address(p.signature, digest) != p.proposer:
                return
            self._route(src, p.height, msg, key, lambda: hc.on_proposal(p, True))
        elif isinstance(msg, VoteMsg):
            key = ("v", *sorted(msg.wire.items()))
            try:
                vote = Vote.from_wire(msg.wire, CHAIN_ID)
            except InvalidBlock:
                return
            self._route(src, vote.height, msg, key, lambda: hc.on_vote(vote))
        elif isinstance(msg, GetBlockMsg):
            found = hc.blocks.get(msg.block_hash) if msg.height == hc.height else None
            decided = self.decisions.get(msg.height)
            if found is not None:
                self.sim.send(self.idx, src, BlockMsg(found[0]))
            elif decided is not None and decided.block.hash == msg.block_hash:
                self.sim.send(self.idx, src, BlockMsg(decided.block))
        elif isinstance(msg, BlockMsg):
            if msg.block.height == hc.height:
                self.handle(hc.on_block(msg.block, True))
        elif isinstance(msg, CommitMsg):
            if msg.block.height != hc.height:
                return
            try:
                verify_certificate(CHAIN_ID, msg.block.header, msg.certificate, list(DELEGATES))
            except InvalidBlock:
                return
            self.handle(hc.on_block(msg.block, True))
            for voter, sig in msg.certificate.signatures:
                if self.hc is not hc:
                    break
                self.handle(hc.on_vote(Vote(PRECOMMIT, hc.height, msg.certificate.round, msg.block.hash, voter, sig)))

    def _route(self, src: int, height: int, msg: Msg, key: tuple[Any, ...], deliver: Callable[[], list[cs.Effect]]) -> None:
        if height == self.hc.height:
            if key not in self.seen:  # relay each message of the current height once, as the node does
                self.seen.add(key)
                self.gossip.append(msg)
                for dst in range(len(KEYS)):
                    if dst not in (src, self.idx):
                        self.sim.send(self.idx, dst, msg)
            self.handle(deliver())
        elif height > self.hc.height:
            self.future.setdefault(height, []).append((src, msg))
        else:  # the sender is behind: hand it the decided block with its certificate
            d = self.decisions.get(height)
            last = self.helped.get((src, height))
            if d is not None and (last is None or self.sim.now - last >= 500):
                self.helped[(src, height)] = self.sim.now
                self.sim.send(self.idx, src, CommitMsg(d.block, d.certificate))


class ByzantineNode:
    """Signs conflicting proposals and votes and sends each honest node a different one."""

    def __init__(self, sim: Sim, idx: int, key: PrivateKey) -> None:
        self.sim, self.idx, self.key, self.address = sim, idx, key, key.address
        self.rng = random.Random(sim.rng.getrandbits(64))
        self.blocks: dict[int, dict[bytes, Block]] = {}
        self.proposed: set[tuple[int, int]] = set()
        self.voted: set[tuple[int, str, int, int]] = set()
        self.double_sent = 0  # messages that contradict one this target already got from us

    def boot(self) -> None:
        pass

    def targets(self) -> list[int]:
        return [n.idx for n in self.sim.honest]

    def observe(self, height: int, round_: int) -> None:
        for r in (round_, round_ + 1):  # also get ahead of the honest nodes' next round
            if cs.HeightConsensus(height, DELEGATES, None).proposer(r) == self.address and (height, r) not in self.proposed:
                self.propose(height, r)

    def propose(self, height: int, round_: int) -> None:
        self.proposed.add((height, round_))
        known = self.blocks.setdefault(height, {})
        a = make_block(height, round_, self.address, GENESIS_HASH, b"A")
        b = make_block(height, round_, self.address, GENESIS_HASH, b"B")
        known[a.hash], known[b.hash] = a, b
        targets = self.targets()
        self.rng.shuffle(targets)
        for i, t in enumerate(targets):
            block, other = (a, b) if i % 2 == 0 else (b, a)
            pol = -1
            if round_ > 0 and self.rng.random() < 0.3:
                # re-propose any block seen at this height, claiming some earlier round's polka
                block = self.rng.choice(list(known.values()))
                pol = self.rng.randrange(round_)
            self.sim.send(self.idx, t, ProposalMsg(sign_proposal(self.key, height, round_, pol, block)))
            if self.rng.random() < 0.3:
                self.sim.send(self.idx, t, ProposalMsg(sign_proposal(self.key, height, round_, -1, other)))
                self.double_sent += 1
        self.vote(height, round_, self.rng.choice([a.hash, b.hash]))

    def vote(self, height: int, round_: int, proposed: bytes | None = None) -> None:
        """Back a different block at each honest node, mostly the same one for its prevote and precommit.
        Often it backs the round's proposal at one honest node only: with two honest prevotes for it, that
        completes a polka there and nowhere else, so that node alone locks (the attack on locking)."""
        blocks: list[bytes | None] = list(self.blocks.get(height, {}))
        choices: list[bytes | None] = [None, *blocks]
        targets = self.targets()
        chosen = self.rng.choice(targets)
        targeted = proposed is not None and self.rng.random() < 0.6
        for t in targets:
            if targeted:
                favourite = proposed if t == chosen else None
            else:
                favourite = self.rng.choice(blocks) if blocks and self.rng.random() < 0.8 else None
            for vtype in (PREVOTE, PRECOMMIT):
                if (t, vtype, height, round_) in self.voted:
                    continue
                self.voted.add((t, vtype, height, round_))
                first = favourite if self.rng.random() < 0.8 else self.rng.choice(choices)
                self._send_vote(t, vtype, height, round_, first)
                if len(choices) > 1 and self.rng.random() < 0.3:
                    second = self.rng.choice([c for c in choices if c != first])
                    self._send_vote(t, vtype, height, round_, second)
                    self.double_sent += 1

    def _send_vote(self, target: int, vtype: str, height: int, round_: int, block_hash: bytes | None) -> None:
        vote = sign_vote(self.key, CHAIN_ID, vtype, height, round_, block_hash)
        self.sim.send(self.idx, target, VoteMsg(vote.to_wire()))

    def receive(self, src: int, msg: Msg) -> None:
        if isinstance(msg, ProposalMsg):
            p = msg.proposal
            self.blocks.setdefault(p.height, {})[p.block.hash] = p.block
            self.vote(p.height, p.round, p.block.hash)
        elif isinstance(msg, VoteMsg):
            if self.rng.random() < 0.3:
                self.vote(msg.wire["height"], msg.wire["round"])
        elif isinstance(msg, GetBlockMsg):
            block = self.blocks.get(msg.height, {}).get(msg.block_hash)
            if block is not None:
                self.sim.send(self.idx, src, BlockMsg(block))


def assert_agreement(sim: Sim) -> None:
    for h, hashes in sim.decided_hashes().items():
        assert len(hashes) == 1, f"honest nodes decided {len(hashes)} different blocks at height {h}"


def decided_rounds(sim: Sim) -> dict[int, int]:
    """Height -> the round whose precommits finalized it (the same for every honest node here)."""
    out: dict[int, int] = {}
    for n in sim.honest:
        for h, d in n.decisions.items():
            out.setdefault(h, d.certificate.round)
    return out


# --- (a) no faults ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(10))
def test_all_honest_nodes_decide_the_same_block_at_each_height(seed: int) -> None:
    sim = Sim(seed, heights=5).run(until_ms=60_000)
    assert sim.done(), "every node decides every height"
    assert_agreement(sim)
    for h in range(1, 6):
        d = sim.honest[0].decisions[h]
        # with delays well under the timeouts, round 0's proposer makes each block
        assert d.certificate.round == 0
        assert d.block.header.proposer == DELEGATES[h % 4]
        assert d.block.header.prev_hash == (sim.honest[0].decisions[h - 1].block.hash if h > 1 else GENESIS_HASH)
    assert all(not n.evidence for n in sim.honest)


@pytest.mark.parametrize("seed", range(10))
def test_agreement_and_progress_despite_lost_and_reordered_messages(seed: int) -> None:
    sim = Sim(seed, heights=4, drop=0.2, max_delay_ms=800).run(until_ms=300_000)
    assert sim.done()
    assert_agreement(sim)
    assert all(not n.evidence for n in sim.honest)


def test_decide_certificate_passes_verify_certificate_and_fails_when_altered() -> None:
    sim = Sim(1, heights=1).run(until_ms=30_000)
    d = sim.honest[0].decisions[1]
    verify_certificate(CHAIN_ID, d.block.header, d.certificate, list(DELEGATES))
    assert len({v for v, _ in d.certificate.signatures}) >= 3
    sigs = d.certificate.signatures
    with pytest.raises(InvalidBlock, match="endorsements needed"):
        verify_certificate(CHAIN_ID, d.block.header, Certificate(d.certificate.round, sigs[:2]), list(DELEGATES))
    with pytest.raises(InvalidBlock, match="endorsements needed"):
        verify_certificate(CHAIN_ID, d.block.header, Certificate(d.certificate.round, (sigs[0],) * 3), list(DELEGATES))
    with pytest.raises(InvalidBlock, match="bad signature"):
        verify_certificate(CHAIN_ID, d.block.header, Certificate(d.certificate.round + 1, sigs), list(DELEGATES))
    with pytest.raises(InvalidBlock, match="bad signature"):
        verify_certificate(CHAIN_ID + 1, d.block.header, d.certificate, list(DELEGATES))
    other = make_block(1, 0, DELEGATES[1], GENESIS_HASH, b"other")
    with pytest.raises(InvalidBlock, match="bad signature"):
        verify_certificate(CHAIN_ID, other.header, d.certificate, list(DELEGATES))
    with pytest.raises(InvalidBlock, match="not an active delegate"):
        verify_certificate(CHAIN_ID, d.block.header, d.certificate, list(DELEGATES[:2]) + [PrivateKey().address] * 2)
    with pytest.raises(InvalidBlock, match="no commit certificate"):
        verify_certificate(CHAIN_ID, d.block.header, None, list(DELEGATES))


# --- (b) one silent delegate -----------------------------------------------------------------------


@pytest.mark.parametrize("silent", range(4))
def test_one_silent_delegate_costs_a_round_at_its_own_slot_only(silent: int) -> None:
    sim = Sim(silent, heights=8, silent=frozenset({silent})).run(until_ms=120_000)
    assert sim.done()
    assert_agreement(sim)
    rounds = decided_rounds(sim)
    for h in range(1, 9):
        if DELEGATES[h % 4] == DELEGATES[silent]:
            assert rounds[h] == 1, f"height {h}: the silent proposer's slot costs one round"
            assert sim.honest[0].decisions[h].block.header.proposer == DELEGATES[(h + 1) % 4]
        else:
            assert rounds[h] == 0
        assert all(DELEGATES[silent] not in {v for v, _ in n.decisions[h].certificate.signatures} for n in sim.honest)


@pytest.mark.parametrize("seed", range(5))
def test_one_silent_delegate_with_lossy_network_still_decides(seed: int) -> None:
    sim = Sim(seed, heights=4, silent=frozenset({seed % 4}), drop=0.15, max_delay_ms=600).run(until_ms=300_000)
    assert sim.done()
    assert_agreement(sim)


# --- (c) two silent delegates ----------------------------------------------------------------------


@pytest.mark.parametrize("silent", [frozenset({0, 1}), frozenset({1, 3}), frozenset({2, 3})])
def test_two_of_four_silent_means_nobody_decides(silent: frozenset[int]) -> None:
    sim = Sim(3, heights=1, silent=silent).run(until_ms=60_000)
    assert sim.now > 30_000, "the network kept running for a while"
    assert all(not n.decisions for n in sim.honest)
    # they kept voting (nil after timeouts) but never reached a quorum of precommits for a block
    assert all(n.signed for n in sim.honest)


# --- (d) safety under equivocation -----------------------------------------------------------------

SAFETY_SEEDS = 200
FAST_SEEDS = 20  # make test-fast runs seeds 0-19 (seed 3 reaches split locks); make test runs all 200


@pytest.mark.parametrize(
    ("seeds", "min_split_locks"),
    [
        pytest.param(range(FAST_SEEDS), 1, id="first-20-seeds"),
        pytest.param(range(FAST_SEEDS, SAFETY_SEEDS), 5, id="other-180-seeds", marks=pytest.mark.slow),
    ],
)
def test_safety_under_equivocation_over_many_seeds(seeds: range, min_split_locks: int) -> None:
    """One byzantine delegate (f = 1 of n = 4) signs conflicting proposals and votes, each honest node
    getting its own version; over many seeds no two honest nodes decide different blocks at a height.
    Half the runs start with a stretch of slow delivery (before GST) in which rounds fail and the
    adversary gets honest nodes locked on different blocks. (~0.1 s of CPU a seed: the fast tier runs
    the first 20 seeds, the slow tier the other 180.)"""
    decided_heights = evidence = double_sent = split_locks = 0
    for seed in seeds:
        byz = seed % 4
        gst = 10_000 if seed % 2 else 0
        sim = Sim(10_000 + seed, heights=2, byzantine=byz, drop=0.05, max_delay_ms=600, gst_ms=gst, pre_gst_delay_ms=3000)
        sim.run(until_ms=200_000)
        assert_agreement(sim)
        split_locks += sim.split_locks
        decided_heights += sum(len(n.decisions) for n in sim.honest)
        for n in sim.honest:
            assert all(e.voter == DELEGATES[byz] for e in n.evidence), "only the byzantine delegate is ever accused"
            evidence += len(n.evidence)
        double_sent += sim.byzantine[0].double_sent
        assert sim.done(), f"seed {seed}: with one equivocator of four, the honest three still decide"
    assert double_sent > len(seeds)  # the adversary really did equivocate
    assert evidence > len(seeds)  # and honest nodes reported it
    assert split_locks >= min_split_locks  # the dangerous case was reached: honest nodes locked on different blocks
    assert decided_heights >= len(seeds) * 3 * 2


class SplitProposer(ByzantineNode):
    """Proposes block A to honest node 0 and block B to nodes 2 and 3, and votes for each node's block
    to that node only."""

    def propose(self, height: int, round_: int) -> None:
        self.proposed.add((height, round_))
        a = make_block(height, round_, self.address, GENESIS_HASH, b"A")
        b = make_block(height, round_, self.address, GENESIS_HASH, b"B")
        self.blocks.setdefault(height, {}).update({a.hash: a, b.hash: b})
        for t in self.targets():
            block = a if t == 0 else b
            self.sim.send(self.idx, t, ProposalMsg(sign_proposal(self.key, height, round_, -1, block)))
            for vtype in (PREVOTE, PRECOMMIT):
                self._send_vote(t, vtype, height, round_, block.hash)

    def vote(self, height: int, round_: int, proposed: bytes | None = None) -> None:
        pass  # silent apart from its own slot


@pytest.mark.parametrize("seed", range(5))
def test_byzantine_proposer_split_is_reported_and_does_not_split_decisions(seed: int) -> None:
    sim = Sim(seed, heights=1, byzantine=1, byzantine_cls=SplitProposer)  # delegate 1 proposes at (1, 0)
    sim.run(until_ms=60_000)
    assert sim.done()
    assert_agreement(sim)
    # one of the two blocks wins in round 0 (which one depends on whether a relayed proposal overtook
    # the equivocator's own message), and every honest node decides that same one
    decided = sim.honest[0].decisions[1]
    assert decided.certificate.round == 0
    assert decided.block.hash in {make_block(1, 0, DELEGATES[1], GENESIS_HASH, tag).hash for tag in (b"A", b"B")}
    evidence = [e for n in sim.honest for e in n.evidence]
    assert evidence, "relayed messages expose the equivocation"
    assert {e.voter for e in evidence} == {DELEGATES[1]}


# --- the state machine alone -----------------------------------------------------------------------


def _votes(vtype: str, height: int, round_: int, block_hash: bytes | None, keys: tuple[PrivateKey, ...]) -> list[Vote]:
    return [sign_vote(k, CHAIN_ID, vtype, height, round_, block_hash) for k in keys]


def _sent(effects: list[cs.Effect]) -> list[cs.Effect]:
    """The votes among effects (each also comes with its step's backstop timeout)."""
    return [e for e in effects if isinstance(e, cs.SendVote)]


def _feed(hc: cs.HeightConsensus, votes: list[Vote]) -> list[cs.Effect]:
    out: list[cs.Effect] = []
    for v in votes:
        out += hc.on_vote(v)
    return out


H = 1  # proposer of round r at height 1 is DELEGATES[(1 + r) % 4]


def _proposal(round_: int, tag: bytes = b"", pol_round: int = -1, block: Block | None = None) -> cs.Proposal:
    proposer = KEYS[(H + round_) % 4]
    block = block or make_block(H, round_, proposer.address, GENESIS_HASH, tag)
    return sign_proposal(proposer, H, round_, pol_round, block)


def test_start_schedules_the_propose_timeout_and_proposes_only_in_ones_own_slot() -> None:
    mine = cs.HeightConsensus(H, DELEGATES, DELEGATES[1])
    assert mine.start() == [cs.Propose(H, 0, None, -1), cs.ScheduleTimeout("propose", H, 0)]
    other = cs.HeightConsensus(H, DELEGATES, DELEGATES[2])
    assert other.start() == [cs.ScheduleTimeout("propose", H, 0)]


def test_a_valid_proposal_gets_a_prevote_and_an_invalid_one_a_nil_prevote() -> None:
    hc = cs.HeightConsensus(H, DELEGATES, DELEGATES[2])
    hc.start()
    p = _proposal(0)
    assert _sent(hc.on_proposal(p, True)) == [cs.SendVote(PREVOTE, H, 0, p.block.hash)]
    hc2 = cs.HeightConsensus(H, DELEGATES, DELEGATES[2])
    hc2.start()
    assert _sent(hc2.on_proposal(p, False)) == [cs.SendVote(PREVOTE, H, 0, None)]


def test_proposal_from_the_wrong_proposer_or_height_is_ignored() -> None:
    hc = cs.HeightConsensus(H, DELEGATES, DELEGATES[2])
    hc.start()
    block = make_block(H, 0, DELEGATES[3], GENESIS_HASH)
    assert hc.on_proposal(sign_proposal(KEYS[3], H, 0, -1, block), True) == []
    assert hc.on_proposal(sign_proposal(KEYS[2], H + 1, 0, -1, block), True) == []
    assert hc.proposals == {}


def test_two_proposals_for_one_round_are_an_equivocation_and_the_first_stands() -> None:
    hc = cs.HeightConsensus(H, DELEGATES, DELEGATES[2])
    hc.start()
    first, second = _proposal(0, b"A"), _proposal(0, b"B")
    hc.on_proposal(first, True)
    effects = hc.on_proposal(second, True)
    assert effects == [cs.Equivocation(DELEGATES[1], H, 0, "proposal", first.block.hash, second.block.hash)]
    assert hc.evidence == effects
    assert hc.proposals[0] is first
    assert hc.on_proposal(first, True) == []  # the same one again is no news


def test_two_votes_from_one_voter_are_an_equivocation_reported_once() -> None:
    hc = cs.HeightConsensus(H, DELEGATES, DELEGATES[2])
    hc.start()
    a, b = b"\x0a" * 32, b"\x0b" * 32
    hc.on_vote(sign_vote(KEYS[3], CHAIN_ID, PREVOTE, H, 0, a))
    effects = hc.on_vote(sign_vote(KEYS[3], CHAIN_ID, PREVOTE, H, 0, b))
    assert effects == [cs.Equivocation(DELEGATES[3], H, 0, PREVOTE, a, b)]
    assert hc.on_vote(sign_vote(KEYS[3], CHAIN_ID, PREVOTE, H, 0, b)) == []  # relayed again: no new report
    assert hc.evidence == effects
    # the voter counts once for each value it signed, never twice for one
    assert hc._count(PREVOTE, 0, a) == 1 and hc._count(PREVOTE, 0, b) == 1
    assert hc._count_any(PREVOTE, 0) == 1
    # a nil vote and a block vote by the same voter also conflict
    hc.on_vote(sign_vote(KEYS[0], CHAIN_ID, PRECOMMIT, H, 0, None))
    assert hc.on_vote(sign_vote(KEYS[0], CHAIN_ID, PRECOMMIT, H, 0, a)) == [
        cs.Equivocation(DELEGATES[0], H, 0, PRECOMMIT, None, a)
    ]


def test_a_polka_completed_by_an_equivocators_other_vote_is_honoured() -> None:
    """Delegate 3 equivocates in round 0: it prevoted nil to us first, and A to those who locked on A.
    When its vote for A is relayed to us, A's polka counts, so we accept A re-proposed with pol_round 0
    (we were locked on nothing) and the honest delegates can converge instead of staying split."""
    hc = cs.HeightConsensus(H, DELEGATES, DELEGATES[0])
    hc.start()
    hc.on_timeout("propose", H, 0)  # we never got round 0's proposal A
    a = make_block(H, 0, DELEGATES[1], GENESIS_HASH, b"A")
    hc.on_vote(sign_vote(KEYS[3], CHAIN_ID, PREVOTE, H, 0, None))  # the equivocator's vote for us
    _feed(hc, _votes(PREVOTE, H, 0, a.hash, (KEYS[1], KEYS[2])))  # the honest ones who saw A
    _feed(hc, _votes(PRECOMMIT, H, 0, None, (KEYS[0], KEYS[1], KEYS[3])))
    hc.on_timeout("precommit", H, 0)
    assert hc.round == 1
    relayed = hc.on_vote(sign_vote(KEYS[3], CHAIN_ID, PREVOTE, H, 0, a.hash))  # its vote for A, relayed
    assert relayed[0] == cs.Equivocation(DELEGATES[3], H, 0, PREVOTE, None, a.hash)
    assert _sent(hc.on_proposal(_proposal(1, pol_round=0, block=a), True)) == [cs.SendVote(PREVOTE, H, 1, a.hash)]


def test_a_commit_completed_by_an_equivocators_other_precommit_decides() -> None:
    hc = cs.HeightConsensus(H, DELEGATES, DELEGATES[0])
    hc.start()
    p = _proposal(0)
    hc.on_proposal(p, True)
    hc.on_vote(sign_vote(KEYS[3], CHAIN_ID, PRECOMMIT, H, 0, None))
    _feed(hc, _votes(PRECOMMIT, H, 0, p.block.hash, (KEYS[1], KEYS[2])))
    assert hc.decided is None
    effects = hc.on_vote(sign_vote(KEYS[3], CHAIN_ID, PRECOMMIT, H, 0, p.block.hash))
    decide = next(e for e in effects if isinstance(e, cs.Decide))
    assert hc.decided == p.block
    verify_certificate(CHAIN_ID, p.block.header, decide.certificate, list(DELEGATES))
    assert {v for v, _ in decide.certificate.signatures} == {DELEGATES[1], DELEGATES[2], DELEGATES[3]}


def test_an_equivocators_flood_of_votes_is_bounded() -> None:
    hc = cs.HeightConsensus(H, DELEGATES, DELEGATES[0])
    hc.start()
    reports = []
    for i in range(50):
        reports += hc.on_vote(sign_vote(KEYS[3], CHAIN_ID, PREVOTE, H, 0, bytes([i]) * 32))
    assert len(reports) == cs.MAX_CONFLICTING_VOTES
    assert sum(len(x) for x in hc.conflicting[(PREVOTE, 0)].values()) == cs.MAX_CONFLICTING_VOTES


def test_votes_from_outside_the_delegates_are_ignored() -> None:
    hc = cs.HeightConsensus(H, DELEGATES, DELEGATES[2])
    hc.start()
    p = _proposal(0)
    hc.on_proposal(p, True)
    outsiders = tuple(PrivateKey(hashlib.sha256(f"outsider{i}".encode()).digest()) for i in range(3))
    assert _feed(hc, _votes(PRECOMMIT, H, 0, p.block.hash, outsiders)) == []
    assert hc.decided is None


def test_quorum_of_precommits_decides_with_a_certificate() -> None:
    hc = cs.HeightConsensus(H, DELEGATES, DELEGATES[2])
    hc.start()
    p = _proposal(0)
    hc.on_proposal(p, True)
    effects = _feed(hc, _votes(PRECOMMIT, H, 0, p.block.hash, KEYS[:3]))
    decides = [e for e in effects if isinstance(e, cs.Decide)]
    assert len(decides) == 1 and hc.decided == p.block
    verify_certificate(CHAIN_ID, p.block.header, decides[0].certificate, list(DELEGATES))
    assert hc.on_vote(sign_vote(KEYS[3], CHAIN_ID, PRECOMMIT, H, 0, p.block.hash)) == []  # decided: nothing more


def test_two_precommits_of_four_do_not_decide() -> None:
    hc = cs.HeightConsensus(H, DELEGATES, DELEGATES[2])
    hc.start()
    p = _proposal(0)
    hc.on_proposal(p, True)
    _feed(hc, _votes(PRECOMMIT, H, 0, p.block.hash, KEYS[:2]))
    assert hc.decided is None


def test_a_full_node_never_votes_but_follows_the_decision() -> None:
    hc = cs.HeightConsensus(H, DELEGATES, None)
    hc.start()
    p = _proposal(0)
    effects = hc.on_proposal(p, True)
    effects += _feed(hc, _votes(PREVOTE, H, 0, p.block.hash, KEYS[:3]))
    effects += _feed(hc, _votes(PRECOMMIT, H, 0, p.block.hash, KEYS[:3]))
    assert not any(isinstance(e, (cs.SendVote, cs.Propose)) for e in effects)
    assert hc.decided == p.block


def test_precommits_for_an_unknown_block_fetch_it_then_decide() -> None:
    hc = cs.HeightConsensus(H, DELEGATES, DELEGATES[2])
    hc.start()
    block = make_block(H, 0, DELEGATES[1], GENESIS_HASH, b"unseen")
    effects = _feed(hc, _votes(PRECOMMIT, H, 0, block.hash, KEYS[:3]))
    assert effects.count(cs.FetchBlock(H, block.hash)) == 1
    assert hc.decided is None
    effects = hc.on_block(block, True)
    assert hc.decided == block
    assert any(isinstance(e, cs.Decide) for e in effects)


def test_a_fetched_block_that_does_not_execute_is_never_decided() -> None:
    hc = cs.HeightConsensus(H, DELEGATES, DELEGATES[2])
    hc.start()
    block = make_block(H, 0, DELEGATES[1], GENESIS_HASH, b"bad")
    _feed(hc, _votes(PRECOMMIT, H, 0, block.hash, KEYS[:3]))
    hc.on_block(block, False)
    assert hc.decided is None


def test_polka_locks_and_precommits_then_the_lock_refuses_another_block() -> None:
    me = DELEGATES[2]
    hc = cs.HeightConsensus(H, DELEGATES, me)
    hc.start()
    p0 = _proposal(0, b"A")
    hc.on_proposal(p0, True)
    effects = _feed(hc, _votes(PREVOTE, H, 0, p0.block.hash, KEYS[:3]))
    assert cs.SendVote(PRECOMMIT, H, 0, p0.block.hash) in effects
    assert (hc.locked_round, hc.locked_block) == (0, p0.block)
    # round 0 fails to commit: everyone precommits nil
    _feed(hc, _votes(PRECOMMIT, H, 0, None, (KEYS[0], KEYS[1], KEYS[3])))
    hc.on_timeout("precommit", H, 0)
    assert hc.round == 1
    p1 = _proposal(1, b"B")
    assert _sent(hc.on_proposal(p1, True)) == [cs.SendVote(PREVOTE, H, 1, None)]  # locked on A: no prevote for B


def test_the_locked_block_re_proposed_gets_a_prevote() -> None:
    hc = cs.HeightConsensus(H, DELEGATES, DELEGATES[2])
    hc.start()
    p0 = _proposal(0, b"A")
    hc.on_proposal(p0, True)
    _feed(hc, _votes(PREVOTE, H, 0, p0.block.hash, KEYS[:3]))
    _feed(hc, _votes(PRECOMMIT, H, 0, None, (KEYS[0], KEYS[1], KEYS[3])))
    hc.on_timeout("precommit", H, 0)
    p1 = _proposal(1, pol_round=0, block=p0.block)
    assert _sent(hc.on_proposal(p1, True)) == [cs.SendVote(PREVOTE, H, 1, p0.block.hash)]


def test_a_later_polka_unlocks_for_its_block() -> None:
    hc = cs.HeightConsensus(H, DELEGATES, DELEGATES[0])
    hc.start()
    p0 = _proposal(0, b"A")
    hc.on_proposal(p0, True)
    _feed(hc, _votes(PREVOTE, H, 0, p0.block.hash, (KEYS[0], KEYS[1], KEYS[2])))
    assert hc.locked_block == p0.block
    _feed(hc, _votes(PRECOMMIT, H, 0, None, KEYS[1:]))
    hc.on_timeout("precommit", H, 0)
    # round 1: others saw 2/3+ prevotes for B (which we missed being in prevote)
    b = make_block(H, 1, DELEGATES[2], GENESIS_HASH, b"B")
    _feed(hc, _votes(PREVOTE, H, 1, b.hash, KEYS[1:]))
    _feed(hc, _votes(PRECOMMIT, H, 1, None, KEYS[1:]))
    hc.on_timeout("precommit", H, 1)
    assert hc.round == 2
    # round 2: B re-proposed with pol_round 1: the newer polka beats our lock from round 0
    p2 = _proposal(2, pol_round=1, block=b)
    assert _sent(hc.on_proposal(p2, True)) == [cs.SendVote(PREVOTE, H, 2, b.hash)]


def test_a_re_proposal_without_its_polka_is_not_prevoted() -> None:
    hc = cs.HeightConsensus(H, DELEGATES, DELEGATES[0])
    hc.start()
    hc.on_timeout("propose", H, 0)
    _feed(hc, _votes(PREVOTE, H, 0, None, KEYS[1:]))
    _feed(hc, _votes(PRECOMMIT, H, 0, None, KEYS[1:]))
    hc.on_timeout("precommit", H, 0)
    b = make_block(H, 0, DELEGATES[1], GENESIS_HASH, b"no-polka")
    assert hc.on_proposal(_proposal(1, pol_round=0, block=b), True) == []  # waits; the timeout prevotes nil
    assert hc.on_timeout("propose", H, 1)[0] == cs.SendVote(PREVOTE, H, 1, None)


def test_propose_timeout_prevotes_nil_and_nil_polka_precommits_nil() -> None:
    hc = cs.HeightConsensus(H, DELEGATES, DELEGATES[2])
    hc.start()
    assert hc.on_timeout("propose", H, 0)[0] == cs.SendVote(PREVOTE, H, 0, None)
    effects = _feed(hc, _votes(PREVOTE, H, 0, None, (KEYS[0], KEYS[1], KEYS[2])))
    assert cs.SendVote(PRECOMMIT, H, 0, None) in effects
    effects = _feed(hc, _votes(PRECOMMIT, H, 0, None, (KEYS[0], KEYS[1], KEYS[2])))
    assert cs.ScheduleTimeout("precommit", H, 0) in effects
    effects = hc.on_timeout("precommit", H, 0)
    assert hc.round == 1 and cs.ScheduleTimeout("propose", H, 1) in effects


def test_stale_timeouts_are_ignored() -> None:
    hc = cs.HeightConsensus(H, DELEGATES, DELEGATES[2])
    hc.start()
    hc.on_timeout("propose", H, 0)
    _feed(hc, _votes(PRECOMMIT, H, 0, None, KEYS[:3]))
    hc.on_timeout("precommit", H, 0)
    assert hc.round == 1
    assert hc.on_timeout("propose", H, 0) == []
    assert hc.on_timeout("precommit", H, 0) == []
    assert hc.on_timeout("precommit", H + 1, 1) == []
    assert hc.round == 1


def test_more_than_a_third_in_a_later_round_pulls_a_node_forward() -> None:
    hc = cs.HeightConsensus(H, DELEGATES, DELEGATES[2])
    hc.start()
    hc.on_vote(sign_vote(KEYS[0], CHAIN_ID, PREVOTE, H, 5, None))
    assert hc.round == 0  # one voter may be byzantine
    effects = hc.on_vote(sign_vote(KEYS[1], CHAIN_ID, PRECOMMIT, H, 5, None))
    assert hc.round == 5
    assert cs.ScheduleTimeout("propose", H, 5) in effects


def test_restored_lock_survives_a_restart() -> None:
    hc = cs.HeightConsensus(H, DELEGATES, DELEGATES[2])
    hc.start()
    p0 = _proposal(0, b"A")
    hc.on_proposal(p0, True)
    _feed(hc, _votes(PREVOTE, H, 0, p0.block.hash, KEYS[:3]))
    saved = hc.lock_state()
    assert (saved.locked_round, saved.locked_block) == (0, p0.block)
    restarted = cs.HeightConsensus(H, DELEGATES, DELEGATES[2])
    restarted.restore(saved)
    restarted.round = 1
    restarted.start()
    assert _sent(restarted.on_proposal(_proposal(1, b"B"), True)) == [cs.SendVote(PREVOTE, H, 1, None)]
    ignored = cs.HeightConsensus(H + 1, DELEGATES, DELEGATES[2])
    ignored.restore(saved)
    assert ignored.locked_block is None


def test_quorum_and_skip_thresholds() -> None:
    for n, q, skip in [(1, 1, 1), (3, 3, 1), (4, 3, 2), (5, 4, 2), (7, 5, 3), (10, 7, 4), (21, 15, 7)]:
        hc = cs.HeightConsensus(1, tuple(f"d{i}" for i in range(n)), None)
        assert (hc.quorum, hc.skip_threshold) == (q, skip)
        assert 3 * q > 2 * n and 3 * (q - 1) <= 2 * n


# --- votes and certificates on the wire ------------------------------------------------------------


def _signed_vote_wire(key: PrivateKey, vtype: str, height: Any, round_: Any, block_hash: bytes | None) -> dict[str, Any]:
    """A vote wire signed over exactly these values (a byzantine delegate can sign anything)."""
    signature = key.sign(vote_digest(CHAIN_ID, vtype, height, round_, block_hash))
    return {
        "type": vtype,
        "height": height,
        "round": round_,
        "block": block_hash.hex() if block_hash else "",
        "voter": key.address,
        "signature": signature.hex(),
    }


def test_vote_wire_round_trips_and_is_checked() -> None:
    for bh in (b"\x01" * 32, None):
        v = sign_vote(KEYS[0], CHAIN_ID, PREVOTE, 3, 2, bh)
        assert Vote.from_wire(v.to_wire(), CHAIN_ID) == v
    v = sign_vote(KEYS[0], CHAIN_ID, PRECOMMIT, 3, 2, b"\x01" * 32)
    with pytest.raises(InvalidBlock, match="does not match"):
        Vote.from_wire(v.to_wire(), CHAIN_ID + 1)
    with pytest.raises(InvalidBlock, match="does not match"):
        Vote.from_wire({**v.to_wire(), "voter": DELEGATES[1]}, CHAIN_ID)
    with pytest.raises(InvalidBlock, match="does not match"):
        Vote.from_wire({**v.to_wire(), "round": 3}, CHAIN_ID)
    for bad in ({"type": "vote"}, {"height": 0}, {"round": -1}, {"block": "abcd"}, {"signature": "zz"}, {"height": "3"}):
        with pytest.raises(InvalidBlock, match="malformed"):
            Vote.from_wire({**v.to_wire(), **bad}, CHAIN_ID)
    with pytest.raises(InvalidBlock, match="malformed"):
        Vote.from_wire({k: x for k, x in v.to_wire().items() if k != "signature"}, CHAIN_ID)


@pytest.mark.parametrize(("height", "round_"), [(True, 0), (1, True), (2, False)])
def test_a_vote_signed_over_a_json_boolean_is_refused(height: Any, round_: Any) -> None:
    """true == 1 in Python, so such a vote would count as a round-1 (or height-1) vote, while its
    signature covers `true`: a certificate carrying it would fail verify_certificate everywhere."""
    wire = _signed_vote_wire(KEYS[3], PRECOMMIT, height, round_, b"\x01" * 32)
    with pytest.raises(InvalidBlock, match="malformed"):
        Vote.from_wire(wire, CHAIN_ID)


def test_why_boolean_rounds_must_be_refused_a_certificate_with_one_does_not_verify() -> None:
    hc = cs.HeightConsensus(H, DELEGATES, DELEGATES[0])
    hc.start()
    p = _proposal(0)
    hc.on_proposal(p, True)
    wire = _signed_vote_wire(KEYS[3], PRECOMMIT, H, False, p.block.hash)
    sneaky = Vote(PRECOMMIT, H, False, p.block.hash, DELEGATES[3], bytes.fromhex(wire["signature"]))
    effects = hc.on_vote(sneaky) + _feed(hc, _votes(PRECOMMIT, H, 0, p.block.hash, KEYS[1:3]))
    decide = next(e for e in effects if isinstance(e, cs.Decide))
    with pytest.raises(InvalidBlock, match="bad signature"):
        verify_certificate(CHAIN_ID, p.block.header, decide.certificate, list(DELEGATES))


def test_certificate_wire_round_trips_and_refuses_a_boolean_round() -> None:
    d = Sim(2, heights=1).run(until_ms=30_000).honest[0].decisions[1]
    again = Certificate.from_wire(d.certificate.to_wire())
    assert again == d.certificate
    verify_certificate(CHAIN_ID, d.block.header, again, list(DELEGATES))
    for bad in ({"round": True}, {"round": -1}, {"signatures": [{"voter": DELEGATES[0]}]}, {"signatures": None}):
        with pytest.raises(InvalidBlock, match="malformed"):
            Certificate.from_wire({**d.certificate.to_wire(), **bad})
