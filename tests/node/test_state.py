"""The world state's incremental root, its undo records, and copy-on-write overlays."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iotex_node.state import Overlay, State, encode
from tests.tiers import examples

KEYS = [f"{p}/{i}" for p in ("a", "b", "c") for i in range(4)]
changes_st = st.dictionaries(st.sampled_from(KEYS), st.none() | st.binary(max_size=8), max_size=6)


def _fresh_root(st_: State) -> bytes:
    return State(dict(st_.data)).root()


def test_empty_state_root_is_zero() -> None:
    assert State().root() == b"\x00" * 32


def test_root_commits_to_keys_and_values_but_not_insertion_order() -> None:
    a = State({"a/1": b"1", "a/2": b"2"})
    b = State({"a/2": b"2", "a/1": b"1"})
    assert a.root() == b.root()
    assert State({"a/1": b"1", "a/2": b"3"}).root() != a.root()
    assert State({"a/1": b"1", "a/3": b"2"}).root() != a.root()
    # the separator keeps key and value apart: ("a/1", "2x") differs from ("a/12", "x")
    assert State({"a/1": b"2x"}).root() != State({"a/12": b"x"}).root()


@examples(50, 200)
def test_incremental_root_equals_root_from_scratch(examples: int) -> None:
    @settings(max_examples=examples, deadline=None)
    @given(st.lists(changes_st, max_size=12))
    def check(batches: list[dict[str, bytes | None]]) -> None:
        state = State()
        for changes in batches:
            predicted = state.root_after(changes)
            state.apply(changes)
            assert state.root() == predicted
            assert state.root() == _fresh_root(state)

    check()


@examples(50, 200)
def test_undo_records_restore_state_and_root_exactly(examples: int) -> None:
    @settings(max_examples=examples, deadline=None)
    @given(st.dictionaries(st.sampled_from(KEYS), st.binary(max_size=8)), st.lists(changes_st, max_size=10))
    def check(initial: dict[str, bytes], batches: list[dict[str, bytes | None]]) -> None:
        state = State(initial)
        snapshots = []
        undos = []
        for changes in batches:
            snapshots.append((dict(state.data), state.root()))
            undos.append(state.apply(changes))
        for undo, (data, root) in zip(reversed(undos), reversed(snapshots), strict=True):
            state.apply(undo)
            assert state.data == data
            assert state.root() == root
        assert state.data == initial

    check()


def test_undo_record_names_previous_values_and_absent_keys() -> None:
    state = State({"a/1": b"old"})
    undo = state.apply({"a/1": b"new", "a/2": b"added", "a/3": None})
    assert undo == {"a/1": b"old", "a/2": None, "a/3": None}


def test_root_after_does_not_change_the_state() -> None:
    state = State({"a/1": b"x"})
    before = (dict(state.data), state.root())
    state.root_after({"a/1": None, "a/2": b"y"})
    assert (state.data, state.root()) == before


def test_state_get_decodes_and_keys_with_prefix_filters() -> None:
    state = State({"a/1": encode(["5", 1]), "b/1": encode({"x": 1}), "ab/1": encode(1)})
    assert state.get("a/1") == ["5", 1]
    assert state.get("missing") is None
    assert sorted(state.keys_with_prefix("a/")) == ["a/1"]


# --- Overlay ---------------------------------------------------------------------------------------


def _base() -> State:
    return State({"a/1": encode(1), "a/2": encode(2), "b/1": encode("b")})


def test_overlay_reads_through_and_shadows_without_touching_the_base() -> None:
    base = _base()
    root = base.root()
    ov = Overlay(base)
    assert ov.get("a/1") == 1
    ov.put("a/1", 10)
    ov.put("a/3", 3)
    ov.delete("a/2")
    assert (ov.get("a/1"), ov.get("a/2"), ov.get("a/3")) == (10, None, 3)
    assert base.get("a/1") == 1 and base.get("a/2") == 2 and base.get("a/3") is None
    assert base.root() == root


def test_overlay_put_after_delete_revives_the_key() -> None:
    ov = Overlay(_base())
    ov.delete("a/1")
    ov.put("a/1", 11)
    assert ov.get("a/1") == 11
    assert "a/1" in list(ov.keys_with_prefix("a/"))


def test_overlay_keys_with_prefix_adds_new_hides_deleted_no_duplicates() -> None:
    ov = Overlay(_base())
    ov.put("a/1", 10)  # existing, overwritten
    ov.put("a/9", 9)  # new
    ov.delete("a/2")  # deleted
    ov.delete("a/8")  # deleted, never existed
    ov.put("b/2", 0)  # other prefix
    keys = list(ov.keys_with_prefix("a/"))
    assert sorted(keys) == ["a/1", "a/9"]
    assert len(keys) == len(set(keys))


def test_overlay_changes_are_encoded_and_minimal() -> None:
    base = _base()
    ov = Overlay(base)
    ov.put("a/1", 1)  # same value as the base: no change
    ov.put("a/2", 20)
    ov.put("c/1", {"k": [1, 2]})
    ov.delete("b/1")
    ov.delete("z/1")  # absent in the base: no change
    ov.put("a/x", 5)
    ov.delete("a/x")  # added then removed: no change
    assert ov.changes() == {"a/2": encode(20), "c/1": encode({"k": [1, 2]}), "b/1": None}


def test_overlay_changes_applied_give_the_overlay_view_and_predicted_root() -> None:
    base = _base()
    ov = Overlay(base)
    ov.put("a/1", 100)
    ov.delete("a/2")
    ov.put("c/5", "new")
    changes = ov.changes()
    predicted = base.root_after(changes)
    base.apply(changes)
    assert base.root() == predicted == _fresh_root(base)
    assert {k: base.get(k) for k in base.data} == {"a/1": 100, "b/1": "b", "c/5": "new"}


def test_nested_overlay_is_invisible_to_its_parent_until_merged() -> None:
    base = _base()
    parent = Overlay(base)
    parent.put("a/1", 10)
    child = Overlay(parent)
    assert child.get("a/1") == 10
    child.put("a/1", 100)
    child.put("c/1", "c")
    child.delete("b/1")
    assert parent.get("a/1") == 10 and parent.get("c/1") is None and parent.get("b/1") == "b"
    assert sorted(child.keys_with_prefix("")) == ["a/1", "a/2", "c/1"]
    child.merge_into_parent()
    assert parent.get("a/1") == 100 and parent.get("c/1") == "c" and parent.get("b/1") is None
    assert parent.changes() == {"a/1": encode(100), "c/1": encode("c"), "b/1": None}


def test_discarded_nested_overlay_leaves_parent_unchanged() -> None:
    parent = Overlay(_base())
    parent.put("a/1", 10)
    before = parent.changes()
    child = Overlay(parent)
    child.put("a/1", 99)
    child.delete("a/2")
    del child
    assert parent.changes() == before


def test_merge_into_parent_needs_an_overlay_parent() -> None:
    with pytest.raises(AssertionError):
        Overlay(_base()).merge_into_parent()
