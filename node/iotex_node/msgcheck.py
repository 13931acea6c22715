"""What a consensus message proves about the peer that sent it.

An honest node relays a proposal or an endorsement only after checking its signature (and, for a
proposal, that its signer is the slot's proposer and that its block decodes), so a message that fails
those checks is the sending peer's own doing, whoever it claims to come from: such a peer is dropped and
refused for a while (p2p.BAN_SECONDS). What an honest relay can send is not held against it: a message
for an old or not yet known height, or a well-signed endorsement from a key that is not a delegate of
the height we are at (it may be one of another epoch).
"""

from __future__ import annotations

from typing import Any

from iotex_node import block as blk
from iotex_node.crypto.keys import recover_address
from iotex_node.errors import InvalidBlock
from iotex_node.p2p import ProtocolViolation

BAD_SIGNATURE = "bad_signature"
NOT_PROPOSER = "not_proposer"
BAD_MESSAGE = "bad_message"


def _signature(msg: dict[str, Any], what: str) -> bytes:
    sig = msg.get("signature")
    try:
        raw = bytes.fromhex(sig) if isinstance(sig, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != 65:
        raise ProtocolViolation(f"{what} carries no well-formed signature", kind=BAD_SIGNATURE)
    return raw


def vote(msg: dict[str, Any], chain_id: int) -> blk.Vote:
    """The endorsement in `msg`, signed by its voter; raises ProtocolViolation otherwise."""
    what = f"{msg.get('type')} by {str(msg.get('voter'))[:48]}"
    _signature(msg, what)
    try:
        v = blk.Vote.from_wire({k: x for k, x in msg.items() if k != "t"}, chain_id, verify=False)
    except InvalidBlock as exc:
        raise ProtocolViolation(f"{what}: {exc}", kind=BAD_MESSAGE) from None
    if recover_address(v.signature, blk.vote_digest(chain_id, v.type, v.height, v.round, v.block_hash)) != v.voter:
        raise ProtocolViolation(f"{what} at {v.height}/{v.round}: the signature is not the voter's", kind=BAD_SIGNATURE)
    return v


def proposal_signature(msg: dict[str, Any], chain_id: int) -> tuple[blk.Header, bytes]:
    """The header of the proposal in `msg` and its signature, checked against the claimed proposer
    (cheap: the block's actions are not decoded here); raises ProtocolViolation otherwise."""
    h, r, pol, proposer = msg["height"], msg["round"], msg["pol_round"], msg["proposer"]
    what = f"proposal {h}/{r} by {str(proposer)[:48]}"
    sig = _signature(msg, what)
    try:
        header = blk.Header.from_wire(msg["block"]["header"])
    except InvalidBlock as exc:
        raise ProtocolViolation(f"{what}: {exc}", kind=BAD_MESSAGE) from None
    if header.height != h or (header.round != r and pol < 0):
        raise ProtocolViolation(f"{what} carries block {header.height}/{header.round}", kind=BAD_MESSAGE)
    if recover_address(sig, blk.proposal_digest(chain_id, h, r, pol, header.hash)) != proposer:
        raise ProtocolViolation(f"{what}: the signature is not the proposer's", kind=BAD_SIGNATURE)
    return header, sig
