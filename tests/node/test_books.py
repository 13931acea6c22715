"""The node's books (store.py): written with each block, in its transaction, and removed by a rollback."""

from __future__ import annotations

from pathlib import Path

from iotex_node import maintenance as mt
from iotex_node.chain import Chain
from iotex_node.store import Store
from iotex_node.testing import OneDelegate


def test_books_are_written_with_blocks_and_a_rollback_removes_them(tmp_path: Path) -> None:
    od = OneDelegate.new(epoch_length=4, min_fee=3)
    cfg = od.init_home(tmp_path / "home")
    db = cfg.path(cfg.database)
    store = Store(db)
    chain = Chain(od.genesis, store)
    od.grow(chain, 9, 2)
    owner = od.owner.address
    assert store.epoch_votes(1) is not None and store.epoch_votes(2) is not None and store.epoch_votes(3) is None
    g = od.genesis
    by_kind: dict[str, int] = {}
    for _h, who, kind, amount in store.granted(1):
        assert who == owner
        by_kind[kind] = by_kind.get(kind, 0) + amount
    assert by_kind == {"block": 4 * g.block_reward, "fee": 8 * 3, "epoch": g.epoch_reward}  # 2 transfers a block
    assert len(store.account_actions(od.sender.address, 0, 100)) == 18
    assert len(store.account_actions(od.delegate.address, 0, 100)) == 18  # the transfers it received
    store.close()
    mt.rollback(cfg.home, 5)
    store = Store(db)
    try:
        assert store.epoch_votes(1) is not None and store.epoch_votes(2) is None
        assert sorted(k for h, _o, k, _a in store.granted(2) if h == 5) == ["block", "fee"] and {
            h for h, *_ in store.granted(2)
        } == {5}
        assert store.granted(3) == []
        assert max(h for h, _i, _x in store.account_actions(od.sender.address, 0, 100)) == 5
        chain = Chain(od.genesis, store)
        od.grow(chain, 2, 1)  # the chain goes on from 5: its books again, no leftovers from the removed blocks
        assert [h for h, *_ in store.granted(2)][-1] == 7 and len(store.account_actions(od.sender.address, 0, 100)) == 12
    finally:
        store.close()
