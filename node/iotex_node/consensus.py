"""Roll-DPoS consensus for one height: a pure state machine (Tendermint's algorithm, arXiv:1807.04938).

Each height runs rounds. In round r the proposer is `delegates[(height + r) % n]`; it proposes a block,
the active delegates endorse it twice (a `prevote`, then a `precommit`) and the block is final once more
than two-thirds of them have precommitted it in one round. A delegate that prevotes a block locks on it
once 2/3+ prevotes are seen, and will not prevote another block at this height unless a later round
shows 2/3+ prevotes for that other block. That lock is what keeps two honest nodes from finalizing
different blocks even when up to f < n/3 delegates sign conflicting messages. When a proposer is down
or late, timeouts move everyone to the next round (a round change) with the next proposer.

The machine does no I/O and keeps no clock: it consumes events (proposals, votes, timeouts) and returns
effects (sign and send a vote, propose, schedule a timeout, decide, fetch a missing block); the node
drives it. Its own votes come back to it through `on_vote`, like anyone else's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from iotex_node.block import PRECOMMIT, PREVOTE, Block, Certificate, Vote, quorum

PROPOSE, PREVOTE_STEP, PRECOMMIT_STEP = "propose", "prevote", "precommit"
# How many values besides its first one a delegate's conflicting votes may count for, per type and round.
# Counting them is what Tendermint's rules ask ("2f+1 PREVOTE for id(v)" counts every signer of such a
# message): an equivocator sends each honest node a different vote, and a polka or commit that an honest
# node formed with the equivocator's vote must be countable by the others once that vote is relayed to
# them, or the honest nodes can stay split on their locks forever. Safety does not depend on it: two
# quorums for different values still share an honest signer, and honest signers never sign twice.
# The bound keeps a flood of distinct signed votes from one delegate from growing memory without end.
MAX_CONFLICTING_VOTES = 4
_STEP_ORDER = {PROPOSE: 0, PREVOTE_STEP: 1, PRECOMMIT_STEP: 2}


@dataclass(frozen=True, slots=True)
class Proposal:
    height: int
    round: int
    pol_round: int  # -1, or the round in which the re-proposed block got 2/3+ prevotes
    block: Block
    proposer: str
    signature: bytes


# --- effects ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendVote:
    type: str
    height: int
    round: int
    block_hash: bytes | None


@dataclass(frozen=True, slots=True)
class Propose:
    height: int
    round: int
    block: Block | None  # a block to re-propose (the valid block), or None to build a new one
    pol_round: int


@dataclass(frozen=True, slots=True)
class ScheduleTimeout:
    kind: str  # "propose" | "prevote" | "precommit"
    height: int
    round: int
    # A backstop: scheduled on entering a step, it ends the step even if two-thirds of the delegates were
    # never heard from in it (the normal prevote and precommit timeouts start only once they were), so a
    # round always ends. The driver gives it a longer delay than the normal timeout of its kind.
    backstop: bool = False


@dataclass(frozen=True, slots=True)
class Decide:
    block: Block
    certificate: Certificate


@dataclass(frozen=True, slots=True)
class FetchBlock:
    height: int
    block_hash: bytes


@dataclass(frozen=True, slots=True)
class Equivocation:
    voter: str
    height: int
    round: int
    kind: str
    first: bytes | None
    second: bytes | None


Effect = SendVote | Propose | ScheduleTimeout | Decide | FetchBlock | Equivocation


@dataclass
class LockState:
    """What must survive a restart so a delegate never contradicts its earlier votes at this height."""

    height: int
    round: int = 0
    locked_round: int = -1
    locked_block: Block | None = None
    valid_round: int = -1
    valid_block: Block | None = None


@dataclass
class HeightConsensus:
    height: int
    delegates: tuple[str, ...]
    me: str | None  # our delegate address, None for a full node (observes, never votes)
    round: int = 0
    step: str = PROPOSE
    locked_round: int = -1
    locked_block: Block | None = None
    valid_round: int = -1
    valid_block: Block | None = None
    decided: Block | None = None
    proposals: dict[int, Proposal] = field(default_factory=dict)
    blocks: dict[bytes, tuple[Block, bool]] = field(default_factory=dict)  # hash -> (block, valid)
    votes: dict[tuple[str, int], dict[str, Vote]] = field(default_factory=dict)  # each voter's first vote
    # (type, round) -> voter -> value -> a later vote of that voter for another value (see MAX_CONFLICTING_VOTES)
    conflicting: dict[tuple[str, int], dict[str, dict[bytes | None, Vote]]] = field(default_factory=dict)
    _fired: set[tuple[str, int]] = field(default_factory=set)
    _fetching: set[bytes] = field(default_factory=set)
    evidence: list[Equivocation] = field(default_factory=list)

    @property
    def quorum(self) -> int:
        return quorum(len(self.delegates))

    @property
    def skip_threshold(self) -> int:
        """More than one third: at least one honest delegate is among them."""
        return len(self.delegates) - self.quorum + 1

    def proposer(self, round_: int) -> str:
        return self.delegates[(self.height + round_) % len(self.delegates)]

    def is_delegate(self) -> bool:
        return self.me is not None and self.me in self.delegates

    def lock_state(self) -> LockState:
        return LockState(self.height, self.round, self.locked_round, self.locked_block, self.valid_round, self.valid_block)

    def restore(self, saved: LockState) -> None:
        if saved.height != self.height:
            return
        self.round = saved.round
        self.locked_round, self.locked_block = saved.locked_round, saved.locked_block
        self.valid_round, self.valid_block = saved.valid_round, saved.valid_block

    # --- events ------------------------------------------------------------------------------------

    def resume(self, round_: int, kind: str) -> None:
        """Take up the round and step this delegate had reached before a restart, by the last thing it
        signed at this height (`kind` is "proposal", "prevote" or "precommit"); `start` then continues
        from there instead of opening the round again. The signed votes themselves must be fed back
        through `on_vote` (and proposals through `on_proposal`) so that they count."""
        if round_ < self.round:
            return
        self.round = round_
        self.step = {"proposal": PROPOSE, PREVOTE: PREVOTE_STEP, PRECOMMIT: PRECOMMIT_STEP}[kind]

    def start(self) -> list[Effect]:
        if self.step == PROPOSE:
            return self._start_round(self.round)
        # Resumed after this delegate voted in this round: the round's proposal step is over for it.
        kind = "prevote" if self.step == PREVOTE_STEP else "precommit"
        return [ScheduleTimeout(kind, self.height, self.round, backstop=True), *self._evaluate()]

    def on_proposal(self, p: Proposal, valid: bool) -> list[Effect]:
        """A proposal whose signature the caller checked; `valid` says whether its block executes."""
        if self.decided or p.height != self.height or p.proposer != self.proposer(p.round):
            return []
        prev = self.proposals.get(p.round)
        if prev is not None:
            if prev.block.hash != p.block.hash:
                ev = Equivocation(p.proposer, p.height, p.round, "proposal", prev.block.hash, p.block.hash)
                self.evidence.append(ev)
                return [ev]
            return []
        self.proposals[p.round] = p
        self.blocks.setdefault(p.block.hash, (p.block, valid))
        return self._evaluate()

    def on_block(self, block: Block, valid: bool) -> list[Effect]:
        """A block obtained outside a proposal (fetched because 2/3+ precommitted its hash)."""
        if block.height != self.height:
            return []
        self.blocks.setdefault(block.hash, (block, valid))
        return self._evaluate()

    def on_vote(self, v: Vote) -> list[Effect]:
        """A vote whose signature the caller checked."""
        if self.decided or v.height != self.height or v.voter not in self.delegates:
            return []
        box = self.votes.setdefault((v.type, v.round), {})
        prev = box.get(v.voter)
        if prev is None:
            box[v.voter] = v
            return self._evaluate()
        if prev.block_hash == v.block_hash:
            return []
        others = self.conflicting.setdefault((v.type, v.round), {}).setdefault(v.voter, {})
        if v.block_hash in others or len(others) >= MAX_CONFLICTING_VOTES:
            return []  # already known (relayed again), or one more of a flood: reported already
        others[v.block_hash] = v
        ev = Equivocation(v.voter, v.height, v.round, v.type, prev.block_hash, v.block_hash)
        self.evidence.append(ev)
        return [ev, *self._evaluate()]

    def advance_round(self) -> list[Effect]:
        """Move to the next round keeping every vote, proposal and lock: how a delegate that stopped
        signing (paused, standby, halted) takes part again without waiting for a timeout it skipped."""
        if self.decided:
            return []
        return self._start_round(self.round + 1)

    def on_timeout(self, kind: str, height: int, round_: int) -> list[Effect]:
        if self.decided or height != self.height or round_ != self.round:
            return []
        if kind == "propose" and self.step == PROPOSE:
            return self._vote(PREVOTE, None) + self._evaluate()
        if kind == "prevote" and self.step == PREVOTE_STEP:
            return self._vote(PRECOMMIT, None) + self._evaluate()
        if kind == "precommit":
            return self._start_round(self.round + 1)
        return []

    # --- rules -------------------------------------------------------------------------------------

    def _start_round(self, r: int) -> list[Effect]:
        self.round = r
        self.step = PROPOSE
        out: list[Effect] = []
        if self.me is not None and self.proposer(r) == self.me:
            if self.valid_block is not None:
                out.append(Propose(self.height, r, self.valid_block, self.valid_round))
            else:
                out.append(Propose(self.height, r, None, -1))
        out.append(ScheduleTimeout("propose", self.height, r))
        return out + self._evaluate()

    def _vote(self, vtype: str, block_hash: bytes | None) -> list[Effect]:
        self.step = PREVOTE_STEP if vtype == PREVOTE else PRECOMMIT_STEP
        backstop = ScheduleTimeout(vtype, self.height, self.round, backstop=True)
        if not self.is_delegate():
            return [backstop]
        return [SendVote(vtype, self.height, self.round, block_hash), backstop]

    def _votes_for(self, vtype: str, round_: int, block_hash: bytes | None) -> list[Vote]:
        """Every voter's vote for `block_hash` (a voter counts once per value, even after equivocating)."""
        out = [v for v in self.votes.get((vtype, round_), {}).values() if v.block_hash == block_hash]
        for others in self.conflicting.get((vtype, round_), {}).values():
            v = others.get(block_hash)
            if v is not None:
                out.append(v)
        return out

    def _count(self, vtype: str, round_: int, block_hash: bytes | None) -> int:
        return len(self._votes_for(vtype, round_, block_hash))

    def _count_any(self, vtype: str, round_: int) -> int:
        return len(self.votes.get((vtype, round_), {}))

    def _once(self, tag: str, round_: int) -> bool:
        key = (tag, round_)
        if key in self._fired:
            return False
        self._fired.add(key)
        return True

    def _evaluate(self) -> list[Effect]:
        out: list[Effect] = []
        progressed = True
        while progressed and not self.decided:
            progressed = False
            r = self.round
            q = self.quorum
            p = self.proposals.get(r)
            valid = p is not None and self.blocks.get(p.block.hash, (None, False))[1]
            # A decision in any round: 2/3+ precommits for a block we have.
            for (vtype, vr), box in list(self.votes.items()):
                if vtype != PRECOMMIT or len(box) < q:  # len(box) is the number of distinct voters
                    continue
                tally: dict[bytes, int] = {}
                for v in box.values():
                    if v.block_hash is not None:
                        tally[v.block_hash] = tally.get(v.block_hash, 0) + 1
                for others in self.conflicting.get((vtype, vr), {}).values():
                    for bh in others:
                        if bh is not None:
                            tally[bh] = tally.get(bh, 0) + 1
                for bh, n in tally.items():
                    if n < q:
                        continue
                    known = self.blocks.get(bh)
                    if known is None:
                        if bh not in self._fetching:
                            self._fetching.add(bh)
                            out.append(FetchBlock(self.height, bh))
                        continue
                    block, ok = known
                    if ok:
                        sigs = tuple(sorted((v.voter, v.signature) for v in self._votes_for(PRECOMMIT, vr, bh)))
                        self.decided = block
                        out.append(Decide(block.with_certificate(Certificate(vr, sigs)), Certificate(vr, sigs)))
                        return out
            # Propose step: prevote the round's proposal (or nil).
            if self.step == PROPOSE and p is not None:
                bh = p.block.hash
                if p.pol_round == -1:
                    ok = valid and (self.locked_round == -1 or (self.locked_block is not None and self.locked_block.hash == bh))
                    out += self._vote(PREVOTE, bh if ok else None)
                    progressed = True
                elif 0 <= p.pol_round < r and self._count(PREVOTE, p.pol_round, bh) >= q:
                    ok = valid and (
                        self.locked_round <= p.pol_round or (self.locked_block is not None and self.locked_block.hash == bh)
                    )
                    out += self._vote(PREVOTE, bh if ok else None)
                    progressed = True
            # 2/3+ prevotes of anything: wait a little for the rest, then precommit nil.
            if self.step == PREVOTE_STEP and self._count_any(PREVOTE, r) >= q and self._once("prevote-timeout", r):
                out.append(ScheduleTimeout("prevote", self.height, r))
            # A polka (2/3+ prevotes) for this round's valid proposal: lock and precommit it.
            if (
                p is not None
                and valid
                and _STEP_ORDER[self.step] >= 1
                and self._count(PREVOTE, r, p.block.hash) >= q
                and self._once("polka", r)
            ):
                if self.step == PREVOTE_STEP:
                    self.locked_round, self.locked_block = r, p.block
                    out += self._vote(PRECOMMIT, p.block.hash)
                self.valid_round, self.valid_block = r, p.block
                progressed = True
            # 2/3+ prevotes for nil: precommit nil.
            if self.step == PREVOTE_STEP and self._count(PREVOTE, r, None) >= q:
                out += self._vote(PRECOMMIT, None)
                progressed = True
            # 2/3+ precommits of anything in this round: wait, then move to the next round.
            if self._count_any(PRECOMMIT, r) >= q and self._once("precommit-timeout", r):
                out.append(ScheduleTimeout("precommit", self.height, r))
            # More than 1/3 of delegates are in a later round: join them.
            later: dict[int, set[str]] = {}
            for (_vtype, vr), box in self.votes.items():
                if vr > r:
                    later.setdefault(vr, set()).update(box)
            for vr in sorted(later, reverse=True):
                if len(later[vr]) >= self.skip_threshold:
                    out += self._start_round(vr)
                    return out
        return out
