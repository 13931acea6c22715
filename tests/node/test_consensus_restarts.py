"""Every delegate crashes and restarts, at every step of a height: the chain always finalizes again, and
no delegate ever signs two different messages for one height, round and step.

The simulation is test_consensus's (real `HeightConsensus` machines, real keys and signatures, a seeded
message bus), with delegates that keep what the node keeps on disk: the sign log (`privval.SignLog`, the
node's own class), the lock saved before a non-nil precommit, and the decided blocks. A crash loses
everything else: the consensus machine, votes heard, relays, timers and messages in flight to it. The
restart does what node.py `_start_height` does: restore the lock, resume at the round and step of the
last signature, feed its own signed messages back to the machine and re-send them.

"With transactions" means a proposer that builds its block again after a restart gets a different block
(a new timestamp, another mempool), which is what made a restarted proposer unable to re-propose.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from iotex_node import consensus as cs
from iotex_node.block import PRECOMMIT, Block, Vote, sign_vote
from iotex_node.privval import SignLog, Verdict
from tests.node.test_consensus import (
    CHAIN_ID,
    DELEGATES,
    KEYS,
    HonestNode,
    Msg,
    ProposalMsg,
    Sim,
    VoteMsg,
    assert_agreement,
    make_block,
    sign_proposal,
    timeout_ms,
)

POINTS = ("propose", "prevote", "precommit", "commit")
CRASH_HEIGHT = 2
HEIGHTS = CRASH_HEIGHT + 2


class Crashed(Exception):
    """Raised inside a node's handling to stop it mid-step, the way kill -9 would."""


class RestartingNode(HonestNode):
    """An honest delegate that keeps the node's on-disk records and can crash and restart."""

    def __init__(self, sim: Sim, idx: int, key: Any) -> None:
        super().__init__(sim, idx, key)
        self.disk: dict[str, Any] = {}  # survives crashes: the sign log, the lock
        self.proposals: list[cs.Proposal] = []  # the sign log's proposal messages point in here (also disk)
        self.signlog = SignLog.in_memory(self.disk)
        self.alive = True
        self.incarnation = 0
        self.refusals = 0
        self.crash_plan: tuple[int, str, bool] | None = None  # (height, point, before sending)
        self.remember_messages = True  # False: keep only the last-sign record, as the node used to

    # --- what a crash loses and a restart rebuilds -------------------------------------------------

    def crash(self) -> None:
        self.alive = False
        self.incarnation += 1
        self.gossip, self.future, self.seen, self.helped = [], {}, set(), {}
        self.sim.crashes += 1

    def restart(self) -> None:
        self.alive = True
        self.guard(lambda: self.start_height(len(self.decisions) + 1))

    def guard(self, fn: Any) -> None:
        if not self.alive:
            return
        try:
            fn()
        except Crashed:
            self.crash()
            self.sim.at(self.sim.rng.randint(0, 3000), self.restart)

    def start_height(self, h: int) -> None:
        self.hc = hc = cs.HeightConsensus(h, DELEGATES, self.address)
        self.gossip = []
        lock = self.disk.get("lock")
        if lock is not None and lock.height == h:
            hc.restore(lock)
        own = self.signlog.at(h) if self.remember_messages else []
        point = self.signlog.resume_point(h) if self.remember_messages else None
        if point is not None:
            hc.resume(*point)
        if self.signlog.last is not None and self.signlog.last.height == h:
            hc.round = max(hc.round, self.signlog.last.round)  # what the node did before the sign log
        self.check_crash(h, "propose")
        effects = hc.start()
        for m in own:
            msg = self.to_msg(m.msg)
            self.gossip.append(msg)
            self.sim.broadcast(self.idx, msg)
            if isinstance(msg, ProposalMsg):
                effects += hc.on_proposal(msg.proposal, True)
            else:
                effects += hc.on_vote(Vote.from_wire(msg.wire, CHAIN_ID))
        self.handle(effects)
        for src, fmsg in self.future.pop(h, []):
            self.receive(src, fmsg)

    def to_msg(self, stored: Any) -> Msg:
        if stored["t"] == "proposal":
            return ProposalMsg(self.proposals[stored["i"]])
        return VoteMsg({k: v for k, v in stored.items() if k != "t"})

    # --- signing through the sign log, as node.py does ---------------------------------------------

    def check_crash(self, height: int, point: str) -> None:
        plan = self.crash_plan
        if plan is not None and height >= plan[0] and point == plan[1]:
            self.crash_plan = None
            raise Crashed

    def sign_checked(self, kind: str, h: int, r: int, value: bytes | None, msg: dict[str, Any], wire: Msg) -> None:
        """Record, then send: a crash may come between the two (the message is recorded but never left)."""
        self.sim.note_signature(self.address, kind, h, r, value)
        self.signlog.record(kind, h, r, value, msg)
        plan = self.crash_plan
        point = "propose" if kind == "proposal" else kind
        if plan is not None and plan[2]:
            self.check_crash(h, point)
        self.gossip.append(wire)
        self.sim.broadcast(self.idx, wire)
        self.check_crash(h, point)

    def send_vote(self, e: cs.SendVote) -> Vote | None:
        verdict, found = self.signlog.check(e.type, e.height, e.round, e.block_hash)
        if verdict is Verdict.CONFLICT:
            self.refusals += 1
            return None
        if verdict is Verdict.SIGNED:
            assert found is not None and found.msg is not None
            msg = self.to_msg(found.msg)
            self.sim.broadcast(self.idx, msg)
            assert isinstance(msg, VoteMsg)
            return Vote.from_wire(msg.wire, CHAIN_ID)
        if e.type == PRECOMMIT and e.block_hash is not None:
            self.disk["lock"] = self.hc.lock_state()
        vote = sign_vote(self.key, CHAIN_ID, e.type, e.height, e.round, e.block_hash)
        self.sign_checked(e.type, e.height, e.round, e.block_hash, {"t": "vote", **vote.to_wire()}, VoteMsg(vote.to_wire()))
        return vote

    def new_block(self, e: cs.Propose) -> Block:
        if e.block is not None:
            return e.block
        tag = f"t{self.sim.now}".encode() if self.sim.with_txs else b""
        return make_block(e.height, e.round, self.address, self.prev_hash(e.height), tag)

    def send_proposal(self, e: cs.Propose) -> cs.Proposal | None:
        stored = self.signlog.find("proposal", e.height, e.round)
        if stored is not None and stored.msg is not None and self.remember_messages:
            p = self.proposals[stored.msg["i"]]
            self.sim.broadcast(self.idx, ProposalMsg(p))
            return p
        block = self.new_block(e)
        if self.signlog.check("proposal", e.height, e.round, block.hash)[0] is not Verdict.NEW:
            self.refusals += 1
            return None
        p = sign_proposal(self.key, e.height, e.round, e.pol_round, block)
        self.proposals.append(p)
        self.sign_checked(
            "proposal", e.height, e.round, block.hash, {"t": "proposal", "i": len(self.proposals) - 1}, ProposalMsg(p)
        )
        return p

    def on_decided(self, height: int) -> None:
        self.check_crash(height, "commit")

    # --- what reaches a dead node is lost ----------------------------------------------------------

    def schedule_timeout(self, e: cs.ScheduleTimeout) -> None:
        inc = self.incarnation

        def fire() -> None:
            if inc == self.incarnation:  # a timer set before a crash died with the process
                self.guard(lambda: self.on_timeout(e))

        self.sim.at(timeout_ms(e.kind, e.round, e.backstop), fire)

    def receive(self, src: int, msg: Msg) -> None:
        if self.alive:
            self.guard(lambda: HonestNode.receive(self, src, msg))

    def resend(self, last_height: int = 0) -> None:
        if self.alive:
            super().resend(last_height)
        else:
            self.sim.at(1500, self.resend, self.hc.height)

    def boot(self) -> None:
        self.guard(lambda: self.start_height(1))
        self.sim.at(1500, self.resend)


class RestartSim(Sim):
    def __init__(self, seed: int, point: str, with_txs: bool, *, remember_messages: bool = True) -> None:
        self.with_txs = with_txs
        self.crashes = 0
        self.signatures: dict[tuple[str, str, int, int], bytes | None] = {}
        super().__init__(seed, heights=HEIGHTS, max_delay_ms=150)
        self.nodes = {i: RestartingNode(self, i, key) for i, key in enumerate(KEYS)}
        self.honest = list(self.nodes.values())  # type: ignore[arg-type]
        for n in self.honest:
            assert isinstance(n, RestartingNode)
            n.crash_plan = (CRASH_HEIGHT, point, self.rng.random() < 0.3)
            n.remember_messages = remember_messages

    def note_signature(self, signer: str, kind: str, h: int, r: int, value: bytes | None) -> None:
        first = self.signatures.setdefault((signer, kind, h, r), value)
        assert first == value, f"{signer[:12]} signed two different {kind}s at {h}/{r}"

    def rounds_at(self, height: int) -> int:
        return max(n.decisions[height].certificate.round for n in self.honest if height in n.decisions)


CASES = [(point, txs, seed) for point, txs in itertools.product(POINTS, (False, True)) for seed in range(10)]


@pytest.mark.parametrize(("point", "with_txs", "seed"), CASES)
def test_every_delegate_restarting_at_any_step_never_stalls_nor_equivocates(point: str, with_txs: bool, seed: int) -> None:
    sim = RestartSim(seed, point, with_txs).run(until_ms=120_000)
    assert sim.crashes == len(KEYS), f"every delegate crashed once ({sim.crashes})"
    stuck = {n.idx: (n.hc.height, n.hc.round, n.hc.step) for n in sim.honest if len(n.decisions) < HEIGHTS}
    assert not stuck, f"stalled after restarts at {point}: {stuck}"
    assert_agreement(sim)
    # The machine never even asks to sign a contradiction once it resumed where it was.
    assert sum(n.refusals for n in sim.honest if isinstance(n, RestartingNode)) == 0
    assert sim.rounds_at(CRASH_HEIGHT) <= 3, "a restart costs at most a few rounds"


def test_the_old_record_without_messages_stalls_which_this_simulation_detects() -> None:
    """Keeping only *that* it signed (the node before the sign log) stalls some of the same trials: the
    simulation is sharp enough to see the bug it guards against."""
    for seed in range(2):
        sim = RestartSim(seed, "precommit", True, remember_messages=False).run(until_ms=15_000)
        assert any(len(n.decisions) < HEIGHTS for n in sim.honest), f"seed {seed}"
        # ... and the same trial with the sign log finalizes.
        sim = RestartSim(seed, "precommit", True).run(until_ms=15_000)
        assert all(len(n.decisions) == HEIGHTS for n in sim.honest), f"seed {seed}"


def test_sign_log_survives_a_restart_and_refuses_contradictions() -> None:
    disk: dict[str, Any] = {}
    log = SignLog.in_memory(disk)
    key = KEYS[0]
    a, b = b"\x01" * 32, b"\x02" * 32
    vote = sign_vote(key, CHAIN_ID, "prevote", 5, 1, a)
    assert log.check("prevote", 5, 1, a)[0] is Verdict.NEW
    log.record("prevote", 5, 1, a, {"t": "vote", **vote.to_wire()})
    again = SignLog.in_memory(disk)  # a restart reads it back
    verdict, found = again.check("prevote", 5, 1, a)
    assert verdict is Verdict.SIGNED and found is not None and found.msg == {"t": "vote", **vote.to_wire()}
    assert again.check("prevote", 5, 1, b)[0] is Verdict.CONFLICT
    assert again.check("prevote", 5, 1, None)[0] is Verdict.CONFLICT
    assert again.check("prevote", 5, 0, None)[0] is Verdict.CONFLICT, "never sign behind what was signed"
    assert again.check("precommit", 5, 1, None)[0] is Verdict.NEW
    assert again.resume_point(5) == (1, "prevote") and again.resume_point(6) is None
    again.record("proposal", 6, 0, b, {"t": "proposal"})
    assert again.at(5) == [] and [m.kind for m in again.at(6)] == ["proposal"], "only the current height is kept"


def test_sign_log_honours_an_older_nodes_record() -> None:
    disk: dict[str, Any] = {"privval": {"h": 9, "r": 2, "s": 1, "hash": "ab" * 32}}
    log = SignLog.in_memory(disk)
    assert log.check("prevote", 9, 2, bytes.fromhex("ab" * 32))[0] is Verdict.NEW  # same value: same signature
    assert log.check("prevote", 9, 2, None)[0] is Verdict.CONFLICT
    assert log.check("proposal", 9, 2, b"\x00" * 32)[0] is Verdict.CONFLICT
    assert log.resume_point(9) == (2, "prevote") and log.at(9) == []


def test_sign_log_refuses_to_guess_when_its_record_is_damaged() -> None:
    with pytest.raises(ValueError, match="unreadable"):
        SignLog.in_memory({"privval": {"h": "x"}})


def test_a_resumed_machine_continues_from_its_step_and_its_backstop_ends_the_round() -> None:
    hc = cs.HeightConsensus(3, DELEGATES, DELEGATES[1])
    hc.resume(2, "precommit")
    effects = hc.start()
    assert (hc.round, hc.step) == (2, cs.PRECOMMIT_STEP)
    assert cs.ScheduleTimeout("precommit", 3, 2, backstop=True) in effects
    assert not [e for e in effects if isinstance(e, cs.SendVote | cs.Propose)], "nothing is signed again"
    # Nobody else is heard from: the backstop still moves the round on.
    assert hc.on_timeout("precommit", 3, 2)
    assert hc.round == 3


def test_sign_log_keeps_votes_for_blocks_longer_than_nil_votes() -> None:
    log = SignLog.in_memory({}, key="privval")
    a = b"\x0a" * 32
    log.record("prevote", 4, 0, a, {"t": "vote", "n": 0})
    for r in range(1, 40):
        log.record("prevote", 4, r, None, {"t": "vote", "n": r})
    kept = log.at(4)
    assert len(kept) == 30
    assert kept[0].round == 0 and kept[0].value == a.hex(), "the round-0 prevote for a block outlives later nil votes"
    assert kept[-1].round == 39
