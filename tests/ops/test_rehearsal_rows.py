"""The rehearsal's summary row: blocks finalized per drill (pure; no lab)."""

from __future__ import annotations

from iotex_ops.rehearsal import _blocks_finalized


def test_bootstrap_counts_from_genesis() -> None:
    assert _blocks_finalized("bootstrap", 120, 6, {}) == 6


def test_a_drill_counts_the_finalized_height_s_growth() -> None:
    assert _blocks_finalized("first-aid", 100, 118, {"downtime_s": 5.0}) == 18


def test_rollback_recovery_counts_the_blocks_made_on_top_of_the_height_it_returned_to() -> None:
    # 10 blocks reversed from 100 to 90, then 7 made again: the height ends below where the drill began
    assert _blocks_finalized("rollback-recovery", 100, 97, {"target_height": 90}) == 7
    assert _blocks_finalized("rollback-recovery", 100, 97, {"target_height": None}) == -3  # not measured: growth


def test_unknown_heights_give_none() -> None:
    assert _blocks_finalized("first-aid", None, 10, {}) is None
    assert _blocks_finalized("first-aid", 10, None, {}) is None
