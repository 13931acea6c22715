"""Chain rules: genesis state, action execution, block rewards, productivity and epoch transitions.

Pure functions over an Overlay; no I/O. Every node runs exactly this to agree on the state root.

State layout (values are JSON; amounts are decimal strings because they exceed 64 bits):
    a/<addr>            [balance, nonce]            nonce = the last nonce used (0 before any action)
    c/<owner>           candidate {name, owner, operator, votes, self_bucket}
    n/<name>            owner address of the candidate with that name
    o/<operator>        owner address of the candidate that operator signs for
    b/<id>              bucket {owner, candidate, amount, days, created_ms, unlock_ms}
    g/bucket_seq        next bucket id
    r/<addr>            unclaimed rewards
    e/<epoch>           active delegates of the epoch (operator addresses, in proposing order)
    p/<epoch>/<op>      [expected, produced, missed] slots of a delegate in an epoch
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from iotex_node.actions import Action
from iotex_node.constants import MAX_AMOUNT, SECONDS_PER_DAY
from iotex_node.errors import ExecutionError
from iotex_node.genesis import Genesis
from iotex_node.state import Overlay, State, encode

SUCCESS = "success"
FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Receipt:
    action_hash: bytes
    status: str
    error: str | None = None
    bucket: int | None = None  # id of a bucket the action created

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status}
        if self.error:
            out["error"] = self.error
        if self.bucket is not None:
            out["bucket"] = self.bucket
        return out


@dataclass(frozen=True, slots=True)
class BlockContext:
    height: int
    round: int
    timestamp_ms: int
    proposer: str
    delegates: tuple[str, ...]
    block_reward: int | None = None  # None: the genesis block reward (the protocol schedule may change it)


# --- small typed accessors -------------------------------------------------------------------------


def account(st: Overlay | State, addr: str) -> tuple[int, int]:
    v = st.get("a/" + addr)
    return (0, 0) if v is None else (int(v[0]), v[1])


def _set_account(ov: Overlay, addr: str, balance: int, nonce: int) -> None:
    ov.put("a/" + addr, [str(balance), nonce])


def credit(ov: Overlay, addr: str, amount: int) -> None:
    bal, nonce = account(ov, addr)
    if bal + amount > MAX_AMOUNT:
        raise ExecutionError(f"balance of {addr} would exceed the maximum amount")
    _set_account(ov, addr, bal + amount, nonce)


def debit(ov: Overlay, addr: str, amount: int) -> None:
    bal, nonce = account(ov, addr)
    if bal < amount:
        raise ExecutionError(f"insufficient balance: {addr} has {bal}, needs {amount}")
    _set_account(ov, addr, bal - amount, nonce)


def unclaimed(st: Overlay | State, addr: str) -> int:
    v = st.get("r/" + addr)
    return 0 if v is None else int(v)


def _add_reward(ov: Overlay, addr: str, amount: int) -> None:
    if amount:
        ov.put("r/" + addr, str(min(unclaimed(ov, addr) + amount, MAX_AMOUNT)))


def weighted_votes(genesis: Genesis, amount: int, days: int) -> int:
    return amount * genesis.weight_bps(days) // 10000


def resolve_candidate(st: Overlay | State, ref: str) -> str | None:
    """Owner address of the candidate named by name or owner address."""
    if ref.startswith("io1"):
        return ref if st.get("c/" + ref) is not None else None
    owner = st.get("n/" + ref)
    return owner if isinstance(owner, str) else None


def _adjust_votes(ov: Overlay, owner: str, delta: int) -> None:
    cand = ov.get("c/" + owner)
    if cand is None:
        return
    cand = dict(cand)
    cand["votes"] = str(max(0, int(cand["votes"]) + delta))
    ov.put("c/" + owner, cand)


def _new_bucket(ov: Overlay, genesis: Genesis, owner: str, candidate: str, amount: int, days: int, now_ms: int) -> int:
    seq = ov.get("g/bucket_seq") or 0
    ov.put("g/bucket_seq", seq + 1)
    ov.put(
        f"b/{seq}",
        {
            "owner": owner,
            "candidate": candidate,
            "amount": str(amount),
            "days": days,
            "created_ms": now_ms,
            "unlock_ms": now_ms + days * SECONDS_PER_DAY * 1000,
        },
    )
    _adjust_votes(ov, candidate, weighted_votes(genesis, amount, days))
    return int(seq)


# --- delegate selection ----------------------------------------------------------------------------


def select_delegates(st: Overlay | State, genesis: Genesis, epoch: int) -> list[str]:
    """Top-N candidates by votes (ties by owner address), in an order derived from the epoch."""
    cands = [st.get(k) for k in st.keys_with_prefix("c/")]
    ranked = sorted(cands, key=lambda c: (-int(c["votes"]), c["owner"]))[: genesis.active_delegates]
    seed = f"{genesis.chain_id}/{epoch}".encode()
    ordered = sorted(ranked, key=lambda c: hashlib.sha256(seed + c["operator"].encode()).digest())
    return [c["operator"] for c in ordered]


def delegates_of_epoch(st: Overlay | State, epoch: int) -> list[str]:
    v = st.get(f"e/{epoch}")
    return list(v) if v else []


def proposer_of(delegates: list[str] | tuple[str, ...], height: int, round_: int) -> str:
    return delegates[(height + round_) % len(delegates)]


# --- genesis ---------------------------------------------------------------------------------------


def genesis_state(genesis: Genesis) -> State:
    base = State()
    ov = Overlay(base)
    for addr, amount in genesis.balances:
        _set_account(ov, addr, amount, 0)
    for c in genesis.candidates:
        ov.put("c/" + c.owner, {"name": c.name, "owner": c.owner, "operator": c.operator, "votes": "0", "self_bucket": None})
        ov.put("n/" + c.name, c.owner)
        ov.put("o/" + c.operator, c.owner)
    for c in genesis.candidates:
        if c.self_stake:
            bid = _new_bucket(ov, genesis, c.owner, c.owner, c.self_stake, c.duration_days, genesis.genesis_time_ms)
            cand = dict(ov.get("c/" + c.owner))
            cand["self_bucket"] = bid
            ov.put("c/" + c.owner, cand)
    for b in genesis.buckets:
        owner = resolve_candidate(ov, b.candidate)
        assert owner is not None
        _new_bucket(ov, genesis, b.owner, owner, b.amount, b.duration_days, genesis.genesis_time_ms)
    ov.put("e/1", select_delegates(ov, genesis, 1))
    base.apply(ov.changes())
    return base


# --- actions ---------------------------------------------------------------------------------------


def check_admissible(st: Overlay | State, action: Action, chain_id: int, min_fee: int = 0) -> None:
    """What makes an action includable in a block at all: chain, nonce, a fee of at least the chain's
    minimum, and the sender's balance paying it (so an account that holds nothing cannot put anything in
    a block, nor create its own account entry, once the minimum is above 0)."""
    if action.chain_id != chain_id:
        raise ExecutionError(f"chain id {action.chain_id} is not this chain's {chain_id}")
    if action.fee < min_fee:
        raise ExecutionError(f"fee {action.fee} is below the chain's minimum fee {min_fee}")
    bal, nonce = account(st, action.sender)
    if action.nonce != nonce + 1:
        raise ExecutionError(f"nonce {action.nonce} is not the sender's next nonce {nonce + 1}")
    if bal < action.fee:
        raise ExecutionError(f"balance {bal} cannot pay fee {action.fee}")


def execute_action(ov: Overlay, genesis: Genesis, ctx: BlockContext, action: Action) -> Receipt:
    """Charge the fee and bump the nonce, then run the payload; a failed payload leaves no trace."""
    check_admissible(ov, action, genesis.chain_id, genesis.min_fee)
    bal, nonce = account(ov, action.sender)
    _set_account(ov, action.sender, bal - action.fee, nonce + 1)
    _add_reward(ov, _reward_address(ov, ctx.proposer), action.fee)
    scratch = Overlay(ov)
    try:
        bucket = _HANDLERS[action.type](scratch, genesis, ctx, action.sender, action.payload)
    except ExecutionError as exc:
        return Receipt(action.hash, FAILED, str(exc))
    scratch.merge_into_parent()
    return Receipt(action.hash, SUCCESS, None, bucket)


def _transfer(ov: Overlay, g: Genesis, ctx: BlockContext, sender: str, p: dict[str, Any]) -> int | None:
    debit(ov, sender, p["amount"])
    credit(ov, p["to"], p["amount"])
    return None


def _stake_create(ov: Overlay, g: Genesis, ctx: BlockContext, sender: str, p: dict[str, Any]) -> int | None:
    cand = resolve_candidate(ov, p["candidate"])
    if cand is None:
        raise ExecutionError(f"candidate {p['candidate']} is not registered")
    debit(ov, sender, p["amount"])
    return _new_bucket(ov, g, sender, cand, p["amount"], p["duration_days"], ctx.timestamp_ms)


def _bucket_of(ov: Overlay, sender: str, bid: int) -> dict[str, Any]:
    b = ov.get(f"b/{bid}")
    if b is None:
        raise ExecutionError(f"bucket {bid} does not exist")
    if b["owner"] != sender:
        raise ExecutionError(f"bucket {bid} is owned by {b['owner']}, not {sender}")
    return dict(b)


def _stake_add(ov: Overlay, g: Genesis, ctx: BlockContext, sender: str, p: dict[str, Any]) -> int | None:
    b = _bucket_of(ov, sender, p["bucket"])
    amount = int(b["amount"]) + p["amount"]
    if amount > MAX_AMOUNT:
        raise ExecutionError("bucket amount would exceed the maximum amount")
    debit(ov, sender, p["amount"])
    old_votes = weighted_votes(g, int(b["amount"]), b["days"])
    b["amount"] = str(amount)
    ov.put(f"b/{p['bucket']}", b)
    _adjust_votes(ov, b["candidate"], weighted_votes(g, amount, b["days"]) - old_votes)
    return None


def _stake_unstake(ov: Overlay, g: Genesis, ctx: BlockContext, sender: str, p: dict[str, Any]) -> int | None:
    b = _bucket_of(ov, sender, p["bucket"])
    if ctx.timestamp_ms < b["unlock_ms"]:
        raise ExecutionError(f"bucket {p['bucket']} is locked until {b['unlock_ms']} ms (block time {ctx.timestamp_ms})")
    cand = ov.get("c/" + b["candidate"])
    if cand is not None and cand.get("self_bucket") == p["bucket"]:
        raise ExecutionError(f"bucket {p['bucket']} is the self-stake of candidate {cand['name']}")
    _adjust_votes(ov, b["candidate"], -weighted_votes(g, int(b["amount"]), b["days"]))
    ov.delete(f"b/{p['bucket']}")
    credit(ov, sender, int(b["amount"]))
    return None


def _stake_vote(ov: Overlay, g: Genesis, ctx: BlockContext, sender: str, p: dict[str, Any]) -> int | None:
    b = _bucket_of(ov, sender, p["bucket"])
    cand = resolve_candidate(ov, p["candidate"])
    if cand is None:
        raise ExecutionError(f"candidate {p['candidate']} is not registered")
    old = ov.get("c/" + b["candidate"])
    if old is not None and old.get("self_bucket") == p["bucket"]:
        raise ExecutionError(f"bucket {p['bucket']} is the self-stake of candidate {old['name']}")
    votes = weighted_votes(g, int(b["amount"]), b["days"])
    _adjust_votes(ov, b["candidate"], -votes)
    b["candidate"] = cand
    ov.put(f"b/{p['bucket']}", b)
    _adjust_votes(ov, cand, votes)
    return None


def _candidate_register(ov: Overlay, g: Genesis, ctx: BlockContext, sender: str, p: dict[str, Any]) -> int | None:
    if ov.get("c/" + sender) is not None:
        raise ExecutionError(f"{sender} already owns a candidate")
    if ov.get("n/" + p["name"]) is not None:
        raise ExecutionError(f"candidate name {p['name']} is taken")
    if ov.get("o/" + p["operator"]) is not None:
        raise ExecutionError(f"operator {p['operator']} already signs for a candidate")
    debit(ov, sender, p["self_stake"])
    ov.put("c/" + sender, {"name": p["name"], "owner": sender, "operator": p["operator"], "votes": "0", "self_bucket": None})
    ov.put("n/" + p["name"], sender)
    ov.put("o/" + p["operator"], sender)
    bid = _new_bucket(ov, g, sender, sender, p["self_stake"], p["duration_days"], ctx.timestamp_ms)
    cand = dict(ov.get("c/" + sender))
    cand["self_bucket"] = bid
    ov.put("c/" + sender, cand)
    return bid


def _rewards_claim(ov: Overlay, g: Genesis, ctx: BlockContext, sender: str, p: dict[str, Any]) -> int | None:
    have = unclaimed(ov, sender)
    if p["amount"] > have:
        raise ExecutionError(f"claim of {p['amount']} exceeds unclaimed rewards {have}")
    ov.put("r/" + sender, str(have - p["amount"]))
    credit(ov, sender, p["amount"])
    return None


_HANDLERS = {
    "transfer": _transfer,
    "stake_create": _stake_create,
    "stake_add": _stake_add,
    "stake_unstake": _stake_unstake,
    "stake_vote": _stake_vote,
    "candidate_register": _candidate_register,
    "rewards_claim": _rewards_claim,
}


# --- block-level transitions -----------------------------------------------------------------------


def _reward_address(st: Overlay | State, operator: str) -> str:
    owner = st.get("o/" + operator)
    return owner if isinstance(owner, str) else operator


@dataclass(frozen=True, slots=True)
class Grant:
    """A reward a block granted: to the owner address `owner`, of `kind` block | fee | epoch. Not state: what a
    node's books record (store.py), so that rewards can be traced to the epoch and delegate they came from."""

    owner: str
    kind: str
    amount: int


def finish_block(ov: Overlay, genesis: Genesis, ctx: BlockContext, epoch: int) -> list[Grant]:
    """Block reward, productivity, and (on an epoch's last block) epoch reward and next delegates. Returns the
    rewards it granted (the block's fees were granted by execute_action, see `fee_grant`)."""
    reward = genesis.block_reward if ctx.block_reward is None else ctx.block_reward
    grants = [Grant(_reward_address(ov, ctx.proposer), "block", reward)]
    _add_reward(ov, grants[0].owner, reward)
    # Slot r of this height belongs to delegates[(height + r) % n]: slot 0 was expected, slots before
    # ctx.round were missed, slot ctx.round produced. Counted per delegate in closed form, so the cost is
    # O(n) and not O(round): a header may carry any round below 2**63.
    n = len(ctx.delegates)
    rounds_missed = ctx.round
    for r in range(min(ctx.round + 1, n)):
        op = ctx.delegates[(ctx.height + r) % n]
        key = f"p/{epoch}/{op}"
        expected, produced, missed = ov.get(key) or [0, 0, 0]
        if r == 0:
            expected += 1
        if r == ctx.round % n:
            produced += 1
        if r < rounds_missed:
            missed += (rounds_missed - r + n - 1) // n  # how many r' < rounds_missed have r' % n == r
        ov.put(key, [expected, produced, missed])
    if genesis.is_epoch_end(ctx.height):
        for owner, share in epoch_reward_shares(ov, genesis, ctx.delegates):
            _add_reward(ov, owner, share)
            grants.append(Grant(owner, "epoch", share))
        ov.put(f"e/{epoch + 1}", select_delegates(ov, genesis, epoch + 1))
    return grants


def fee_grant(st: Overlay | State, ctx: BlockContext, actions: list[Action] | tuple[Action, ...]) -> Grant:
    """The fees of a block's actions, which execute_action granted to its proposer's owner."""
    return Grant(_reward_address(st, ctx.proposer), "fee", sum(a.fee for a in actions))


def epoch_reward_shares(st: Overlay | State, genesis: Genesis, delegates: tuple[str, ...]) -> list[tuple[str, int]]:
    """Split the epoch reward by votes; the remainder of the integer division goes to the first."""
    owners = [_reward_address(st, op) for op in delegates]
    votes = []
    for owner in owners:
        c = st.get("c/" + owner)
        votes.append(int(c["votes"]) if c else 0)
    total = sum(votes)
    if not genesis.epoch_reward or not owners:
        return []
    if total == 0:
        shares = [genesis.epoch_reward // len(owners)] * len(owners)
    else:
        shares = [genesis.epoch_reward * v // total for v in votes]
    shares[0] += genesis.epoch_reward - sum(shares)
    return list(zip(owners, shares, strict=True))


def votes_snapshot(st: Overlay | State, genesis: Genesis) -> dict[str, Any]:
    """Every candidate's votes and every bucket behind them, as a node's books record them at an epoch's end
    (the votes that split its epoch reward and elect the next epoch's delegates). Sorted, so deterministic."""
    cands = sorted((st.get(k) for k in st.keys_with_prefix("c/")), key=lambda c: (-int(c["votes"]), c["owner"]))
    buckets = []
    for k in st.keys_with_prefix("b/"):
        b = st.get(k)
        votes = weighted_votes(genesis, int(b["amount"]), b["days"])
        buckets.append({"id": int(k[2:]), "owner": b["owner"], "candidate": b["candidate"], "amount": b["amount"],
                        "days": b["days"], "votes": str(votes)})  # fmt: skip
    buckets.sort(key=lambda b: b["id"])
    candidates = [{"name": c["name"], "owner": c["owner"], "operator": c["operator"], "votes": c["votes"]} for c in cands]
    return {"candidates": candidates, "buckets": buckets}


def receipts_root(receipts: list[Receipt]) -> bytes:
    h = hashlib.sha256()
    for r in receipts:
        h.update(r.action_hash)
        h.update(encode(r.to_wire()))
    return h.digest()
