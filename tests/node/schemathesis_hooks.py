"""Schemathesis hooks for test_api_schema.py: what the node's OpenAPI document states but a generator cannot make.

Loaded by the schemathesis CLI through SCHEMATHESIS_HOOKS (a file path), in the schemathesis process.

- Format `iotex-address`: a bech32 `io1...` address whose checksum holds (JSON Schema has no checksums; the
  document's pattern alone would let the generator produce addresses that the node rightly refuses).
- Signatures: a schema-valid action is still refused (400, `signature`) unless its sender signed it, and no
  generator can sign. Before a *positive* (schema-valid) action is sent, it is given the node's chain id and
  signed by one of the test network's funded accounts (picked by its generated sender), which becomes the
  sender, so that some are admitted (202) and GET /v1/actions/{hash} can find them. Nothing else changes, so
  the node must accept it or refuse it for a reason of state (409, 422, 429), never with a 400. A negative
  (schema-violating) action is sent as generated: signing one could repair the very field that makes it
  invalid. An action that actions.sign() refuses is sent unsigned too, so the node's 400 is reported as
  the mismatch it is rather than hidden here.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import schemathesis
from hypothesis import strategies as st

from iotex_node import actions
from iotex_node.crypto import bech32
from iotex_node.crypto.keys import HRP, PrivateKey
from iotex_node.errors import InvalidInput

schemathesis.openapi.format("iotex-address", st.binary(min_size=20, max_size=20).map(lambda raw: bech32.encode(HRP, raw)))

CHAIN_ID = int(os.environ.get("IOTEX_SCHEMA_CHAIN_ID", "0"))
# Hex secrets of funded accounts, comma-separated; without them, keys derived from the generated senders.
KEYS = [PrivateKey(bytes.fromhex(k)) for k in os.environ.get("IOTEX_SCHEMA_KEYS", "").split(",") if k]


def _sign(wire: Any) -> None:
    """Sign a generated action in place, as its (derived) sender would."""
    if not isinstance(wire, dict) or not isinstance(wire.get("sender"), str) or not isinstance(wire.get("payload"), dict):
        return
    seed = hashlib.sha256(b"schemathesis/" + wire["sender"].encode()).digest()
    key = KEYS[seed[0] % len(KEYS)] if KEYS else PrivateKey(seed)
    try:
        signed = actions.sign(
            key, chain_id=CHAIN_ID, nonce=wire["nonce"], fee=wire["fee"], type=wire["type"], payload=wire["payload"]
        )
    except (InvalidInput, KeyError, TypeError):
        return
    wire.update(chain_id=CHAIN_ID, sender=key.address, signature=signed.signature.hex())


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if case.method.upper() != "POST" or case.meta is None or not case.meta.generation.mode.is_positive:
        return
    if case.path == "/v1/actions":
        _sign(case.body)
    elif case.path == "/v1/actions/batch" and isinstance(case.body, dict):
        for wire in case.body.get("actions") or ():
            _sign(wire)
