"""Signed actions: their wire form, strict validation and signing.

Wire form (JSON object, no other fields allowed):
    {"chain_id": 1, "nonce": 1, "fee": "10", "sender": "io1...", "type": "transfer",
     "payload": {"to": "io1...", "amount": "100"}, "signature": "<65 bytes hex>"}
The action hash is sha256 of the canonical encoding of every field but `signature`; the signature is a
recoverable secp256k1 signature over that hash, and must recover to `sender`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from iotex_node import codec
from iotex_node.constants import CANDIDATE_NAME_MAX, MAX_AMOUNT, MAX_NONCE, MAX_STAKE_DAYS
from iotex_node.crypto.keys import PrivateKey, recover_address, valid_address
from iotex_node.errors import InvalidAction

_AMOUNT_RE = re.compile(r"^(0|[1-9][0-9]{0,38})$")
_NAME_RE = re.compile(rf"^[a-z0-9]{{1,{CANDIDATE_NAME_MAX}}}$")
_TOP_FIELDS = frozenset({"chain_id", "nonce", "fee", "sender", "type", "payload", "signature"})


def parse_amount(value: object, field: str, *, positive: bool = True) -> int:
    """An amount is a decimal string (JSON numbers lose precision past 2**53 in many clients)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidAction("must be a decimal string of the smallest unit", field)
    text = str(value)
    if text.startswith("-"):
        raise InvalidAction("must not be negative", field)
    if not _AMOUNT_RE.match(text):
        raise InvalidAction(f"{text[:40]!r} is not a decimal integer", field)
    amount = int(text)
    if amount > MAX_AMOUNT:
        raise InvalidAction(f"exceeds the maximum amount {MAX_AMOUNT}", field)
    if positive and amount == 0:
        raise InvalidAction("must be greater than zero", field)
    return amount


def parse_uint(value: object, field: str, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidAction("must be a non-negative integer", field)
    if value < 0:
        raise InvalidAction("must not be negative", field)
    if value > maximum:
        raise InvalidAction(f"must be at most {maximum}", field)
    return value


def _address(value: object, field: str) -> str:
    if not valid_address(value):
        raise InvalidAction("is not a valid io1... address", field)
    assert isinstance(value, str)
    return value


def valid_candidate_name(value: object) -> bool:
    return isinstance(value, str) and _NAME_RE.match(value) is not None


def _name(value: object, field: str) -> str:
    if not valid_candidate_name(value):
        raise InvalidAction(f"must be 1-{CANDIDATE_NAME_MAX} lowercase letters or digits", field)
    assert isinstance(value, str)
    return value


def _candidate_ref(value: object, field: str) -> str:
    """A candidate is named by its registered name or its owner address."""
    if isinstance(value, str) and value.startswith("io1"):
        return _address(value, field)
    return _name(value, field)


def _bool(value: object, field: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidAction("must be true or false", field)
    return value


_Parser = Callable[[object, str], Any]
# type -> {field: parser}; every field is required, none other is allowed.
PAYLOADS: dict[str, dict[str, _Parser]] = {
    "transfer": {"to": _address, "amount": parse_amount},
    "stake_create": {
        "candidate": _candidate_ref,
        "amount": parse_amount,
        "duration_days": lambda v, f: parse_uint(v, f, MAX_STAKE_DAYS),
    },
    "stake_add": {"bucket": lambda v, f: parse_uint(v, f, MAX_NONCE), "amount": parse_amount},
    "stake_unstake": {"bucket": lambda v, f: parse_uint(v, f, MAX_NONCE)},
    "stake_vote": {"bucket": lambda v, f: parse_uint(v, f, MAX_NONCE), "candidate": _candidate_ref},
    "candidate_register": {
        "name": _name,
        "operator": _address,
        "self_stake": parse_amount,
        "duration_days": lambda v, f: parse_uint(v, f, MAX_STAKE_DAYS),
    },
    "rewards_claim": {"amount": parse_amount},
}
ACTION_TYPES = tuple(PAYLOADS)


@dataclass(frozen=True, slots=True)
class Action:
    chain_id: int
    nonce: int
    fee: int
    sender: str
    type: str
    payload: dict[str, Any]
    signature: bytes
    hash: bytes

    def core(self) -> dict[str, Any]:
        return _core(self.chain_id, self.nonce, self.fee, self.sender, self.type, self.payload)

    def to_wire(self) -> dict[str, Any]:
        wire = self.core()
        wire["signature"] = self.signature.hex()
        return wire

    @property
    def hash_hex(self) -> str:
        return self.hash.hex()


def _wire_payload(payload: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (str(v) if isinstance(v, int) and not isinstance(v, bool) and k in ("amount", "self_stake") else v)
        for k, v in payload.items()
    }


def _core(chain_id: int, nonce: int, fee: int, sender: str, type_: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "chain_id": chain_id,
        "nonce": nonce,
        "fee": str(fee),
        "sender": sender,
        "type": type_,
        "payload": _wire_payload(payload),
    }


def parse(wire: object, *, verify: bool = True) -> Action:
    """Validate a wire action strictly; raise InvalidAction naming the first bad field."""
    if not isinstance(wire, dict):
        raise InvalidAction("an action must be a JSON object")
    unknown = set(wire) - _TOP_FIELDS
    if unknown:
        raise InvalidAction(f"unknown field(s): {', '.join(sorted(map(str, unknown)))[:200]}")
    missing = _TOP_FIELDS - set(wire)
    if missing:
        raise InvalidAction(f"missing field(s): {', '.join(sorted(missing))}")
    chain_id = parse_uint(wire["chain_id"], "chain_id", 2**32 - 1)
    nonce = parse_uint(wire["nonce"], "nonce", MAX_NONCE)
    if nonce == 0:
        raise InvalidAction("must be at least 1", "nonce")
    fee = parse_amount(wire["fee"], "fee", positive=False)
    sender = _address(wire["sender"], "sender")
    type_ = wire["type"]
    if not isinstance(type_, str) or type_ not in PAYLOADS:
        raise InvalidAction(f"must be one of {', '.join(ACTION_TYPES)}", "type")
    raw_payload = wire["payload"]
    if not isinstance(raw_payload, dict):
        raise InvalidAction("must be an object", "payload")
    spec = PAYLOADS[type_]
    unknown = set(raw_payload) - set(spec)
    if unknown:
        raise InvalidAction(f"unknown field(s) for {type_}: {', '.join(sorted(map(str, unknown)))[:200]}", "payload")
    payload: dict[str, Any] = {}
    for name, parser in spec.items():
        if name not in raw_payload:
            raise InvalidAction(f"missing for {type_}", f"payload.{name}")
        payload[name] = parser(raw_payload[name], f"payload.{name}")
    sig_hex = wire["signature"]
    if not isinstance(sig_hex, str) or len(sig_hex) != 130:
        raise InvalidAction("must be 65 bytes of hex", "signature")
    try:
        signature = bytes.fromhex(sig_hex)
    except ValueError:
        raise InvalidAction("is not hex", "signature") from None
    h = codec.digest(_core(chain_id, nonce, fee, sender, type_, payload))
    if verify:
        signer = recover_address(signature, h)
        if signer is None:
            raise InvalidAction("is not a valid secp256k1 signature", "signature")
        if signer != sender:
            raise InvalidAction("was not made by the sender's key", "signature")
    return Action(chain_id, nonce, fee, sender, type_, payload, signature, h)


def sign(key: PrivateKey, *, chain_id: int, nonce: int, fee: int, type: str, payload: dict[str, Any]) -> Action:
    """Build and sign an action (the client side). Payload values are validated like incoming ones."""
    if type not in PAYLOADS:
        raise InvalidAction(f"must be one of {', '.join(ACTION_TYPES)}", "type")
    checked = {name: parser(payload[name], f"payload.{name}") for name, parser in PAYLOADS[type].items()}
    h = codec.digest(_core(chain_id, nonce, fee, key.address, type, checked))
    return Action(chain_id, nonce, fee, key.address, type, checked, key.sign(h), h)
