"""Rewards bookkeeping, pure: property tests of the plan (conservation, whole non-negative amounts,
determinism), and the client's other pure pieces: amounts, the plan file, config and aliases, secrets,
the pre-check of an action, following an action, and a distribution against a fake node."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iotex_ops.client import books, config, plan, wallet
from iotex_ops.client.errors import ClientError
from iotex_ops.client.ledger import Ledger
from iotex_ops.client.payouts import Distributor
from iotex_ops.client.secrets import PasswordSource, Secret
from iotex_ops.client.units import iotx, parse_amount
from iotex_ops.nodeapi import Account, AccountAction, ActionStatus, BatchResult, Receipt, Submitted
from tests.tiers import examples

VOTERS = [f"io1{c * 38}" for c in "qpzry9x8gf"]  # address-shaped, distinct, sortable

epochs_st = st.lists(
    st.builds(
        lambda e, r, votes: (e, r, votes),
        st.integers(1, 10_000),
        st.integers(0, 10**24),
        st.dictionaries(st.sampled_from(VOTERS), st.integers(0, 10**24), max_size=len(VOTERS)),
    ),
    min_size=1,
    max_size=6,
    unique_by=lambda t: t[0],
)
pct_st = st.fractions(min_value=0, max_value=1, max_denominator=10_000)
carry_st = st.builds(
    books.Carry,
    st.dictionaries(st.sampled_from(VOTERS), st.integers(0, 10**18), max_size=4),
    st.fractions(min_value=0, max_value=50, max_denominator=1000),
)


def _plan(raw: list[tuple[int, int, dict[str, int]]], pct: Fraction, min_payout: int, carry: books.Carry) -> books.Plan:
    shares = [books.EpochShare(e, r, v) for e, r, v in raw]
    return books.bookkeep("delegate0", shares, pct, min_payout=min_payout, carried_in=carry)


@examples(60, 600)
def test_paid_plus_carried_is_the_reward_times_the_percentage_plus_what_came_in(examples: int) -> None:
    @settings(max_examples=examples, deadline=None)
    @given(epochs_st, pct_st, st.integers(0, 10**19), carry_st)
    def check(raw: list[tuple[int, int, dict[str, int]]], pct: Fraction, min_payout: int, carry: books.Carry) -> None:
        p = _plan(raw, pct, min_payout, carry)
        reward = sum(r for _e, r, _v in raw)
        assert p.reward == reward
        assert p.paid + p.carry.total == reward * pct + carry.total  # exactly: nothing lost, nothing made up
        for payout in p.payouts:
            assert isinstance(payout.amount, int) and payout.amount >= max(min_payout, 1)
        assert all(isinstance(a, int) and 0 < a < max(min_payout, 1) for a in p.carry.voters.values())
        assert p.carry.remainder >= 0
        assert [x.voter for x in p.payouts] == sorted({x.voter for x in p.payouts})

    check()


@examples(40, 400)
def test_the_plan_is_the_same_for_the_same_chain(examples: int) -> None:
    @settings(max_examples=examples, deadline=None)
    @given(epochs_st, pct_st, st.integers(0, 10**18), carry_st, st.randoms(use_true_random=False))
    def check(
        raw: list[tuple[int, int, dict[str, int]]], pct: Fraction, min_payout: int, carry: books.Carry, rnd: random.Random
    ) -> None:
        shuffled = [(e, r, dict(rnd.sample(sorted(v.items()), len(v)))) for e, r, v in raw]
        rnd.shuffle(shuffled)
        a, b = _plan(raw, pct, min_payout, carry), _plan(shuffled, pct, min_payout, carry)
        assert a == b
        assert plan.render(a) == plan.render(b)

    check()


@examples(30, 300)
def test_carrying_over_runs_loses_nothing(examples: int) -> None:
    @settings(max_examples=examples, deadline=None)
    @given(st.lists(epochs_st, min_size=2, max_size=4), pct_st, st.integers(0, 10**20))
    def check(runs: list[list[tuple[int, int, dict[str, int]]]], pct: Fraction, min_payout: int) -> None:
        carry, paid, owed = books.Carry(), 0, Fraction(0)
        for raw in runs:
            p = _plan(raw, pct, min_payout, carry)
            paid += p.paid
            owed += sum(r for _e, r, _v in raw) * pct
            carry = p.carry
        assert paid + carry.total == owed

    check()


def test_shares_follow_weighted_votes_with_floor_rounding_and_dust_carried() -> None:
    a, b, c = VOTERS[:3]
    p = books.bookkeep("d", [books.EpochShare(1, 1000, {a: 1, b: 2}), books.EpochShare(2, 999, {a: 1, b: 1, c: 1})],
                       Fraction(1, 2), min_payout=200)  # fmt: skip
    # epoch 1: 500 split 1:2 -> 166.67, 333.33; epoch 2: 499.5 split in thirds -> 166.5 each
    assert {x.voter: x.amount for x in p.payouts} == {a: 333, b: 499}
    assert p.carry.voters == {c: 166}  # below the minimum: carried, not paid as dust
    assert p.paid + p.carry.total == Fraction(1999, 2)
    nobody = books.bookkeep("d", [books.EpochShare(3, 100, {})], Fraction(1))
    assert nobody.payouts == () and nobody.carry.remainder == 100  # nobody voted: carried, not lost
    nxt = books.bookkeep("d", [books.EpochShare(4, 0, {a: 5})], Fraction(1), carried_in=nobody.carry)
    assert [(x.voter, x.amount) for x in nxt.payouts] == [(a, 100)]


def test_epoch_share_counts_the_delegates_buckets_and_its_rewards() -> None:
    @dataclass
    class R:
        owner: str
        block: int
        fee: int
        epoch: int

    @dataclass
    class B:
        owner: str
        candidate: str
        votes: int

    d, other = VOTERS[8], VOTERS[9]
    rewards = [R(d, 16, 3, 100), R(other, 32, 0, 50)]
    buckets = [B(VOTERS[0], d, 5), B(VOTERS[0], d, 7), B(VOTERS[1], other, 9)]
    s = books.epoch_share(7, d, rewards, buckets, include_block_rewards=False)
    assert (s.reward, dict(s.votes)) == (100, {VOTERS[0]: 12})
    assert books.epoch_share(7, d, rewards, buckets, include_block_rewards=True).reward == 116  # never the fees


def test_percentages_and_carry_files_are_checked() -> None:
    assert books.parse_percentage("87.5") == Fraction(7, 8)
    for bad in ("101", "-1", "x", "1/0"):
        with pytest.raises(ClientError):
            books.parse_percentage(bad)
    c = books.Carry({VOTERS[0]: 5}, Fraction(1, 3))
    assert books.Carry.from_json(c.to_json()) == c
    with pytest.raises(ClientError, match=r"negative"):
        books.Carry.from_json({"voters": {VOTERS[0]: "-1"}})


def test_amounts_in_iotx_or_rau() -> None:
    assert parse_amount("1.5") == 15 * 10**17 and parse_amount("7rau") == 7 and parse_amount("0.000000000000000001") == 1
    assert iotx(15 * 10**17) == "1.5" and iotx(10**18) == "1" and iotx(1) == "0.000000000000000001"
    for bad in ("1.0000000000000000001", "-1", "1e18", "01", "", "0"):
        with pytest.raises(ClientError):
            parse_amount(bad)
    assert parse_amount("0", positive=False) == 0


def test_plan_file_round_trip_and_bad_lines_named(tmp_path: Path) -> None:
    p = books.bookkeep("delegate0", [books.EpochShare(3, 10**18, {VOTERS[1]: 1, VOTERS[0]: 3})], Fraction(9, 10))
    f = tmp_path / "plan.csv"
    f.write_text(plan.render(p))
    rows = plan.read(f)
    assert [(r.voter, r.amount) for r in rows] == [(x.voter, x.amount) for x in p.payouts]
    assert rows[0].memo == "rewards delegate0 epochs 3-3" and plan.MEMO_RE.fullmatch(rows[0].memo)
    f.write_text(plan.render(p) + f"delegate0,3,3,{VOTERS[0]},5,x\n")
    with pytest.raises(ClientError, match=r"line 4: .* listed twice"):
        plan.read(f)
    f.write_text(plan.render(p).replace("delegate0,3,3", "delegate0,3,2", 1))
    with pytest.raises(ClientError, match=r"line 2: epochs 3-2"):
        plan.read(f)


def test_config_aliases_default_and_endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(config.ENV_ENDPOINT, raising=False)
    cfg = config.load(tmp_path)
    with pytest.raises(ClientError, match=r"no node endpoint") as e:
        cfg.endpoint_for(None)
    assert e.value.code == "no_endpoint"
    cfg = cfg.with_alias("alice", VOTERS[0])
    config.save(cfg)
    back = config.load(tmp_path)
    assert back.resolve("alice") == VOTERS[0] and back.resolve(VOTERS[1]) == VOTERS[1]
    with pytest.raises(ClientError, match=r"unknown alias .bob. \(known: alice\)") as e:
        back.resolve("bob")
    assert e.value.code == "unknown_alias" and e.value.exit_code == 2
    with pytest.raises(ClientError, match=r"no account given and no default"):
        back.resolve(None)
    with pytest.raises(ClientError):
        config.check_alias("io1x")
    monkeypatch.setenv(config.ENV_ENDPOINT, "http://127.0.0.1:1/")
    assert back.endpoint_for(None) == "http://127.0.0.1:1"


def test_secrets_are_never_shown_and_sources_are_exclusive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Secret("hunter2")
    assert "hunter2" not in repr(s) and "hunter2" not in str(s) and "hunter2" not in f"{s}"
    with pytest.raises(ClientError, match=r"one password source"):
        PasswordSource(env="X", stdin=True)
    monkeypatch.setenv("PW", "hunter2")
    assert PasswordSource(env="PW").read("p").reveal() == "hunter2"
    (tmp_path / "pw").write_text("hunter3\nignored\n")
    assert PasswordSource(file=tmp_path / "pw").read("p").reveal() == "hunter3"
    with pytest.raises(ClientError, match=r"MISSING .* is not set"):
        PasswordSource(env="MISSING").read("p")


def _account(balance: int, nonce: int = 0) -> Account:
    return Account(VOTERS[0], balance, nonce, nonce + 1, 0, 10)


def test_preview_says_balance_after_and_refuses_what_cannot_be_paid() -> None:
    p = wallet.preview(_account(100), 10, None, "transfer", {"to": VOTERS[1], "amount": 50})
    assert (p.fee, p.nonce, p.balance_after) == (10, 1, 40)
    assert p.to_json()["payload"]["amount"] == "50"
    with pytest.raises(ClientError, match=r"balance too low.*nothing was sent") as e:
        wallet.preview(_account(59), 10, None, "transfer", {"to": VOTERS[1], "amount": 50})
    assert e.value.code == "balance_too_low"
    with pytest.raises(ClientError, match=r"below the node's minimum fee") as e:
        wallet.preview(_account(100), 10, 9, "transfer", {"to": VOTERS[1], "amount": 1})
    assert wallet.preview(_account(10), 10, None, "rewards_claim", {"amount": 5}, receives=5).balance_after == 5


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def test_follow_waits_for_finality_and_says_why_not() -> None:
    answers = [None, ActionStatus("h", "pending"), ActionStatus("h", "finalized", Receipt("success", 7, 0))]

    class Node:
        def action(self, h: str) -> ActionStatus | None:
            return answers.pop(0) if len(answers) > 1 else answers[0]

    clock = _Clock()
    out = wallet.follow(Node(), "h", 10, clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]
    assert (out.status, out.height) == ("finalized", 7) and out.problem() is None

    class Stuck:
        def action(self, h: str) -> ActionStatus | None:
            return ActionStatus("h", "pending")

    out = wallet.follow(Stuck(), "h", 2, clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]
    err = out.problem()
    assert out.status == "pending" and err is not None and err.exit_code == 3 and "after 2 s it is pending" in str(err)


# --- a distribution against a fake node ---------------------------------------------------------------------


@dataclass
class FakeChain:
    """Just enough of a node for the distributor: one sender's balance, nonce, and finalized transfers."""

    sender: str
    balance: int
    nonce: int = 0
    actions: list[AccountAction] = field(default_factory=list)
    refuse_after: int | None = None  # admit this many actions, then refuse with mempool_full
    admitted: int = 0

    def account(self, address: str) -> Account:
        return Account(address, self.balance, self.nonce, self.nonce + 1, 0, 1)

    def account_actions(self, address: str, since: int = 0) -> list[AccountAction]:
        return list(self.actions)

    def submit_batch(self, wires: list[dict[str, Any]]) -> BatchResult:
        results = []
        for w in wires:
            if self.refuse_after is not None and self.admitted >= self.refuse_after:
                results.append(Submitted(None, "mempool_full", "full"))
                continue
            if w["nonce"] <= self.nonce:
                results.append(Submitted(None, "nonce_too_low", "used"))
                continue
            self.admitted += 1
            self.nonce = w["nonce"]  # final at once
            self.balance -= w["payload"]["amount"] + w["fee"]
            self.actions.append(
                AccountAction(w["hash"], 1, w["nonce"], "transfer", self.sender, w["nonce"], w["fee"], w["payload"], "success")
            )
            results.append(Submitted(w["hash"]))
        return BatchResult(sum(r.accepted for r in results), tuple(results))

    def action(self, h: str) -> ActionStatus | None:
        for a in self.actions:
            if a.hash == h:
                return ActionStatus(h, "finalized", Receipt("success", 1, 0))
        return None

    def unclaimed_rewards(self, address: str) -> int:
        return 0


class FakeSigner:
    address = VOTERS[9]

    def transfer(self, *, nonce: int, fee: int, to: str, amount: int, memo: str) -> tuple[str, dict[str, Any]]:
        h = f"{nonce:064x}"
        return h, {"hash": h, "nonce": nonce, "fee": fee, "payload": {"to": to, "amount": amount, "memo": memo}}

    def claim(self, *, nonce: int, fee: int, amount: int) -> tuple[str, dict[str, Any]]:
        raise AssertionError


def _rows(n: int) -> list[plan.Row]:
    return [plan.Row("delegate0", 1, 2, v, 100 + i) for i, v in enumerate(VOTERS[:n])]


def test_a_distribution_pays_once_refuses_when_short_and_resumes_after_a_refusal(tmp_path: Path) -> None:
    rows = _rows(6)
    chain = FakeChain(VOTERS[9], balance=10**6, refuse_after=4)
    led = Ledger(tmp_path / "l.sqlite")
    d = Distributor(chain, FakeSigner(), led, fee=10, batch=3)  # type: ignore[arg-type]
    with pytest.raises(ClientError, match=r"refused 2 payouts.*mempool_full.*run again"):
        d.run(rows)
    chain.refuse_after = None
    report = d.run(rows)  # settles the refused two (void: nonce never used? re-sent: admitted), pays the rest once
    assert report.verified and report.already_paid + report.sent == 6
    paid = [a.payload["to"] for a in chain.actions]
    assert sorted(paid) == sorted(r.voter for r in rows)
    again = d.run(rows)
    assert again.sent == 0 and again.already_paid == 6 and again.verified
    short = FakeChain(VOTERS[9], balance=sum(r.amount for r in rows) + 5 * 10)
    with pytest.raises(ClientError, match=r"balance too low.*nothing was sent"):
        Distributor(short, FakeSigner(), Ledger(tmp_path / "s.sqlite"), fee=10).run(rows)  # type: ignore[arg-type]
    assert short.actions == []
    dry = Distributor(FakeChain(VOTERS[9], 10**6), FakeSigner(), Ledger(tmp_path / "d.sqlite"), fee=10).run(rows, dry_run=True)  # type: ignore[arg-type]
    assert dry.to_pay == 6 and dry.sent == 0


def test_the_command_line_keeps_exit_statuses_and_prints_one_json_error(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from iotex_ops.cli import main

    env = {"IOTEX_OPS_CLIENT_HOME": str(tmp_path), "IOTEX_OPS_ENDPOINT": "http://127.0.0.1:9"}
    res = CliRunner().invoke(main, ["account", "balance", "nobody", "--json"], env=env)
    assert res.exit_code == 2 and json.loads(res.stdout)["error"]["code"] == "unknown_alias"
    assert res.stderr.startswith("error: unknown alias 'nobody'") and "Traceback" not in res.stderr
    assert CliRunner().invoke(main, ["account", "alias", "set", "bob", VOTERS[0]], env=env).exit_code == 0
    res = CliRunner().invoke(main, ["account", "export", "bob", "--json"], env=env)  # no terminal to confirm on
    assert res.exit_code == 1 and json.loads(res.stdout)["error"]["code"] == "not_confirmed"
