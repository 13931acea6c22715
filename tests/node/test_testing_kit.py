"""iotex_node.testing: the one-delegate chain it builds is a valid chain, as a node that reopens it sees it."""

from __future__ import annotations

from pathlib import Path

import pytest

from iotex_node import actions
from iotex_node import config as config_mod
from iotex_node import genesis as genesis_mod
from iotex_node.block import verify_certificate
from iotex_node.chain import Chain
from iotex_node.crypto.keys import PrivateKey
from iotex_node.errors import Rejected
from iotex_node.store import Store
from iotex_node.testing import OneDelegate, genesis_doc, init_home, signed_transfers, submit_transfers


def test_a_home_grows_blocks_of_transfers_that_reopen_and_verify(tmp_path: Path) -> None:
    solo = OneDelegate.new(epoch_length=3, min_fee=5)
    cfg = solo.init_home(tmp_path / "node", undo_depth=50)
    assert config_mod.load(tmp_path / "node").undo_depth == 50
    assert genesis_mod.load(tmp_path / "node" / "genesis.json").hash == solo.genesis.hash
    seen: list[int] = []
    store = Store(cfg.path(cfg.database))
    try:
        chain = Chain(solo.genesis, store)
        assert solo.grow(chain, 4, 3, on_block=lambda c: seen.append(c.height)) == 4
    finally:
        store.close()
    assert seen == [1, 2, 3, 4]
    store = Store(cfg.path(cfg.database))
    try:
        chain = Chain(solo.genesis, store)  # reopening checks the state root against the tip
        assert chain.height == 4 and chain.committed_nonce(solo.sender.address) == 12
        for h in range(1, 5):
            block = chain.block(h)
            assert block is not None and len(block.actions) == 3
            assert {a.fee for a in block.actions} == {5}  # the genesis minimum
            verify_certificate(solo.chain_id, block.header, block.certificate, [solo.delegate.address])
    finally:
        store.close()


def test_transfers_go_where_they_are_told_with_the_amount_asked(tmp_path: Path) -> None:
    solo = OneDelegate.new()
    solo.init_db(tmp_path / "chain.db")
    store = Store(tmp_path / "chain.db")
    try:
        chain = Chain(solo.genesis, store)
        to = PrivateKey().address
        made = submit_transfers(chain, solo.sender, 3, to=lambda n: to, amount=lambda n: 10 * n)
        assert [(a.nonce, a.payload["to"], a.payload["amount"], a.fee) for a in made] == [(n, to, 10 * n, 1) for n in (1, 2, 3)]
        solo.commit(chain)
        assert chain.committed_nonce(solo.sender.address) == 3
    finally:
        store.close()
    again = solo.transfer(4, amount=2)
    assert actions.parse(again.to_wire()).payload == {"to": solo.delegate.address, "amount": 2}


def test_signed_transfers_have_consecutive_nonces_and_the_fee_asked() -> None:
    key = PrivateKey()
    wires = [a.to_wire() for a in signed_transfers(key, chain_id=3, first_nonce=5, count=3, to=key.address, fee=9)]
    assert [actions.parse(w).nonce for w in wires] == [5, 6, 7]
    assert {w["fee"] for w in wires} == {"9"}


def test_a_fee_below_the_genesis_minimum_is_refused_by_the_mempool(tmp_path: Path) -> None:
    solo = OneDelegate.new(min_fee=100)
    solo.init_db(tmp_path / "chain.db")
    store = Store(tmp_path / "chain.db")
    try:
        with pytest.raises(Rejected, match="fee_too_low"):
            submit_transfers(Chain(solo.genesis, store), solo.sender, 1, to=solo.delegate.address, fee=99)
    finally:
        store.close()


def test_genesis_doc_leaves_out_what_it_is_not_given() -> None:
    doc = genesis_doc(PrivateKey().address, PrivateKey().address, genesis_time_ms=123)
    assert doc["genesis_time_ms"] == 123 and doc["balances"] == {}
    assert "min_fee" not in doc and "protocols" not in doc
    assert genesis_mod.from_json(doc).min_fee == 0


def test_init_home_is_a_home_the_node_reads(tmp_path: Path) -> None:
    solo = OneDelegate.new()
    cfg = init_home(tmp_path / "h", solo.genesis)
    assert Path(cfg.path(cfg.database)).exists()
    assert config_mod.load(tmp_path / "h").undo_depth == config_mod.NodeConfig(home=tmp_path).undo_depth
