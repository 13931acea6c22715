"""The public signing module: every action type builds, signs and parses back through the node's own
parser; bad input is refused with an error naming the field; the chain's parameters are read from a node's
answer or a genesis file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from iotex_node import actions, sdk
from iotex_node import genesis as genesis_mod
from iotex_node.errors import ConfigError

KEY = sdk.PrivateKey(bytes(31) + b"\x07")
OTHER = sdk.PrivateKey(bytes(31) + b"\x08").address
COMMON = {"chain_id": 9, "nonce": 3, "fee": sdk.DEFAULT_MIN_FEE}

# (builder, its fields, the payload the node stores)
BUILDERS: list[tuple[Any, dict[str, Any], dict[str, Any]]] = [
    (sdk.transfer, {"to": OTHER, "amount": 5 * sdk.RAU_PER_IOTX}, {"to": OTHER, "amount": 5 * sdk.RAU_PER_IOTX}),
    (
        sdk.stake_create,
        {"candidate": "alice", "amount": 100, "duration_days": 91},
        {"candidate": "alice", "amount": 100, "duration_days": 91},
    ),
    (sdk.stake_add, {"bucket": 4, "amount": 7}, {"bucket": 4, "amount": 7}),
    (sdk.stake_unstake, {"bucket": 4}, {"bucket": 4}),
    (sdk.stake_vote, {"bucket": 4, "candidate": OTHER}, {"bucket": 4, "candidate": OTHER}),
    (
        sdk.candidate_register,
        {"name": "bob", "operator": OTHER, "self_stake": 10**24, "duration_days": 0},
        {"name": "bob", "operator": OTHER, "self_stake": 10**24, "duration_days": 0},
    ),
    (sdk.rewards_claim, {"amount": 1}, {"amount": 1}),
]


def test_every_action_type_has_a_builder() -> None:
    assert {b.__name__ for b, _, _ in BUILDERS} == set(sdk.ACTION_TYPES)


@pytest.mark.parametrize(("build", "fields", "payload"), BUILDERS, ids=[b.__name__ for b, _, _ in BUILDERS])
def test_each_action_type_signs_and_parses_back_through_the_nodes_parser(
    build: Any, fields: dict[str, Any], payload: dict[str, Any]
) -> None:
    action = build(KEY, **COMMON, **fields)
    wire = json.loads(json.dumps(action.to_wire()))  # as it travels
    back = actions.parse(wire)  # the node's own parser, signature verified
    assert back.type == build.__name__ and back.sender == KEY.address
    assert (back.chain_id, back.nonce, back.fee) == (9, 3, sdk.DEFAULT_MIN_FEE)
    assert back.payload == payload
    assert back.hash == action.hash and sdk.action_hash(wire) == action.hash_hex
    assert sdk.parse(wire).hash_hex == action.hash_hex
    # the generic builder makes the very same action
    assert sdk.sign(KEY, **COMMON, type=build.__name__, payload=fields).signature == action.signature


@pytest.mark.parametrize(
    ("build", "fields", "field"),
    [
        (sdk.transfer, {"to": "io1notanaddress", "amount": 1}, "payload.to"),
        (sdk.transfer, {"to": OTHER, "amount": -1}, "payload.amount"),
        (sdk.transfer, {"to": OTHER, "amount": 0}, "payload.amount"),
        (sdk.transfer, {"to": OTHER, "amount": True}, "payload.amount"),
        (sdk.transfer, {"to": OTHER, "amount": sdk.MAX_AMOUNT + 1}, "payload.amount"),
        (sdk.stake_create, {"candidate": "Alice", "amount": 1, "duration_days": 1}, "payload.candidate"),
        (sdk.stake_create, {"candidate": "alice", "amount": 1, "duration_days": sdk.MAX_STAKE_DAYS + 1}, "payload.duration_days"),
        (sdk.stake_add, {"bucket": -1, "amount": 1}, "payload.bucket"),
        (sdk.stake_unstake, {"bucket": "4"}, "payload.bucket"),
        (sdk.stake_vote, {"bucket": 1, "candidate": ""}, "payload.candidate"),
        (sdk.candidate_register, {"name": "io1x", "operator": OTHER, "self_stake": 1, "duration_days": 0}, "payload.name"),
        (sdk.candidate_register, {"name": "bob", "operator": "me", "self_stake": 1, "duration_days": 0}, "payload.operator"),
        (sdk.rewards_claim, {"amount": "1.5"}, "payload.amount"),
    ],
)
def test_a_bad_payload_field_is_named(build: Any, fields: dict[str, Any], field: str) -> None:
    with pytest.raises(sdk.InvalidAction) as err:
        build(KEY, **COMMON, **fields)
    assert err.value.field == field
    assert str(err.value).startswith(field + ": ")


@pytest.mark.parametrize(
    ("common", "field"),
    [
        ({"chain_id": -1, "nonce": 1, "fee": 1}, "chain_id"),
        ({"chain_id": 9, "nonce": 0, "fee": 1}, "nonce"),
        ({"chain_id": 9, "nonce": sdk.MAX_NONCE + 1, "fee": 1}, "nonce"),
        ({"chain_id": 9, "nonce": 1, "fee": -5}, "fee"),
        ({"chain_id": 9, "nonce": 1, "fee": 0.5}, "fee"),
    ],
)
def test_a_bad_envelope_field_is_named(common: dict[str, Any], field: str) -> None:
    with pytest.raises(sdk.InvalidAction) as err:
        sdk.transfer(KEY, **common, to=OTHER, amount=1)
    assert err.value.field == field


def test_the_generic_builder_names_a_bad_type_a_bad_key_and_extra_or_missing_fields() -> None:
    with pytest.raises(sdk.InvalidAction) as err:
        sdk.sign(KEY, **COMMON, type="mint", payload={})
    assert err.value.field == "type" and "transfer" in str(err.value)
    with pytest.raises(sdk.InvalidAction) as err:
        sdk.sign(KEY.secret().hex(), **COMMON, type="transfer", payload={"to": OTHER, "amount": 1})  # type: ignore[arg-type]
    assert err.value.field == "key" and "str" in str(err.value)
    assert KEY.secret().hex() not in str(err.value)
    with pytest.raises(sdk.InvalidAction) as err:
        sdk.sign(KEY, **COMMON, type="transfer", payload={"to": OTHER, "amount": 1, "note": "x"})
    assert err.value.field == "payload.note"
    with pytest.raises(sdk.InvalidAction) as err:
        sdk.sign(KEY, **COMMON, type="transfer", payload={"to": OTHER})
    assert err.value.field == "payload.amount"


def test_parse_refuses_a_tampered_action_naming_the_signature() -> None:
    wire = sdk.transfer(KEY, **COMMON, to=OTHER, amount=1).to_wire()
    wire["payload"]["amount"] = "2"
    with pytest.raises(sdk.InvalidAction) as err:
        sdk.parse(wire)
    assert err.value.field == "signature"
    assert sdk.parse(wire, verify=False).payload["amount"] == 2
    sdk.check(wire)  # the form is fine


def test_chain_params_from_a_nodes_answer() -> None:
    assert sdk.ChainParams.from_chain_info({"chain_id": 9, "min_fee": "30000000000000000"}) == sdk.ChainParams(9, 3 * 10**16)
    # a node from before `min_fee`: the default genesis minimum
    assert sdk.ChainParams.from_chain_info({"chain_id": 9}).min_fee == sdk.DEFAULT_MIN_FEE
    assert sdk.ChainParams.from_chain_info({"chain_id": 9, "min_fee": "0"}).min_fee == 1  # never a free action
    with pytest.raises(sdk.InvalidAction) as err:
        sdk.ChainParams.from_chain_info({"chain_id": "9"})
    assert err.value.field == "chain.chain_id"
    with pytest.raises(sdk.InvalidAction) as err:
        sdk.ChainParams.from_chain_info({"chain_id": 9, "min_fee": "lots"})
    assert err.value.field == "chain.min_fee"


def test_chain_params_from_a_genesis_file(tmp_path: Path) -> None:
    from iotex_node.testing import one_delegate_genesis

    delegate, owner = sdk.PrivateKey(), sdk.PrivateKey()
    genesis_mod.write(tmp_path / "genesis.json", one_delegate_genesis(delegate, owner, chain_id=31, min_fee=5))
    assert sdk.ChainParams.from_genesis(tmp_path / "genesis.json") == sdk.ChainParams(31, 5)
    assert sdk.ChainParams.from_testnet(tmp_path) == sdk.ChainParams(31, 5)
    genesis_mod.write(tmp_path / "genesis.json", one_delegate_genesis(delegate, owner, chain_id=31))
    assert sdk.ChainParams.from_genesis(tmp_path / "genesis.json").min_fee == 1  # no minimum: 1, the lowest admitted
    with pytest.raises(ConfigError, match=r"no genesis\.json"):
        sdk.ChainParams.from_testnet(tmp_path / "nowhere")
