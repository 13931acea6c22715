"""Signed actions: strict parsing of the wire form, signing, and hashing."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iotex_node import actions, codec
from iotex_node.constants import MAX_AMOUNT, MAX_NONCE, MAX_STAKE_DAYS
from iotex_node.crypto.keys import PrivateKey
from iotex_node.errors import InvalidAction
from tests.tiers import examples

KEY = PrivateKey(hashlib.sha256(b"actions-sender").digest())
OTHER = PrivateKey(hashlib.sha256(b"actions-other").digest())

PAYLOADS: dict[str, dict[str, Any]] = {
    "transfer": {"to": OTHER.address, "amount": 100},
    "stake_create": {"candidate": "alice", "amount": 10**20, "duration_days": 91},
    "stake_add": {"bucket": 3, "amount": 5},
    "stake_unstake": {"bucket": 3},
    "stake_vote": {"bucket": 3, "candidate": OTHER.address},
    "candidate_register": {"name": "alice", "operator": OTHER.address, "self_stake": 10, "duration_days": 0},
    "rewards_claim": {"amount": 1},
}


def _sign(key: PrivateKey = KEY, type_: str = "transfer", **kw: Any) -> actions.Action:
    params: dict[str, Any] = {"chain_id": 1, "nonce": 1, "fee": 10, "type": type_, "payload": PAYLOADS[type_]}
    params.update(kw)
    return actions.sign(key, **params)


def _wire(type_: str = "transfer") -> dict[str, Any]:
    return _sign(type_=type_).to_wire()


def test_every_action_type_has_a_sample() -> None:
    assert set(PAYLOADS) == set(actions.ACTION_TYPES)


@pytest.mark.parametrize("type_", actions.ACTION_TYPES)
def test_sign_then_parse_round_trips(type_: str) -> None:
    a = _sign(type_=type_)
    assert actions.parse(a.to_wire()) == a
    # and through the bytes that travel
    assert actions.parse(codec.loads(codec.dumps(a.to_wire()))) == a
    assert a.sender == KEY.address
    assert a.hash == codec.digest(a.core())


def test_wire_amounts_are_decimal_strings() -> None:
    w = _wire()
    assert w["fee"] == "10"
    assert w["payload"]["amount"] == "100"
    assert len(w["signature"]) == 130


def test_hash_excludes_the_signature() -> None:
    a = _sign()
    w = a.to_wire()
    w["signature"] = "11" * 65
    unverified = actions.parse(w, verify=False)
    assert unverified.hash == a.hash
    assert unverified.signature != a.signature


def test_hash_covers_every_signed_field() -> None:
    base = _sign()
    variants = [
        _sign(chain_id=2),
        _sign(nonce=2),
        _sign(fee=11),
        _sign(payload={"to": OTHER.address, "amount": 101}),
        _sign(payload={"to": KEY.address, "amount": 100}),
        _sign(type_="rewards_claim", payload={"amount": 100}),
    ]
    assert len({base.hash, *(v.hash for v in variants)}) == len(variants) + 1


def test_same_action_from_different_senders_has_different_hashes() -> None:
    assert _sign(KEY).hash != _sign(OTHER).hash


def test_int_and_string_amounts_hash_the_same() -> None:
    w = _wire()
    w2 = copy.deepcopy(w)
    w2["payload"]["amount"] = 100
    w2["fee"] = 10
    assert actions.parse(w2).hash == actions.parse(w).hash


# --- strictness: each refusal names the field ------------------------------------------------------

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    def apply(w: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = w
        for p in parents:
            target = target[p]
        target[last] = value

    return apply


def _delete(path: str) -> Mutation:
    def apply(w: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = w
        for p in parents:
            target = target[p]
        del target[last]

    return apply


CASES: list[tuple[str, str, Mutation, str]] = [
    # (id, action type, mutation, field named by the error)
    ("unknown-top-level", "transfer", _set("memo", "hi"), "memo"),
    ("missing-fee", "transfer", _delete("fee"), "fee"),
    ("missing-signature", "transfer", _delete("signature"), "signature"),
    ("unknown-payload-field", "transfer", _set("payload.note", "hi"), "payload.note"),
    ("memo-with-a-line-break", "transfer", _set("payload.memo", "a\nb"), "payload.memo"),
    ("memo-too-long", "transfer", _set("payload.memo", "x" * 257), "payload.memo"),
    ("memo-not-ascii", "transfer", _set("payload.memo", "caf\u00e9"), "payload.memo"),
    ("memo-on-a-claim", "rewards_claim", _set("payload.memo", "hi"), "payload.memo"),
    ("missing-payload-field", "transfer", _delete("payload.amount"), "payload.amount"),
    ("negative-amount", "transfer", _set("payload.amount", "-5"), "payload.amount"),
    ("negative-int-amount", "transfer", _set("payload.amount", -5), "payload.amount"),
    ("negative-fee", "transfer", _set("fee", "-1"), "fee"),
    ("amount-over-max", "transfer", _set("payload.amount", str(MAX_AMOUNT + 1)), "payload.amount"),
    ("int-amount-over-max", "transfer", _set("payload.amount", MAX_AMOUNT + 1), "payload.amount"),
    ("amount-40-digits", "transfer", _set("payload.amount", "1" * 40), "payload.amount"),
    ("amount-huge-int", "transfer", _set("payload.amount", 10**5000), "payload.amount"),
    ("zero-amount", "transfer", _set("payload.amount", "0"), "payload.amount"),
    ("amount-leading-zero", "transfer", _set("payload.amount", "0100"), "payload.amount"),
    ("amount-exponent", "transfer", _set("payload.amount", "1e5"), "payload.amount"),
    ("amount-hex", "transfer", _set("payload.amount", "0x10"), "payload.amount"),
    ("amount-space", "transfer", _set("payload.amount", " 100"), "payload.amount"),
    ("amount-trailing-newline", "transfer", _set("payload.amount", "100\n"), "payload.amount"),
    ("amount-plus", "transfer", _set("payload.amount", "+100"), "payload.amount"),
    ("amount-empty", "transfer", _set("payload.amount", ""), "payload.amount"),
    ("amount-float", "transfer", _set("payload.amount", 100.0), "payload.amount"),
    ("amount-bool", "transfer", _set("payload.amount", True), "payload.amount"),
    ("amount-unicode-digits", "transfer", _set("payload.amount", "١٢٣"), "payload.amount"),
    ("fee-bool", "transfer", _set("fee", False), "fee"),
    ("chain-id-bool", "transfer", _set("chain_id", True), "chain_id"),
    ("chain-id-string", "transfer", _set("chain_id", "1"), "chain_id"),
    ("chain-id-too-big", "transfer", _set("chain_id", 2**32), "chain_id"),
    ("nonce-zero", "transfer", _set("nonce", 0), "nonce"),
    ("nonce-negative", "transfer", _set("nonce", -1), "nonce"),
    ("nonce-bool", "transfer", _set("nonce", True), "nonce"),
    ("nonce-string", "transfer", _set("nonce", "1"), "nonce"),
    ("nonce-float", "transfer", _set("nonce", 1.0), "nonce"),
    ("nonce-overflow", "transfer", _set("nonce", MAX_NONCE + 1), "nonce"),
    ("sender-not-address", "transfer", _set("sender", "io1notanaddress"), "sender"),
    ("sender-uppercase", "transfer", _set("sender", KEY.address.upper()), "sender"),
    ("sender-none", "transfer", _set("sender", None), "sender"),
    ("type-unknown", "transfer", _set("type", "mint"), "type"),
    ("type-not-string", "transfer", _set("type", ["transfer"]), "type"),
    ("payload-not-object", "transfer", _set("payload", ["x"]), "payload"),
    ("to-not-address", "transfer", _set("payload.to", "alice"), "payload.to"),
    ("duration-too-long", "stake_create", _set("payload.duration_days", MAX_STAKE_DAYS + 1), "payload.duration_days"),
    ("duration-bool", "stake_create", _set("payload.duration_days", True), "payload.duration_days"),
    ("duration-string", "stake_create", _set("payload.duration_days", "7"), "payload.duration_days"),
    ("candidate-bad-address", "stake_create", _set("payload.candidate", "io1xyz"), "payload.candidate"),
    ("candidate-uppercase-name", "stake_create", _set("payload.candidate", "Alice"), "payload.candidate"),
    ("bucket-negative", "stake_add", _set("payload.bucket", -1), "payload.bucket"),
    ("bucket-bool", "stake_unstake", _set("payload.bucket", False), "payload.bucket"),
    ("bucket-string", "stake_vote", _set("payload.bucket", "3"), "payload.bucket"),
    ("name-uppercase", "candidate_register", _set("payload.name", "Alice"), "payload.name"),
    ("name-too-long", "candidate_register", _set("payload.name", "a" * 13), "payload.name"),
    ("name-empty", "candidate_register", _set("payload.name", ""), "payload.name"),
    ("name-trailing-newline", "candidate_register", _set("payload.name", "alice\n"), "payload.name"),
    ("name-looks-like-address", "candidate_register", _set("payload.name", "io1alice"), "payload.name"),
    ("self-stake-zero", "candidate_register", _set("payload.self_stake", "0"), "payload.self_stake"),
    ("operator-missing", "candidate_register", _delete("payload.operator"), "payload.operator"),
    ("claim-zero", "rewards_claim", _set("payload.amount", 0), "payload.amount"),
    ("signature-not-hex", "transfer", _set("signature", "zz" * 65), "signature"),
    ("signature-short", "transfer", _set("signature", "ab" * 64), "signature"),
    ("signature-long", "transfer", _set("signature", "ab" * 66), "signature"),
    ("signature-with-spaces", "transfer", _set("signature", "ab " * 43 + "a"), "signature"),
    ("signature-not-string", "transfer", _set("signature", 5), "signature"),
    ("signature-all-zero", "transfer", _set("signature", "00" * 65), "signature"),
    ("signature-over-other-content", "transfer", _set("payload.amount", "101"), "signature"),
]


@pytest.mark.parametrize(("type_", "mutate", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_parse_refuses_and_names_the_field(type_: str, mutate: Mutation, field: str) -> None:
    w = _wire(type_)
    mutate(w)
    with pytest.raises(InvalidAction) as err:
        actions.parse(w)
    assert err.value.field == field
    assert str(err.value).startswith(f"{field}: ")
    assert err.value.reason


def test_parse_refuses_a_signature_by_another_key() -> None:
    w = _sign(OTHER).to_wire()
    w["sender"] = KEY.address  # signed by OTHER, claims to be from KEY
    with pytest.raises(InvalidAction, match="not made by the sender") as err:
        actions.parse(w)
    assert err.value.field == "signature"


def test_parse_without_verify_still_checks_the_signature_format() -> None:
    w = _wire()
    w["signature"] = "xy" * 65
    with pytest.raises(InvalidAction) as err:
        actions.parse(w, verify=False)
    assert err.value.field == "signature"


@pytest.mark.parametrize("wire", [None, [], "action", 5, [("chain_id", 1)]])
def test_parse_refuses_non_objects(wire: object) -> None:
    with pytest.raises(InvalidAction, match="JSON object"):
        actions.parse(wire)


def test_amount_boundaries() -> None:
    assert actions.parse_amount(str(MAX_AMOUNT), "f") == MAX_AMOUNT
    assert actions.parse_amount(MAX_AMOUNT, "f") == MAX_AMOUNT
    assert actions.parse_amount("0", "f", positive=False) == 0
    assert actions.parse_uint(MAX_NONCE, "n", MAX_NONCE) == MAX_NONCE


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"nonce": 0}, "nonce"),
        ({"fee": -1}, "fee"),
        ({"chain_id": -1}, "chain_id"),
        ({"type": "mint"}, "type"),
        ({"payload": {"to": OTHER.address}}, "payload.amount"),
        ({"payload": {"to": OTHER.address, "amount": 1, "memo": "x\ty"}}, "payload.memo"),
    ],
)
def test_sign_refuses_what_parse_would_refuse(kw: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidAction) as err:
        _sign(**kw)
    assert err.value.field == field


# --- fuzzing: parse raises InvalidAction and nothing else ------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
top_keys = st.sampled_from(sorted(actions._TOP_FIELDS)) | st.text(max_size=8)


def _parse_only_invalid_action(wire: object) -> None:
    try:
        actions.parse(wire)
    except InvalidAction as exc:
        assert exc.reason
    # any other exception fails the test


@examples(50, 300)
def test_fuzz_parse_of_arbitrary_json(examples: int) -> None:
    @settings(max_examples=examples, deadline=None)
    @given(json_values)
    def check(wire: object) -> None:
        _parse_only_invalid_action(wire)

    check()


@examples(50, 300)
def test_fuzz_parse_with_one_top_level_field_replaced(examples: int) -> None:
    @settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.sampled_from(actions.ACTION_TYPES), top_keys, json_values, st.booleans())
    def check(type_: str, key: str, value: object, delete: bool) -> None:
        w = _wire(type_)
        if delete:
            w.pop(key, None)
        else:
            w[key] = value
        _parse_only_invalid_action(w)

    check()


@examples(50, 300)
def test_fuzz_parse_with_one_payload_field_replaced(examples: int) -> None:
    @settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.sampled_from(actions.ACTION_TYPES), st.data(), json_values)
    def check(type_: str, data: st.DataObject, value: object) -> None:
        w = _wire(type_)
        key = data.draw(st.sampled_from(sorted(w["payload"])) | st.text(max_size=8))
        w["payload"][key] = value
        _parse_only_invalid_action(w)

    check()


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(actions.ACTION_TYPES),
    st.integers(min_value=1, max_value=MAX_NONCE),
    st.integers(min_value=0, max_value=MAX_AMOUNT),
    st.integers(min_value=0, max_value=2**32 - 1),
)
def test_fuzz_any_valid_action_round_trips(type_: str, nonce: int, fee: int, chain_id: int) -> None:
    a = _sign(type_=type_, nonce=nonce, fee=fee, chain_id=chain_id)
    assert actions.parse(codec.loads(codec.dumps(a.to_wire()))) == a


def test_a_transfer_memo_is_signed_and_kept_and_no_memo_hashes_as_before() -> None:
    key = PrivateKey()
    to = PrivateKey().address
    plain = actions.sign(key, chain_id=1, nonce=1, fee=1, type="transfer", payload={"to": to, "amount": 5})
    memo = actions.sign(key, chain_id=1, nonce=1, fee=1, type="transfer", payload={"to": to, "amount": 5, "memo": "x"})
    assert "memo" not in plain.to_wire()["payload"] and actions.parse(plain.to_wire()).hash == plain.hash
    back = actions.parse(memo.to_wire())
    assert back.payload["memo"] == "x" and back.hash == memo.hash != plain.hash
