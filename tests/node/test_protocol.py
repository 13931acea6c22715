"""Protocol activations in the chain itself: what protocol 2 changes, and a release that cannot run it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from iotex_node import execution as ex
from iotex_node import genesis as genesis_mod
from iotex_node.chain import Chain
from iotex_node.crypto.keys import PrivateKey
from iotex_node.errors import ExecutionError, InvalidBlock, InvalidInput
from iotex_node.protocol import delegates_root
from iotex_node.store import Store
from iotex_node.testing import commit_block, one_delegate_genesis

BASE, V2 = 16 * 10**18, 3 * 10**18


def _setup(tmp_path: Path, protocols: list[dict[str, object]]) -> tuple[genesis_mod.Genesis, PrivateKey, PrivateKey, Path]:
    op, owner = PrivateKey(), PrivateKey()
    g = one_delegate_genesis(
        op, owner, name="d", self_stake=1000, chain_id=7, age_ms=60_000, epoch_length=5, block_reward=BASE, epoch_reward=0,
        protocols=protocols,
    )  # fmt: skip
    db = tmp_path / "chain.db"
    Chain.initialize(g, db)
    return g, op, owner, db


def test_protocol_2_adds_delegates_root_and_changes_the_block_reward(tmp_path: Path) -> None:
    g, op, owner, db = _setup(tmp_path, [{"version": 1, "height": 1}, {"version": 2, "height": 3, "block_reward": str(V2)}])
    chain = Chain(g, Store(db), supported_protocols=(1, 2))
    rewards = []
    for _ in range(4):
        before = ex.unclaimed(chain.state, owner.address)
        commit_block(chain, op)
        rewards.append(ex.unclaimed(chain.state, owner.address) - before)
    assert rewards == [BASE, BASE, V2, V2]
    headers = [chain.block(h).header for h in range(1, 5)]  # type: ignore[union-attr]
    assert [h.protocol for h in headers] == [1, 1, 2, 2]
    assert headers[0].delegates_root is None and headers[1].delegates_root is None
    assert headers[2].delegates_root == delegates_root([op.address])
    assert "delegates_root" in headers[2].to_wire() and "delegates_root" not in headers[0].to_wire()


def test_a_release_without_protocol_2_stops_at_the_activation_with_upgrade_required(tmp_path: Path) -> None:
    g, op, _owner, db = _setup(tmp_path, [{"version": 1, "height": 1}, {"version": 2, "height": 3}])
    new = Chain(g, Store(db), supported_protocols=(1, 2))
    commit_block(new, op)
    commit_block(new, op)
    with pytest.raises(ExecutionError, match="upgrade required: protocol 2 active at height 3"):
        Chain(g, Store(db), supported_protocols=(1,)).build_block(0, op.address, int(time.time() * 1000))
    # ...and it refuses a protocol-2 block from a peer rather than executing it under the old rules
    block3 = new.build_block(0, op.address, int(time.time() * 1000)).block
    old = Chain(g, Store(db), supported_protocols=(1,))
    with pytest.raises(InvalidBlock, match="upgrade required"):
        old.execute(block3, check_clock=False)


def test_a_protocol_1_block_without_the_rule_of_protocol_2_is_invalid(tmp_path: Path) -> None:
    from dataclasses import replace

    g, op, _owner, db = _setup(tmp_path, [{"version": 1, "height": 1}, {"version": 2, "height": 2}])
    chain = Chain(g, Store(db), supported_protocols=(1, 2))
    commit_block(chain, op)
    good = chain.build_block(0, op.address, int(time.time() * 1000)).block
    forged = replace(good, header=replace(good.header, delegates_root=None))
    fresh = Chain(g, Store(db), supported_protocols=(1, 2))
    with pytest.raises(InvalidBlock, match="delegates_root"):
        fresh.execute(forged, check_clock=False)


def test_scheduling_a_protocol_is_validated_and_survives_a_restart(tmp_path: Path) -> None:
    g, op, _owner, db = _setup(tmp_path, [{"version": 1, "height": 1}])
    chain = Chain(g, Store(db))
    commit_block(chain, op)
    with pytest.raises(InvalidInput, match="not after the last scheduled protocol"):
        chain.schedule_protocol(1, 10)
    with pytest.raises(InvalidInput, match="above the finalized height"):
        chain.schedule_protocol(2, 2)
    chain.schedule_protocol(2, 5, V2)
    again = Chain(g, Store(db))
    assert again.protocol_at(4) == 1 and again.protocol_at(5) == 2
    assert again.schedule.block_reward_at(5) == V2
