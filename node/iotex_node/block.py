"""Blocks, proposals, endorsements (votes) and commit certificates, with their signing rules.

A block is final when more than two-thirds of the epoch's active delegates have signed a `precommit`
endorsement of its hash in one round; those signatures travel with the block as its certificate (they
are not part of the block hash, as in Tendermint), so any node can check finality on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from iotex_node import codec
from iotex_node.actions import Action
from iotex_node.crypto.keys import PrivateKey, recover_address, valid_address
from iotex_node.errors import InvalidBlock

PREVOTE = "prevote"
PRECOMMIT = "precommit"
VOTE_TYPES = (PREVOTE, PRECOMMIT)
_HEADER_FIELDS = (
    "chain_id",
    "height",
    "round",
    "prev_hash",
    "timestamp_ms",
    "proposer",
    "epoch",
    "protocol",
    "actions_root",
    "receipts_root",
    "state_root",
)


def quorum(n: int) -> int:
    """Smallest count that is more than two-thirds of n."""
    return (2 * n) // 3 + 1


@dataclass(frozen=True, slots=True)
class Header:
    chain_id: int
    height: int
    round: int
    prev_hash: bytes
    timestamp_ms: int
    proposer: str
    epoch: int
    protocol: int
    actions_root: bytes
    receipts_root: bytes
    state_root: bytes
    # From protocol 2 on: sha256 of the epoch's ordered delegates (protocol.delegates_root).
    delegates_root: bytes | None = None

    def to_wire(self) -> dict[str, Any]:
        w = {
            "chain_id": self.chain_id,
            "height": self.height,
            "round": self.round,
            "prev_hash": self.prev_hash.hex(),
            "timestamp_ms": self.timestamp_ms,
            "proposer": self.proposer,
            "epoch": self.epoch,
            "protocol": self.protocol,
            "actions_root": self.actions_root.hex(),
            "receipts_root": self.receipts_root.hex(),
            "state_root": self.state_root.hex(),
        }
        if self.delegates_root is not None:
            w["delegates_root"] = self.delegates_root.hex()
        return w

    @property
    def hash(self) -> bytes:
        return codec.digest(self.to_wire())

    @classmethod
    def from_wire(cls, w: object) -> Header:
        if not isinstance(w, dict) or set(w) - {"delegates_root"} != set(_HEADER_FIELDS):
            raise InvalidBlock("block header has missing or unknown fields")
        try:
            ints = [w[k] for k in ("chain_id", "height", "round", "timestamp_ms", "epoch", "protocol")]
            if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < 2**63 for i in ints):
                raise ValueError("integer fields out of range")
            hashes = [bytes.fromhex(w[k]) for k in ("prev_hash", "actions_root", "receipts_root", "state_root")]
            if not all(len(h) == 32 for h in hashes):
                raise ValueError("hash fields must be 32 bytes")
            if not valid_address(w["proposer"]):
                raise ValueError("proposer is not an address")
            droot = bytes.fromhex(w["delegates_root"]) if "delegates_root" in w else None
            if droot is not None and len(droot) != 32:
                raise ValueError("delegates_root must be 32 bytes")
        except (TypeError, ValueError) as exc:
            raise InvalidBlock(f"block header is malformed: {exc}") from None
        return cls(
            w["chain_id"], w["height"], w["round"], hashes[0], w["timestamp_ms"], w["proposer"],
            w["epoch"], w["protocol"], hashes[1], hashes[2], hashes[3], droot,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Certificate:
    round: int
    signatures: tuple[tuple[str, bytes], ...]  # (voter, signature)

    def to_wire(self) -> dict[str, Any]:
        return {"round": self.round, "signatures": [{"voter": v, "signature": s.hex()} for v, s in self.signatures]}

    @classmethod
    def from_wire(cls, w: object) -> Certificate:
        try:
            assert isinstance(w, dict)
            r = w["round"]
            assert type(r) is int and 0 <= r < 2**31  # not a bool: true == 1 but signs differently
            sigs = tuple((str(s["voter"]), bytes.fromhex(s["signature"])) for s in w["signatures"])
        except (AssertionError, KeyError, TypeError, ValueError):
            raise InvalidBlock("commit certificate is malformed") from None
        return cls(r, sigs)


@dataclass(frozen=True, slots=True)
class Block:
    header: Header
    actions: tuple[Action, ...]
    certificate: Certificate | None = None

    @property
    def hash(self) -> bytes:
        return self.header.hash

    @property
    def height(self) -> int:
        return self.header.height

    def to_wire(self, with_certificate: bool = True) -> dict[str, Any]:
        return {
            "header": self.header.to_wire(),
            "actions": [a.to_wire() for a in self.actions],
            "certificate": self.certificate.to_wire() if (with_certificate and self.certificate) else None,
        }

    def with_certificate(self, cert: Certificate) -> Block:
        return Block(self.header, self.actions, cert)


def actions_root(actions: tuple[Action, ...] | list[Action]) -> bytes:
    return codec.merkle_root([a.hash for a in actions])


def vote_digest(chain_id: int, vtype: str, height: int, round_: int, block_hash: bytes | None) -> bytes:
    return codec.digest(
        {"chain_id": chain_id, "type": vtype, "height": height, "round": round_, "block": block_hash.hex() if block_hash else ""}
    )


def proposal_digest(chain_id: int, height: int, round_: int, pol_round: int, block_hash: bytes) -> bytes:
    return codec.digest(
        {
            "chain_id": chain_id,
            "type": "proposal",
            "height": height,
            "round": round_,
            "pol_round": pol_round,
            "block": block_hash.hex(),
        }
    )


@dataclass(frozen=True, slots=True)
class Vote:
    type: str
    height: int
    round: int
    block_hash: bytes | None  # None is a vote for nothing ("nil")
    voter: str
    signature: bytes

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "height": self.height,
            "round": self.round,
            "block": self.block_hash.hex() if self.block_hash else "",
            "voter": self.voter,
            "signature": self.signature.hex(),
        }

    @classmethod
    def from_wire(cls, w: object, chain_id: int, *, verify: bool = True) -> Vote:
        """Parse and (unless `verify` is false) check the signature; raises InvalidBlock when anything is off."""
        try:
            assert isinstance(w, dict)
            vtype, height, round_ = w["type"], w["height"], w["round"]
            assert vtype in VOTE_TYPES
            # type() is int, not isinstance: a JSON true would pass as 1 (and key the same vote box), yet
            # its signature covers `true`, so a certificate carrying it would fail verify_certificate.
            assert type(height) is int and type(round_) is int and 0 < height < 2**62 and 0 <= round_ < 2**31
            bh = bytes.fromhex(w["block"]) if w["block"] else None
            assert bh is None or len(bh) == 32
            sig = bytes.fromhex(w["signature"])
            voter = w["voter"]
        except (AssertionError, KeyError, TypeError, ValueError):
            raise InvalidBlock("endorsement is malformed") from None
        if verify and recover_address(sig, vote_digest(chain_id, vtype, height, round_, bh)) != voter:
            raise InvalidBlock(f"endorsement signature does not match voter {voter}")
        return cls(vtype, height, round_, bh, voter, sig)


def sign_vote(key: PrivateKey, chain_id: int, vtype: str, height: int, round_: int, block_hash: bytes | None) -> Vote:
    return Vote(
        vtype, height, round_, block_hash, key.address, key.sign(vote_digest(chain_id, vtype, height, round_, block_hash))
    )


def verify_certificate(chain_id: int, header: Header, cert: Certificate | None, delegates: list[str]) -> None:
    """Raise InvalidBlock unless more than 2/3 of `delegates` precommitted this block in one round."""
    if cert is None:
        raise InvalidBlock(f"block {header.height} has no commit certificate")
    digest = vote_digest(chain_id, PRECOMMIT, header.height, cert.round, header.hash)
    members = set(delegates)
    signers: set[str] = set()
    for voter, sig in cert.signatures:
        if voter not in members:
            raise InvalidBlock(f"certificate of block {header.height} is signed by {voter}, not an active delegate")
        if recover_address(sig, digest) != voter:
            raise InvalidBlock(f"certificate of block {header.height} has a bad signature from {voter}")
        signers.add(voter)
    need = quorum(len(delegates))
    if len(signers) < need:
        raise InvalidBlock(f"certificate of block {header.height} has {len(signers)} of the {need} endorsements needed")
