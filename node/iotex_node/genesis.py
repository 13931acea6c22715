"""The genesis file: everything all delegates must agree on before block 1."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iotex_node import codec
from iotex_node.actions import parse_amount, parse_uint, valid_candidate_name
from iotex_node.constants import MAX_STAKE_DAYS
from iotex_node.crypto.keys import valid_address
from iotex_node.errors import ConfigError, InvalidInput
from iotex_node.protocol import Activation, Schedule

# IoTeX-like default curve: a bucket locked for 28 days or more earns a bonus that grows with the lock.
# (min_days, weight in basis points); the last entry whose min_days <= duration applies.
DEFAULT_VOTE_WEIGHT = ((0, 10000), (7, 10500), (28, 12000), (91, 12500), (365, 13000))
# The minimum fee new genesis documents get (`testnet`, the lab): 0.01 IOTX, what IoTeX's cheapest
# action costs (a transfer's 10,000 gas at the 1 Qev minimum gas price). Every action, failed or not,
# costs block space and a state write (its sender's nonce), so every action must pay something; this
# prices a full block (5,000 actions) at 50 IOTX. A document without `min_fee` is an existing network's
# and keeps its rule (no minimum) and its hash: see docs/node.md, "Fees".
DEFAULT_MIN_FEE = 10**16

_FIELDS = {
    "chain_id",
    "genesis_time_ms",
    "active_delegates",
    "block_interval_ms",
    "epoch_length",
    "block_reward",
    "epoch_reward",
    "vote_weight",
    "balances",
    "candidates",
    "buckets",
    "protocols",
    "min_fee",
}


@dataclass(frozen=True)
class GenesisCandidate:
    name: str
    owner: str
    operator: str
    self_stake: int
    duration_days: int


@dataclass(frozen=True)
class GenesisBucket:
    owner: str
    candidate: str  # candidate name
    amount: int
    duration_days: int


@dataclass(frozen=True)
class Genesis:
    chain_id: int
    genesis_time_ms: int
    active_delegates: int
    block_interval_ms: int
    epoch_length: int
    block_reward: int
    epoch_reward: int
    vote_weight: tuple[tuple[int, int], ...]
    balances: tuple[tuple[str, int], ...]
    candidates: tuple[GenesisCandidate, ...]
    buckets: tuple[GenesisBucket, ...] = ()
    # (protocol version, activation height), ascending; protocol 1 from height 1.
    protocols: tuple[tuple[int, int], ...] = ((1, 1),)
    # Block reward set by an activation (version -> reward), from protocols[i].block_reward.
    protocol_rewards: tuple[tuple[int, int], ...] = ()
    # Consensus: a block including an action with a lower fee is invalid. 0 (the field absent): no minimum.
    min_fee: int = 0
    hash: bytes = field(default=b"", compare=False)

    def schedule(self) -> Schedule:
        rewards = dict(self.protocol_rewards)
        return Schedule(tuple(Activation(v, h, rewards.get(v)) for v, h in self.protocols), self.block_reward)

    def protocol_at(self, height: int) -> int:
        version = self.protocols[0][0]
        for v, h in self.protocols:
            if h <= height:
                version = v
        return version

    def epoch_of(self, height: int) -> int:
        return (height - 1) // self.epoch_length + 1 if height > 0 else 0

    def is_epoch_end(self, height: int) -> bool:
        return height > 0 and height % self.epoch_length == 0

    def weight_bps(self, duration_days: int) -> int:
        weight = self.vote_weight[0][1]
        for days, bps in self.vote_weight:
            if duration_days >= days:
                weight = bps
        return weight

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "chain_id": self.chain_id,
            "genesis_time_ms": self.genesis_time_ms,
            "active_delegates": self.active_delegates,
            "block_interval_ms": self.block_interval_ms,
            "epoch_length": self.epoch_length,
            "block_reward": str(self.block_reward),
            "epoch_reward": str(self.epoch_reward),
            "vote_weight": [list(x) for x in self.vote_weight],
            "balances": {a: str(b) for a, b in self.balances},
            "candidates": [
                {
                    "name": c.name,
                    "owner": c.owner,
                    "operator": c.operator,
                    "self_stake": str(c.self_stake),
                    "duration_days": c.duration_days,
                }
                for c in self.candidates
            ],
            "buckets": [
                {"owner": b.owner, "candidate": b.candidate, "amount": str(b.amount), "duration_days": b.duration_days}
                for b in self.buckets
            ],
            "protocols": [a.to_json() for a in self.schedule().activations],
        }
        # Only when set: a genesis written before the field existed keeps its hash (its network's identity).
        if self.min_fee:
            doc["min_fee"] = str(self.min_fee)
        return doc


_CANDIDATE_FIELDS = frozenset({"name", "owner", "operator", "self_stake", "duration_days"})
_BUCKET_FIELDS = frozenset({"owner", "candidate", "amount", "duration_days"})
_PROTOCOL_FIELDS = frozenset({"version", "height", "block_reward"})


def _no_unknown(doc: dict[str, Any], allowed: frozenset[str] | set[str], where: str) -> None:
    """A misspelt optional key (say "duration_day") must not silently fall back to its default."""
    unknown = sorted(map(str, set(doc) - allowed))
    if unknown:
        raise InvalidInput(f"unknown field(s): {', '.join(unknown)[:200]}", f"{where}{unknown[0][:100]}")


def _req(doc: dict[str, Any], key: str, where: str) -> Any:
    if key not in doc:
        raise InvalidInput("is missing", f"{where}{key}")
    return doc[key]


def from_json(doc: object) -> Genesis:
    """Validate a genesis document; raise InvalidInput naming the first wrong field."""
    if not isinstance(doc, dict):
        raise InvalidInput("genesis must be a JSON object")
    _no_unknown(doc, _FIELDS, "")
    chain_id = parse_uint(_req(doc, "chain_id", ""), "chain_id", 2**32 - 1)
    active = parse_uint(_req(doc, "active_delegates", ""), "active_delegates", 1000)
    if active < 1:
        raise InvalidInput("must be at least 1", "active_delegates")
    interval = parse_uint(_req(doc, "block_interval_ms", ""), "block_interval_ms", 3_600_000)
    if interval < 100:
        raise InvalidInput("must be at least 100 ms", "block_interval_ms")
    epoch_length = parse_uint(_req(doc, "epoch_length", ""), "epoch_length", 1_000_000)
    if epoch_length < 1:
        raise InvalidInput("must be at least 1 block", "epoch_length")
    curve_raw = doc.get("vote_weight", [list(x) for x in DEFAULT_VOTE_WEIGHT])
    if not isinstance(curve_raw, list) or not curve_raw:
        raise InvalidInput("must be a non-empty list of [min_days, basis_points]", "vote_weight")
    curve: list[tuple[int, int]] = []
    for i, pair in enumerate(curve_raw):
        if not isinstance(pair, list) or len(pair) != 2:
            raise InvalidInput("must be [min_days, basis_points]", f"vote_weight[{i}]")
        days = parse_uint(pair[0], f"vote_weight[{i}][0]", MAX_STAKE_DAYS)
        bps = parse_uint(pair[1], f"vote_weight[{i}][1]", 1_000_000)
        if curve and (days <= curve[-1][0] or bps < curve[-1][1]):
            raise InvalidInput("days must ascend and weights must not decrease", f"vote_weight[{i}]")
        curve.append((days, bps))
    if curve[0][0] != 0:
        raise InvalidInput("the first entry must start at 0 days", "vote_weight[0]")
    balances_raw = doc.get("balances", {})
    if not isinstance(balances_raw, dict):
        raise InvalidInput("must be an object of address: amount", "balances")
    balances = []
    for addr, amount in sorted(balances_raw.items()):
        if not valid_address(addr):
            raise InvalidInput(f"{addr!r} is not an io1 address", "balances")
        balances.append((addr, parse_amount(amount, f"balances.{addr}", positive=False)))
    cands_raw = _req(doc, "candidates", "")
    if not isinstance(cands_raw, list) or not cands_raw:
        raise InvalidInput("must list at least one candidate", "candidates")
    candidates = []
    names: set[str] = set()
    operators: set[str] = set()
    owners: set[str] = set()
    for i, c in enumerate(cands_raw):
        w = f"candidates[{i}]."
        if not isinstance(c, dict):
            raise InvalidInput("must be an object", f"candidates[{i}]")
        _no_unknown(c, _CANDIDATE_FIELDS, w)
        name = _req(c, "name", w)
        if not valid_candidate_name(name):
            raise InvalidInput("must be 1-12 lowercase letters or digits", f"{w}name")
        if name in names:
            raise InvalidInput(f"candidate name {name!r} appears twice", f"{w}name")
        names.add(name)
        owner, operator = _req(c, "owner", w), _req(c, "operator", w)
        for k, v in (("owner", owner), ("operator", operator)):
            if not valid_address(v):
                raise InvalidInput("is not an io1 address", f"{w}{k}")
        if owner in owners:
            # The state keeps one candidate per owner (c/<owner>): a second would overwrite the first.
            raise InvalidInput(f"owner {owner} owns two candidates", f"{w}owner")
        owners.add(owner)
        if operator in operators:
            raise InvalidInput(f"operator {operator} is used by two candidates", f"{w}operator")
        operators.add(operator)
        candidates.append(
            GenesisCandidate(
                name,
                owner,
                operator,
                parse_amount(_req(c, "self_stake", w), f"{w}self_stake", positive=False),
                parse_uint(c.get("duration_days", 0), f"{w}duration_days", MAX_STAKE_DAYS),
            )
        )
    buckets = []
    buckets_raw = doc.get("buckets", [])
    if not isinstance(buckets_raw, list):
        raise InvalidInput("must be a list of buckets", "buckets")
    for i, b in enumerate(buckets_raw):
        w = f"buckets[{i}]."
        if not isinstance(b, dict):
            raise InvalidInput("must be an object", f"buckets[{i}]")
        _no_unknown(b, _BUCKET_FIELDS, w)
        if not valid_address(_req(b, "owner", w)):
            raise InvalidInput("is not an io1 address", f"{w}owner")
        if not isinstance(_req(b, "candidate", w), str) or b["candidate"] not in names:
            raise InvalidInput(f"names no genesis candidate: {b['candidate']!r}", f"{w}candidate")
        buckets.append(
            GenesisBucket(
                b["owner"],
                b["candidate"],
                parse_amount(_req(b, "amount", w), f"{w}amount"),
                parse_uint(b.get("duration_days", 0), f"{w}duration_days", MAX_STAKE_DAYS),
            )
        )
    protos_raw = doc.get("protocols", [{"version": 1, "height": 1}])
    if not isinstance(protos_raw, list) or not protos_raw:
        raise InvalidInput("must list protocol activations", "protocols")
    protocols: list[tuple[int, int]] = []
    protocol_rewards: list[tuple[int, int]] = []
    for i, p in enumerate(protos_raw):
        if not isinstance(p, dict):
            raise InvalidInput("must be {version, height}", f"protocols[{i}]")
        _no_unknown(p, _PROTOCOL_FIELDS, f"protocols[{i}].")
        v = parse_uint(_req(p, "version", f"protocols[{i}]."), f"protocols[{i}].version", 1000)
        h = parse_uint(_req(p, "height", f"protocols[{i}]."), f"protocols[{i}].height", 2**62)
        if protocols and (v <= protocols[-1][0] or h <= protocols[-1][1]):
            raise InvalidInput("versions and heights must ascend", f"protocols[{i}]")
        protocols.append((v, h))
        if "block_reward" in p:
            protocol_rewards.append((v, parse_amount(p["block_reward"], f"protocols[{i}].block_reward", positive=False)))
    if protocols[0][1] != 1:
        raise InvalidInput("the first protocol must activate at height 1", "protocols[0].height")
    g = Genesis(
        chain_id=chain_id,
        genesis_time_ms=parse_uint(doc.get("genesis_time_ms", 0), "genesis_time_ms", 2**62),
        active_delegates=active,
        block_interval_ms=interval,
        epoch_length=epoch_length,
        block_reward=parse_amount(doc.get("block_reward", "0"), "block_reward", positive=False),
        epoch_reward=parse_amount(doc.get("epoch_reward", "0"), "epoch_reward", positive=False),
        vote_weight=tuple(curve),
        balances=tuple(balances),
        candidates=tuple(candidates),
        buckets=tuple(buckets),
        protocols=tuple(protocols),
        protocol_rewards=tuple(protocol_rewards),
        min_fee=parse_amount(doc.get("min_fee", "0"), "min_fee", positive=False),
    )
    return _with_hash(g)


def _with_hash(g: Genesis) -> Genesis:
    object.__setattr__(g, "hash", codec.digest(g.to_json()))
    return g


def load(path: Path) -> Genesis:
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"genesis file {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"genesis file {path} is not valid JSON: {exc}") from None
    try:
        return from_json(doc)
    except InvalidInput as exc:
        raise ConfigError(f"genesis file {path}: {exc}") from None


def write(path: Path, g: Genesis) -> None:
    Path(path).write_text(json.dumps(g.to_json(), indent=2) + "\n")
