"""The genesis document: strict validation naming the field, chain schedule helpers, and its hash."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from iotex_node import genesis
from iotex_node.crypto.keys import PrivateKey
from iotex_node.errors import ConfigError, InvalidInput


def _key(name: str) -> PrivateKey:
    return PrivateKey(hashlib.sha256(f"genesis-{name}".encode()).digest())


OWNERS = [_key(f"owner{i}") for i in range(3)]
OPERATORS = [_key(f"op{i}") for i in range(3)]
VOTER = _key("voter")


def base_doc() -> dict[str, Any]:
    return {
        "chain_id": 7,
        "genesis_time_ms": 1_700_000_000_000,
        "active_delegates": 3,
        "block_interval_ms": 1000,
        "epoch_length": 10,
        "block_reward": "16",
        "epoch_reward": "1000",
        "vote_weight": [[0, 10000], [7, 10500], [28, 12000]],
        "balances": {VOTER.address: "500", OWNERS[0].address: "7"},
        "candidates": [
            {
                "name": f"cand{i}",
                "owner": OWNERS[i].address,
                "operator": OPERATORS[i].address,
                "self_stake": str(1000 * (i + 1)),
                "duration_days": 7 * i,
            }
            for i in range(3)
        ],
        "buckets": [{"owner": VOTER.address, "candidate": "cand1", "amount": "300", "duration_days": 28}],
        "protocols": [{"version": 1, "height": 1}, {"version": 2, "height": 100}],
    }


def test_valid_document_is_read_field_by_field() -> None:
    g = genesis.from_json(base_doc())
    assert g.chain_id == 7
    assert g.active_delegates == 3
    assert g.block_reward == 16 and g.epoch_reward == 1000
    assert dict(g.balances) == {VOTER.address: 500, OWNERS[0].address: 7}
    assert [c.name for c in g.candidates] == ["cand0", "cand1", "cand2"]
    assert g.candidates[2] == genesis.GenesisCandidate("cand2", OWNERS[2].address, OPERATORS[2].address, 3000, 14)
    assert g.buckets == (genesis.GenesisBucket(VOTER.address, "cand1", 300, 28),)
    assert g.protocols == ((1, 1), (2, 100))
    assert len(g.hash) == 32


def test_optional_fields_take_their_defaults() -> None:
    doc = base_doc()
    for k in ("vote_weight", "balances", "buckets", "protocols", "block_reward", "epoch_reward", "genesis_time_ms"):
        del doc[k]
    for c in doc["candidates"]:
        del c["duration_days"]
    g = genesis.from_json(doc)
    assert g.vote_weight == genesis.DEFAULT_VOTE_WEIGHT
    assert g.protocols == ((1, 1),)
    assert g.balances == () and g.buckets == ()
    assert g.block_reward == 0 and g.genesis_time_ms == 0
    assert all(c.duration_days == 0 for c in g.candidates)


def test_hash_is_stable_across_to_json_from_json_round_trip() -> None:
    g = genesis.from_json(base_doc())
    again = genesis.from_json(g.to_json())
    assert again == g
    assert again.hash == g.hash
    assert genesis.from_json(json.loads(json.dumps(g.to_json()))).hash == g.hash


def test_hash_is_stable_through_a_file(tmp_path: Path) -> None:
    g = genesis.from_json(base_doc())
    genesis.write(tmp_path / "genesis.json", g)
    assert genesis.load(tmp_path / "genesis.json").hash == g.hash


def test_hash_does_not_depend_on_key_or_balance_order() -> None:
    doc = base_doc()
    reordered = dict(reversed(list(doc.items())))
    reordered["balances"] = dict(reversed(list(doc["balances"].items())))
    assert genesis.from_json(reordered).hash == genesis.from_json(doc).hash


def test_explicit_default_curve_hashes_like_an_omitted_one() -> None:
    doc = base_doc()
    doc["vote_weight"] = [list(x) for x in genesis.DEFAULT_VOTE_WEIGHT]
    omitted = base_doc()
    del omitted["vote_weight"]
    assert genesis.from_json(doc).hash == genesis.from_json(omitted).hash


# base_doc()'s hash as computed before genesis documents had `min_fee`: an existing network's genesis file
# (without the field) must keep its hash, which its databases and P2P handshakes are bound to.
LEGACY_HASH = "8e5fa7f8127ecccc95f93ea36efe30c4fd62f139afc9733ffef428dbf4f816b0"


def test_a_genesis_without_min_fee_keeps_its_hash_and_has_no_minimum() -> None:
    g = genesis.from_json(base_doc())
    assert g.hash.hex() == LEGACY_HASH
    assert g.min_fee == 0
    assert "min_fee" not in g.to_json()
    explicit_zero = base_doc() | {"min_fee": "0"}
    assert genesis.from_json(explicit_zero).hash.hex() == LEGACY_HASH


def test_min_fee_is_read_written_and_part_of_the_hash(tmp_path: Path) -> None:
    g = genesis.from_json(base_doc() | {"min_fee": str(genesis.DEFAULT_MIN_FEE)})
    assert g.min_fee == genesis.DEFAULT_MIN_FEE == 10**16
    assert g.to_json()["min_fee"] == str(10**16)
    assert g.hash.hex() != LEGACY_HASH
    genesis.write(tmp_path / "genesis.json", g)
    again = genesis.load(tmp_path / "genesis.json")
    assert again == g and again.hash == g.hash
    assert genesis.from_json(base_doc() | {"min_fee": 10**16}).hash == g.hash  # a JSON integer reads the same


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("min_fee", "1"),
        ("chain_id", 8),
        ("block_reward", "17"),
        ("epoch_length", 11),
        ("genesis_time_ms", 1),
        ("balances", {VOTER.address: "501"}),
        ("protocols", [{"version": 1, "height": 1}]),
    ],
)
def test_hash_changes_with_any_consensus_field(key: str, value: object) -> None:
    doc = base_doc()
    doc[key] = value
    assert genesis.from_json(doc).hash != genesis.from_json(base_doc()).hash


Mutation = Callable[[dict[str, Any]], None]


def _m(fn: Callable[[dict[str, Any]], object]) -> Mutation:
    def apply(doc: dict[str, Any]) -> None:
        fn(doc)

    return apply


ERRORS: list[tuple[str, Mutation, str | None]] = [
    ("unknown-field", _m(lambda d: d.update(extra=1)), "extra"),
    ("missing-chain-id", _m(lambda d: d.pop("chain_id")), "chain_id"),
    ("chain-id-bool", _m(lambda d: d.update(chain_id=True)), "chain_id"),
    ("missing-candidates", _m(lambda d: d.pop("candidates")), "candidates"),
    ("no-candidates", _m(lambda d: d.update(candidates=[])), "candidates"),
    ("active-zero", _m(lambda d: d.update(active_delegates=0)), "active_delegates"),
    ("active-string", _m(lambda d: d.update(active_delegates="3")), "active_delegates"),
    ("interval-too-short", _m(lambda d: d.update(block_interval_ms=50)), "block_interval_ms"),
    ("epoch-zero", _m(lambda d: d.update(epoch_length=0)), "epoch_length"),
    ("reward-negative", _m(lambda d: d.update(block_reward="-1")), "block_reward"),
    ("epoch-reward-float", _m(lambda d: d.update(epoch_reward=1.5)), "epoch_reward"),
    ("time-negative", _m(lambda d: d.update(genesis_time_ms=-1)), "genesis_time_ms"),
    ("curve-empty", _m(lambda d: d.update(vote_weight=[])), "vote_weight"),
    ("curve-not-pairs", _m(lambda d: d.update(vote_weight=[[0]])), "vote_weight[0]"),
    ("curve-not-from-zero", _m(lambda d: d.update(vote_weight=[[1, 10000]])), "vote_weight[0]"),
    ("curve-days-repeat", _m(lambda d: d.update(vote_weight=[[0, 10000], [0, 10500]])), "vote_weight[1]"),
    ("curve-weight-drops", _m(lambda d: d.update(vote_weight=[[0, 10000], [7, 9000]])), "vote_weight[1]"),
    ("curve-days-too-long", _m(lambda d: d.update(vote_weight=[[0, 10000], [2000, 10500]])), "vote_weight[1][0]"),
    ("balances-list", _m(lambda d: d.update(balances=[])), "balances"),
    ("balance-bad-address", _m(lambda d: d.update(balances={"io1nope": "1"})), "balances"),
    ("balance-negative", _m(lambda d: d.update(balances={VOTER.address: "-1"})), f"balances.{VOTER.address}"),
    ("candidate-not-object", _m(lambda d: d["candidates"].__setitem__(0, "cand0")), "candidates[0]"),
    ("candidate-bad-name", _m(lambda d: d["candidates"][0].update(name="Cand0")), "candidates[0].name"),
    ("candidate-name-newline", _m(lambda d: d["candidates"][0].update(name="cand0\n")), "candidates[0].name"),
    ("candidate-dup-name", _m(lambda d: d["candidates"][1].update(name="cand0")), "candidates[1].name"),
    ("candidate-bad-owner", _m(lambda d: d["candidates"][0].update(owner="x")), "candidates[0].owner"),
    ("candidate-dup-owner", _m(lambda d: d["candidates"][1].update(owner=OWNERS[0].address)), "candidates[1].owner"),
    ("candidate-dup-operator", _m(lambda d: d["candidates"][2].update(operator=OPERATORS[0].address)), "candidates[2].operator"),
    ("candidate-no-self-stake", _m(lambda d: d["candidates"][0].pop("self_stake")), "candidates[0].self_stake"),
    ("candidate-typo-field", _m(lambda d: d["candidates"][0].update(duration_day=91)), "candidates[0].duration_day"),
    ("candidate-days-too-long", _m(lambda d: d["candidates"][0].update(duration_days=1051)), "candidates[0].duration_days"),
    ("buckets-not-list", _m(lambda d: d.update(buckets=5)), "buckets"),
    ("bucket-not-object", _m(lambda d: d.update(buckets=[1])), "buckets[0]"),
    ("bucket-unknown-candidate", _m(lambda d: d["buckets"][0].update(candidate="bob")), "buckets[0].candidate"),
    ("bucket-candidate-unhashable", _m(lambda d: d["buckets"][0].update(candidate=["cand1"])), "buckets[0].candidate"),
    ("bucket-zero-amount", _m(lambda d: d["buckets"][0].update(amount="0")), "buckets[0].amount"),
    ("bucket-no-owner", _m(lambda d: d["buckets"][0].pop("owner")), "buckets[0].owner"),
    ("bucket-typo-field", _m(lambda d: d["buckets"][0].update(days=7)), "buckets[0].days"),
    ("protocols-empty", _m(lambda d: d.update(protocols=[])), "protocols"),
    ("protocol-late-start", _m(lambda d: d.update(protocols=[{"version": 1, "height": 2}])), "protocols[0].height"),
    (
        "protocols-descend",
        _m(lambda d: d.update(protocols=[{"version": 2, "height": 1}, {"version": 1, "height": 5}])),
        "protocols[1]",
    ),
    ("protocol-no-version", _m(lambda d: d.update(protocols=[{"height": 1}])), "protocols[0].version"),
    ("protocol-not-object", _m(lambda d: d.update(protocols=[1])), "protocols[0]"),
    ("min-fee-negative", _m(lambda d: d.update(min_fee="-1")), "min_fee"),
    ("min-fee-not-decimal", _m(lambda d: d.update(min_fee="0.01")), "min_fee"),
    ("min-fee-float", _m(lambda d: d.update(min_fee=1e16)), "min_fee"),
    ("min-fee-too-large", _m(lambda d: d.update(min_fee=str(2**128))), "min_fee"),
    ("min-fee-typo", _m(lambda d: d.update(minfee="1")), "minfee"),
]


@pytest.mark.parametrize(("mutate", "field"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_from_json_refuses_and_names_the_field(mutate: Mutation, field: str) -> None:
    doc = copy.deepcopy(base_doc())
    mutate(doc)
    with pytest.raises(InvalidInput) as err:
        genesis.from_json(doc)
    assert err.value.field == field
    assert err.value.reason


@pytest.mark.parametrize("doc", [None, [], "genesis", 1])
def test_from_json_refuses_non_objects(doc: object) -> None:
    with pytest.raises(InvalidInput, match="JSON object"):
        genesis.from_json(doc)


def test_load_turns_every_problem_into_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        genesis.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        genesis.load(tmp_path / "bad.json")
    doc = base_doc()
    doc["buckets"] = "none"
    (tmp_path / "wrong.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="buckets"):
        genesis.load(tmp_path / "wrong.json")


def test_protocol_at_follows_activation_heights() -> None:
    g = genesis.from_json(base_doc())
    assert [g.protocol_at(h) for h in (1, 2, 99, 100, 101, 10**9)] == [1, 1, 1, 2, 2, 2]


def test_epoch_of_and_is_epoch_end() -> None:
    g = genesis.from_json(base_doc())  # epoch_length 10
    assert [g.epoch_of(h) for h in (0, 1, 9, 10, 11, 20, 21)] == [0, 1, 1, 1, 2, 2, 3]
    assert [h for h in range(0, 31) if g.is_epoch_end(h)] == [10, 20, 30]
    for h in range(1, 50):
        assert g.is_epoch_end(h) == (g.epoch_of(h + 1) == g.epoch_of(h) + 1)


def test_epoch_length_one_ends_an_epoch_every_block() -> None:
    doc = base_doc()
    doc["epoch_length"] = 1
    g = genesis.from_json(doc)
    assert [g.epoch_of(h) for h in (1, 2, 3)] == [1, 2, 3]
    assert all(g.is_epoch_end(h) for h in range(1, 10))


def test_weight_bps_follows_the_default_curve() -> None:
    doc = base_doc()
    del doc["vote_weight"]
    g = genesis.from_json(doc)
    assert [g.weight_bps(d) for d in (0, 6, 7, 27, 28, 90, 91, 364, 365, 1050)] == [
        10000,
        10000,
        10500,
        10500,
        12000,
        12000,
        12500,
        12500,
        13000,
        13000,
    ]
    # a bucket locked for 28 days or more weighs more than an unlocked one
    assert g.weight_bps(28) > g.weight_bps(0)
    weights = [g.weight_bps(d) for d in range(0, 1051)]
    assert weights == sorted(weights)  # never decreases with the lock
