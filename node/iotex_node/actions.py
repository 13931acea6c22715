"""Signed actions: their wire form, strict validation and signing.

Wire form (JSON object, no other fields allowed):
    {"chain_id": 1, "nonce": 1, "fee": "10", "sender": "io1...", "type": "transfer",
     "payload": {"to": "io1...", "amount": "100"}, "signature": "<65 bytes hex>"}
The action hash is sha256 of the canonical encoding of every field but `signature`; the signature is a
recoverable secp256k1 signature over that hash, and must recover to `sender`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from iotex_node import codec
from iotex_node.constants import CANDIDATE_NAME_MAX, MAX_AMOUNT, MAX_NONCE, MAX_STAKE_DAYS
from iotex_node.crypto.keys import PrivateKey, recover_address, valid_address
from iotex_node.errors import InvalidAction

# Matched with fullmatch: `$` alone also matches before a trailing newline ("alice\n" would pass).
_AMOUNT_RE = re.compile(r"0|[1-9][0-9]{0,38}")
_NAME_RE = re.compile(rf"[a-z0-9]{{1,{CANDIDATE_NAME_MAX}}}")
_HEX_RE = re.compile(r"[0-9a-fA-F]*")
_TOP_FIELDS = frozenset({"chain_id", "nonce", "fee", "sender", "type", "payload", "signature"})


_MAX_AMOUNT_TEXT = f"2^{MAX_AMOUNT.bit_length()}-1 ({MAX_AMOUNT})"
# orjson reads a JSON integer past 64 bits as a float: such a number can no longer be an exact amount.
_JSON_INT_LIMIT = 2**64


def _quoted(text: str, limit: int = 40) -> str:
    """`text` for a message: whole when short, else its start and its length (never a shortened number alone)."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def parse_amount(value: object, field: str, *, positive: bool = True) -> int:
    """An amount is a decimal string (JSON numbers lose precision past 2**53 in many clients)."""
    if isinstance(value, float) and math.isfinite(value):
        if value < 0:
            raise InvalidAction("must not be negative", field)
        if value.is_integer() and value >= _JSON_INT_LIMIT:
            raise InvalidAction("is a JSON number too large to be exact: send amounts as decimal strings", field)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidAction("must be a decimal string of the smallest unit", field)
    if isinstance(value, int):
        # Range-check before str(): a huge int cannot even be converted (ValueError past 4300 digits).
        if value < 0:
            raise InvalidAction("must not be negative", field)
        if value > MAX_AMOUNT:
            raise InvalidAction(f"exceeds the maximum amount {_MAX_AMOUNT_TEXT}", field)
    text = str(value)
    if text.startswith("-"):
        raise InvalidAction("must not be negative", field)
    if not _AMOUNT_RE.fullmatch(text):
        if text.isascii() and text.isdigit() and not text.startswith("0"):
            # Digits only, but more of them than any amount has: say so, without quoting a cut-off number.
            raise InvalidAction(f"exceeds the maximum amount {_MAX_AMOUNT_TEXT}: it has {len(text)} digits", field)
        raise InvalidAction(f"{_quoted(text)} is not a decimal integer (digits only, no sign or leading zero)", field)
    amount = int(text)
    if amount > MAX_AMOUNT:
        raise InvalidAction(f"exceeds the maximum amount {_MAX_AMOUNT_TEXT}", field)
    if positive and amount == 0:
        raise InvalidAction("must be greater than zero", field)
    return amount


def parse_uint(value: object, field: str, maximum: int) -> int:
    if isinstance(value, float) and value.is_integer() and abs(value) >= _JSON_INT_LIMIT:
        # orjson reads a JSON integer past 64 bits as a float
        raise InvalidAction(f"must be at most {maximum}" if value > 0 else "must not be negative", field)
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
    # A name starting with "io1" would be read as an owner address wherever a candidate is referenced.
    return isinstance(value, str) and _NAME_RE.fullmatch(value) is not None and not value.startswith("io1")


def _name(value: object, field: str) -> str:
    if not valid_candidate_name(value):
        raise InvalidAction(f"must be 1-{CANDIDATE_NAME_MAX} lowercase letters or digits, not starting with io1", field)
    assert isinstance(value, str)
    return value


def _candidate_ref(value: object, field: str) -> str:
    """A candidate is named by its registered name or its owner address."""
    if isinstance(value, str) and value.startswith("io1"):
        return _address(value, field)
    return _name(value, field)


# A transfer's memo (what a payout says it is for): printable ASCII, short enough to keep actions small.
# ASCII only, so that a memo reads the same in every terminal and log and its limit is one number.
MEMO_MAX_BYTES = 256
_MEMO_RE = re.compile(rf"[\x20-\x7e]{{0,{MEMO_MAX_BYTES}}}")


def _memo(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidAction("must be a string", field)
    if not _MEMO_RE.fullmatch(value):
        raise InvalidAction(f"must be at most {MEMO_MAX_BYTES} characters of printable ASCII", field)
    return value


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
# Fields a payload may leave out. An action without them hashes exactly as before they existed, so every
# action signed before the memo keeps its hash; a node from before the memo refuses a transfer that has one.
OPTIONAL_PAYLOADS: dict[str, dict[str, _Parser]] = {"transfer": {"memo": _memo}}


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


def _parse_payload(type_: str, raw_payload: dict[Any, Any]) -> dict[str, Any]:
    spec = PAYLOADS[type_]
    optional = OPTIONAL_PAYLOADS.get(type_, {})
    unknown = sorted(map(str, set(raw_payload) - set(spec) - set(optional)))
    if unknown:
        raise InvalidAction(f"unknown field(s) for {type_}: {', '.join(unknown)[:200]}", f"payload.{unknown[0][:100]}")
    payload: dict[str, Any] = {}
    for name, parser in spec.items():
        if name not in raw_payload:
            raise InvalidAction(f"missing for {type_}", f"payload.{name}")
        payload[name] = parser(raw_payload[name], f"payload.{name}")
    for name, parser in optional.items():
        if name in raw_payload:
            payload[name] = parser(raw_payload[name], f"payload.{name}")
    return payload


def _checked(wire: object) -> tuple[int, int, int, str, str, dict[str, Any], bytes]:
    """Every field of a wire action, validated; raise InvalidAction naming the first bad field."""
    if not isinstance(wire, dict):
        raise InvalidAction("an action must be a JSON object")
    unknown = sorted(map(str, set(wire) - _TOP_FIELDS))
    if unknown:
        raise InvalidAction(f"unknown field(s): {', '.join(unknown)[:200]}", unknown[0][:100])
    missing = sorted(_TOP_FIELDS - set(wire))
    if missing:
        raise InvalidAction(f"missing field(s): {', '.join(missing)}", missing[0])
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
    payload = _parse_payload(type_, raw_payload)
    sig_hex = wire["signature"]
    if not isinstance(sig_hex, str) or len(sig_hex) != 130:
        raise InvalidAction("must be 65 bytes of hex", "signature")
    # bytes.fromhex skips whitespace, so a 130-character string could hold fewer than 65 bytes.
    if not _HEX_RE.fullmatch(sig_hex):
        raise InvalidAction("is not hex", "signature")
    return chain_id, nonce, fee, sender, type_, payload, bytes.fromhex(sig_hex)


def check(wire: object) -> None:
    """Validate a wire action's form (every field, type and range) as parse() does, without hashing it or
    verifying its signature; raise InvalidAction naming the first bad field."""
    _checked(wire)


def parse(wire: object, *, verify: bool = True) -> Action:
    """Validate a wire action strictly; raise InvalidAction naming the first bad field."""
    chain_id, nonce, fee, sender, type_, payload, signature = _checked(wire)
    h = codec.digest(_core(chain_id, nonce, fee, sender, type_, payload))
    if verify:
        signer = recover_address(signature, h)
        if signer is None:
            raise InvalidAction("is not a valid secp256k1 signature", "signature")
        if signer != sender:
            raise InvalidAction("was not made by the sender's key", "signature")
    return Action(chain_id, nonce, fee, sender, type_, payload, signature, h)


def sign(key: PrivateKey, *, chain_id: int, nonce: int, fee: int, type: str, payload: dict[str, Any]) -> Action:
    """Build and sign an action (the client side), validated like an incoming one: sign() never makes an
    action that parse() would refuse."""
    chain_id = parse_uint(chain_id, "chain_id", 2**32 - 1)
    nonce = parse_uint(nonce, "nonce", MAX_NONCE)
    if nonce == 0:
        raise InvalidAction("must be at least 1", "nonce")
    fee = parse_amount(fee, "fee", positive=False)
    if type not in PAYLOADS:
        raise InvalidAction(f"must be one of {', '.join(ACTION_TYPES)}", "type")
    if not isinstance(payload, dict):
        raise InvalidAction("must be an object", "payload")
    checked = _parse_payload(type, payload)
    h = codec.digest(_core(chain_id, nonce, fee, key.address, type, checked))
    return Action(chain_id, nonce, fee, key.address, type, checked, key.sign(h), h)
