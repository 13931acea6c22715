"""Rewards bookkeeping, pure: who among a delegate's voters is owed what for a span of epochs.

For each epoch, the delegate's reward (its epoch reward share, plus its block rewards with
`include_block_rewards`; never the fees of its blocks) times the percentage is shared among the voters by the
weighted votes of their buckets for the delegate at the epoch's end (the votes that split the epoch
reward). Shares are exact fractions, summed per voter over the epochs, then floored to whole rau:
- what a voter is owed below `min_payout` is carried to the next run as that voter's (not paid as dust);
- the fractions of a rau, and the pool of an epoch in which nobody voted for the delegate, are carried as the
  run's remainder, and shared in the next run by that run's votes (each voter's share of each epoch's
  votes, summed over its epochs): never lost.
So, exactly: paid + carried to voters + remainder = (rewards x percentage) + what was carried in.
The plan depends only on its inputs; its payouts are in address order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from math import floor

from iotex_ops.client.errors import ClientError


@dataclass(frozen=True)
class EpochShare:
    """One epoch as the books need it: the delegate's reward in it and each voter's weighted votes for it."""

    epoch: int
    reward: int
    votes: Mapping[str, int]


@dataclass(frozen=True)
class Carry:
    """What a run leaves for the next: per voter, amounts below the minimum; and the undivided remainder."""

    voters: Mapping[str, int] = field(default_factory=dict)
    remainder: Fraction = Fraction(0)

    @property
    def total(self) -> Fraction:
        return sum(self.voters.values(), Fraction(0)) + self.remainder

    def to_json(self) -> dict[str, object]:
        return {"voters": {v: str(a) for v, a in sorted(self.voters.items()) if a}, "remainder": str(self.remainder)}

    @classmethod
    def from_json(cls, doc: object, where: str = "carry") -> Carry:
        try:
            assert isinstance(doc, dict)
            voters = {str(k): int(v) for k, v in dict(doc.get("voters") or {}).items()}
            rem = Fraction(str(doc.get("remainder") or "0"))
        except (AssertionError, TypeError, ValueError, ZeroDivisionError):
            raise ClientError(
                f"{where}: not a carry file (voters: {{address: rau}}, remainder: a fraction)", "bad_input"
            ) from None
        if rem < 0 or any(v < 0 for v in voters.values()):
            raise ClientError(f"{where}: carried amounts cannot be negative", "bad_input")
        return cls(voters, rem)


@dataclass(frozen=True)
class Payout:
    voter: str
    amount: int  # rau


@dataclass(frozen=True)
class Plan:
    delegate: str
    from_epoch: int
    to_epoch: int
    percentage: Fraction
    reward: int  # the delegate's rewards counted over the epochs
    pool: Fraction  # reward x percentage
    carried_in: Carry
    payouts: tuple[Payout, ...]
    carry: Carry  # for the next run

    @property
    def paid(self) -> int:
        return sum(p.amount for p in self.payouts)

    def summary(self) -> dict[str, object]:
        return {
            "delegate": self.delegate,
            "from_epoch": self.from_epoch,
            "to_epoch": self.to_epoch,
            "epochs": self.to_epoch - self.from_epoch + 1,
            "reward": str(self.reward),
            "percentage": str(float(self.percentage * 100)),
            "to_voters": str(self.paid),
            "voters": len(self.payouts),
            "carried_in": str(floor(self.carried_in.total)),
            "carried": str(floor(self.carry.total)),
            "carried_voters": len([a for a in self.carry.voters.values() if a]),
        }


def parse_percentage(text: str) -> Fraction:
    """`90` or `87.5` (percent) as a fraction of 1, from 0 to 100."""
    try:
        pct = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise ClientError(f"percentage {text!r} is not a number from 0 to 100", "bad_input") from None
    if not 0 <= pct <= 100:
        raise ClientError(f"percentage {text} must be from 0 to 100", "bad_input")
    return pct / 100


def bookkeep(
    delegate: str,
    epochs: Sequence[EpochShare],
    percentage: Fraction,
    *,
    min_payout: int = 0,
    carried_in: Carry | None = None,
) -> Plan:
    """Each voter's share of `delegate`'s rewards over `epochs` (see the module's docstring)."""
    if not epochs:
        raise ClientError("no epoch to bookkeep", "bad_input")
    if not 0 <= percentage <= 1:
        raise ClientError(f"percentage {percentage * 100} is not from 0 to 100", "bad_input")
    carried_in = carried_in or Carry()
    due: dict[str, Fraction] = {}
    weight: dict[str, Fraction] = {}  # each voter's share of the votes, summed over the epochs
    remainder = carried_in.remainder
    reward = 0
    for e in sorted(epochs, key=lambda e: e.epoch):
        if e.reward < 0 or any(v < 0 for v in e.votes.values()):
            raise ClientError(f"epoch {e.epoch}: negative reward or votes", "bad_input")
        reward += e.reward
        pool = e.reward * percentage
        total = sum(e.votes.values())
        if total == 0:
            remainder += pool  # nobody to share it with in this epoch: carried, not lost
            continue
        for voter, v in e.votes.items():
            if v:
                due[voter] = due.get(voter, Fraction(0)) + pool * v / total
                weight[voter] = weight.get(voter, Fraction(0)) + Fraction(v, total)
    # The carried remainder is shared by this run's votes (a run with no voter carries it on).
    weights = sum(weight.values(), Fraction(0))
    if weights > 0 and remainder > 0:
        due = {v: due[v] + remainder * w / weights for v, w in weight.items()}
        remainder = Fraction(0)
    for voter, amount in carried_in.voters.items():
        due[voter] = due.get(voter, Fraction(0)) + amount
    payouts, carry_voters = [], {}
    for voter in sorted(due):
        whole = floor(due[voter])
        remainder += due[voter] - whole
        if whole == 0:
            continue
        if whole < min_payout:
            carry_voters[voter] = whole
        else:
            payouts.append(Payout(voter, whole))
    first, last = min(e.epoch for e in epochs), max(e.epoch for e in epochs)
    return Plan(
        delegate, first, last, percentage, reward, reward * percentage, carried_in, tuple(payouts), Carry(carry_voters, remainder)
    )


def epoch_share(
    epoch: int, owner: str, rewards: Sequence[object], buckets: Sequence[object], *, include_block_rewards: bool
) -> EpochShare:
    """An EpochShare from an epoch's books (nodeapi.EpochBooks' `rewards` and `buckets`) for the delegate
    whose owner address is `owner`."""
    reward = 0
    for r in rewards:
        if getattr(r, "owner", None) == owner:
            reward += int(getattr(r, "epoch", 0)) + (int(getattr(r, "block", 0)) if include_block_rewards else 0)
    votes: dict[str, int] = {}
    for b in buckets:
        if getattr(b, "candidate", None) == owner:
            o = str(getattr(b, "owner"))  # noqa: B009 - duck-typed records
            votes[o] = votes.get(o, 0) + int(getattr(b, "votes"))  # noqa: B009
    return EpochShare(epoch, reward, votes)
