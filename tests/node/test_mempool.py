"""The mempool: admission rules, each refusal with a code and a message, block selection and cleanup."""

from __future__ import annotations

import hashlib

import pytest

from iotex_node import actions
from iotex_node import mempool as mp
from iotex_node.crypto.keys import PrivateKey
from iotex_node.errors import Rejected
from iotex_node.mempool import Mempool, MempoolLimits

CHAIN = 3
KEYS = [PrivateKey(hashlib.sha256(f"mempool-{i}".encode()).digest()) for i in range(6)]
A, B, C = KEYS[0], KEYS[1], KEYS[2]
RICH = 10**30
CODES = {
    mp.DUPLICATE,
    mp.NONCE_TOO_LOW,
    mp.NONCE_GAP,
    mp.WRONG_CHAIN,
    mp.INSUFFICIENT_BALANCE,
    mp.MEMPOOL_FULL,
    mp.SENDER_QUOTA,
    mp.FEE_TOO_LOW,
    mp.REPLACEMENT_UNDERPRICED,
}


def act(key: PrivateKey, nonce: int, fee: int = 1, amount: int = 1, chain_id: int = CHAIN) -> actions.Action:
    return actions.sign(
        key, chain_id=chain_id, nonce=nonce, fee=fee, type="transfer", payload={"to": KEYS[5].address, "amount": amount}
    )


def refused(pool: Mempool, action: actions.Action, committed: int = 0, balance: int = RICH) -> Rejected:
    with pytest.raises(Rejected) as err:
        pool.add(action, committed, balance)
    exc = err.value
    assert exc.code in CODES
    assert exc.reason
    assert str(exc).startswith(f"{exc.code}: ")
    return exc


def test_admits_the_senders_next_nonces_in_order() -> None:
    pool = Mempool(CHAIN)
    for n in (1, 2, 3):
        pool.add(act(A, n), 0, RICH)
    assert len(pool) == 3
    assert pool.pending_nonce(A.address, 0) == 4
    assert pool.pending_nonce(B.address, 7) == 8


def test_nonce_gap_is_refused() -> None:
    pool = Mempool(CHAIN)
    assert refused(pool, act(A, 2)).code == mp.NONCE_GAP
    pool.add(act(A, 1), 0, RICH)
    exc = refused(pool, act(A, 3))
    assert exc.code == mp.NONCE_GAP and "2" in exc.reason
    assert len(pool) == 1


def test_a_used_nonce_is_refused_as_too_low() -> None:
    pool = Mempool(CHAIN)
    exc = refused(pool, act(A, 5), committed=5)
    assert exc.code == mp.NONCE_TOO_LOW and "6" in exc.reason
    assert refused(pool, act(A, 1), committed=5).code == mp.NONCE_TOO_LOW
    pool.add(act(A, 6), 5, RICH)


def test_the_same_action_twice_is_a_duplicate() -> None:
    pool = Mempool(CHAIN)
    a = act(A, 1)
    pool.add(a, 0, RICH)
    assert refused(pool, a).code == mp.DUPLICATE
    assert len(pool) == 1


def test_replaying_a_committed_action_is_refused() -> None:
    pool = Mempool(CHAIN)
    a = act(A, 1)
    pool.add(a, 0, RICH)
    pool.remove_committed([a], lambda s: 1)
    assert len(pool) == 0
    assert refused(pool, a, committed=1).code == mp.DUPLICATE  # remembered as final
    pool.forget_recent()
    assert refused(pool, a, committed=1).code == mp.NONCE_TOO_LOW  # and refused by its nonce anyway


def test_wrong_chain_and_low_fee_are_refused() -> None:
    pool = Mempool(CHAIN, MempoolLimits(min_fee=5))
    assert refused(pool, act(A, 1, fee=5, chain_id=CHAIN + 1)).code == mp.WRONG_CHAIN
    assert refused(pool, act(A, 1, fee=4)).code == mp.FEE_TOO_LOW
    pool.add(act(A, 1, fee=5), 0, RICH)


def test_a_free_action_is_never_admitted_by_default() -> None:
    pool = Mempool(CHAIN)
    assert pool.limits.min_fee == 1
    exc = refused(pool, act(A, 1, fee=0))
    assert exc.code == mp.FEE_TOO_LOW and exc.reason == "fee 0 is below this node's minimum fee 1"
    assert len(pool) == 0


@pytest.mark.parametrize("fee", [1, 10**16, 10**30])
def test_a_key_that_holds_nothing_gets_nothing_in_whatever_it_pays(fee: int) -> None:
    pool = Mempool(CHAIN)
    exc = refused(pool, act(A, 1, fee=fee), balance=0)
    assert exc.code == mp.INSUFFICIENT_BALANCE and exc.reason == f"balance 0 cannot pay fee {fee}"
    assert len(pool) == 0 and pool.pending_nonce(A.address, 0) == 1


def test_the_fee_minimum_is_checked_before_the_balance() -> None:
    pool = Mempool(CHAIN, MempoolLimits(min_fee=10**16))
    exc = refused(pool, act(A, 1, fee=10**16 - 1), balance=0)
    assert exc.code == mp.FEE_TOO_LOW and str(10**16) in exc.reason
    assert refused(pool, act(A, 1, fee=10**16), balance=10**16 - 1).code == mp.INSUFFICIENT_BALANCE
    pool.add(act(A, 1, fee=10**16), 0, 10**16)
    assert refused(pool, act(A, 2, fee=10**16), balance=10**16).reason == (
        f"balance {10**16} cannot pay {2 * 10**16}: fee {10**16} plus {10**16} for 1 pending"
    )


def test_replacement_needs_a_strictly_higher_fee() -> None:
    pool = Mempool(CHAIN)
    first = act(A, 1, fee=10, amount=1)
    pool.add(first, 0, RICH)
    same_fee = act(A, 1, fee=10, amount=2)
    exc = refused(pool, same_fee)
    assert exc.code == mp.REPLACEMENT_UNDERPRICED
    assert "replacement must pay more" in exc.reason
    assert refused(pool, act(A, 1, fee=9, amount=3)).reason
    better = act(A, 1, fee=11, amount=4)
    pool.add(better, 0, RICH)
    assert len(pool) == 1
    assert pool.get(first.hash) is None
    assert pool.get(better.hash) == better
    assert pool.select(10, lambda s: 0) == [better]


def test_replacement_is_allowed_in_a_full_pool_and_at_the_sender_quota() -> None:
    pool = Mempool(CHAIN, MempoolLimits(max_total=1, max_per_sender=1))
    pool.add(act(A, 1, fee=1), 0, RICH)
    pool.add(act(A, 1, fee=2), 0, RICH)
    assert len(pool) == 1


def test_per_sender_cap() -> None:
    pool = Mempool(CHAIN, MempoolLimits(max_per_sender=2))
    pool.add(act(A, 1), 0, RICH)
    pool.add(act(A, 2), 0, RICH)
    assert refused(pool, act(A, 3)).code == mp.SENDER_QUOTA
    pool.add(act(B, 1), 0, RICH)  # other senders are not affected
    assert len(pool) == 3


def test_total_cap() -> None:
    pool = Mempool(CHAIN, MempoolLimits(max_total=2))
    pool.add(act(A, 1), 0, RICH)
    pool.add(act(B, 1), 0, RICH)
    assert refused(pool, act(C, 1)).code == mp.MEMPOOL_FULL
    assert refused(pool, act(A, 2)).code == mp.MEMPOOL_FULL
    assert len(pool) == 2


def test_balance_must_cover_the_fees_of_all_pending_actions() -> None:
    pool = Mempool(CHAIN)
    assert refused(pool, act(A, 1, fee=11), balance=10).code == mp.INSUFFICIENT_BALANCE
    pool.add(act(A, 1, fee=6), 0, 10)
    exc = refused(pool, act(A, 2, fee=5), balance=10)
    assert exc.code == mp.INSUFFICIENT_BALANCE and "11" in exc.reason
    pool.add(act(A, 2, fee=4), 0, 10)  # exactly covered
    # replacing nonce 1 with fee 7 would need 7 + 4 = 11
    assert refused(pool, act(A, 1, fee=7), balance=10).code == mp.INSUFFICIENT_BALANCE


def test_replacement_fee_is_counted_once() -> None:
    pool = Mempool(CHAIN)
    pool.add(act(A, 1, fee=6), 0, 10)
    pool.add(act(A, 1, fee=9), 0, 10)  # 9 <= 10: the old fee 6 no longer counts
    assert len(pool) == 1


def test_select_orders_nonces_per_sender_and_higher_fee_first_across_senders() -> None:
    pool = Mempool(CHAIN)
    a1, a2, a3 = act(A, 1, fee=1), act(A, 2, fee=100), act(A, 3, fee=1)
    b1, b2 = act(B, 1, fee=50), act(B, 2, fee=2)
    c1 = act(C, 1, fee=70)
    for x in (a1, a2, a3, b1, b2, c1):
        pool.add(x, 0, RICH)
    chosen = pool.select(10, lambda s: 0)
    assert chosen == [c1, b1, b2, a1, a2, a3]
    for key in (A, B, C):
        nonces = [x.nonce for x in chosen if x.sender == key.address]
        assert nonces == sorted(nonces)
    assert pool.select(2, lambda s: 0) == [c1, b1]
    assert len(pool) == 6  # select does not remove


def test_select_starts_at_each_senders_committed_nonce() -> None:
    pool = Mempool(CHAIN)
    a1, a2 = act(A, 1), act(A, 2)
    b1 = act(B, 1)
    for x in (a1, a2, b1):
        pool.add(x, 0, RICH)
    committed = {A.address: 1, B.address: 5}
    assert pool.select(10, lambda s: committed.get(s, 0)) == [a2]


def test_remove_committed_drops_included_and_stale_actions_only() -> None:
    pool = Mempool(CHAIN)
    a1, a2, a3 = act(A, 1), act(A, 2), act(A, 3)
    b1, b1_other = act(B, 1, fee=1), act(B, 1, fee=1, amount=7)
    c1 = act(C, 1)
    for x in (a1, a2, a3, b1, c1):
        pool.add(x, 0, RICH)
    committed = {A.address: 2, B.address: 1}
    # the block included a1, a2 and a different action with B's nonce 1
    pool.remove_committed([a1, a2, b1_other], lambda s: committed.get(s, 0))
    assert pool.get(a1.hash) is None and pool.get(a2.hash) is None
    assert pool.get(b1.hash) is None  # stale: its nonce was used by another action
    assert pool.get(a3.hash) == a3 and pool.get(c1.hash) == c1
    assert len(pool) == 2
    assert pool.pending_nonce(B.address, 1) == 2
    assert pool.select(10, lambda s: committed.get(s, 0)) in ([a3, c1], [c1, a3])
    assert refused(pool, b1_other, committed=1).code == mp.DUPLICATE


def test_every_refusal_code_is_exercised_with_a_message() -> None:
    seen: set[str] = set()
    pool = Mempool(CHAIN, MempoolLimits(max_total=3, max_per_sender=2, min_fee=1))
    a1 = act(A, 1)
    pool.add(a1, 0, RICH)
    seen.add(refused(pool, a1).code)
    seen.add(refused(pool, act(A, 1, fee=1, amount=2)).code)
    seen.add(refused(pool, act(A, 1, amount=3), committed=1).code)
    seen.add(refused(pool, act(A, 3)).code)
    seen.add(refused(pool, act(A, 1, chain_id=9)).code)
    seen.add(refused(pool, act(A, 2, fee=0)).code)
    seen.add(refused(pool, act(B, 1, fee=5), balance=4).code)
    pool.add(act(A, 2), 0, RICH)
    seen.add(refused(pool, act(A, 3)).code)
    pool.add(act(B, 1), 0, RICH)
    seen.add(refused(pool, act(C, 1)).code)
    assert seen == CODES


def test_a_full_pool_evicts_the_cheapest_last_action_for_a_higher_fee_and_says_why() -> None:
    pool = Mempool(CHAIN, MempoolLimits(max_total=4))
    removed: list[tuple[list[bytes], list[tuple[actions.Action, str, str]]]] = []
    pool.on_removed = lambda final, displaced: removed.append((final, displaced))
    spammer, other, honest = PrivateKey(), PrivateKey(), PrivateKey()
    spam = [act(spammer, n, fee=1) for n in (1, 2, 3)]
    for a in spam:
        pool.add(a, 0, RICH)
    pool.add(act(other, 1, fee=5), 0, RICH)
    # the lowest fee cannot push anything out: refused, and it says what would
    exc = refused(pool, act(honest, 1, fee=1))
    assert exc.code == mp.MEMPOOL_FULL and "pay more than 1" in exc.reason
    paying = act(honest, 1, fee=2)
    pool.add(paying, 0, RICH)
    assert len(pool) == 4 and pool.get(paying.hash) is not None
    # the spammer's last nonce went (no gap left behind), reported as evicted
    assert pool.get(spam[2].hash) is None and pool.get(spam[1].hash) is not None
    ((final, displaced),) = removed
    assert final == [] and [(a.hash, why) for a, why, _ in displaced] == [(spam[2].hash, mp.EVICTED)]
    assert "higher fee" in displaced[0][2]


def test_a_full_pool_never_evicts_the_senders_own_action_nor_a_pricier_one() -> None:
    pool = Mempool(CHAIN, MempoolLimits(max_total=2))
    a, b = PrivateKey(), PrivateKey()
    pool.add(act(a, 1, fee=3), 0, RICH)
    pool.add(act(b, 1, fee=3), 0, RICH)
    assert refused(pool, act(a, 2, fee=3)).code == mp.MEMPOOL_FULL  # equal fee: no eviction
    assert refused(pool, act(PrivateKey(), 1, fee=2)).code == mp.MEMPOOL_FULL
