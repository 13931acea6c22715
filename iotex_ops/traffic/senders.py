"""Signed transfers, and the senders that post them in batches and count the answers.

A sender posts a batch to a node's POST /v1/actions/batch and returns, per action, None when the node
admitted it (202, with the action's own hash) or the node's refusal code; it counts everything in a
`LoadStats`. A request that gets no answer raises `Unavailable` (counted too), so the caller decides
what to do with the nonces of its senders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from iotex_node import sdk
from iotex_ops.traffic.stats import LoadStats
from iotex_ops.traffic.transport import AsyncNodeApi, HttpNodeApi, NodeApi, Unavailable

BATCH_PATH = "/v1/actions/batch"
MAX_BATCH = 2000  # the API's limit on one batch


@dataclass(frozen=True, slots=True)
class Signed:
    """A signed action ready to post: its wire form, its hash, and the index of the account that sent it."""

    wire: dict[str, Any]
    hash: str
    sender: int


def signed_transfer(
    keys: Sequence[sdk.PrivateKey], sender: int, to: str, *, chain_id: int, nonce: int, fee: int, amount: int = 1
) -> Signed:
    action = sdk.transfer(keys[sender], chain_id=chain_id, nonce=nonce, fee=fee, to=to, amount=amount)
    return Signed(action.to_wire(), action.hash_hex, sender)


def _count(stats: LoadStats, batch: Sequence[Signed], doc: Any) -> list[str | None]:
    results = doc.get("results", []) if isinstance(doc, dict) else []
    out: list[str | None] = []
    for s, r in zip(batch, results, strict=False):
        if isinstance(r, dict) and "error" not in r and r.get("hash") == s.hash:
            stats.accepted += 1
            out.append(None)
        else:
            err = r.get("error") if isinstance(r, dict) else None
            code = str((err if isinstance(err, dict) else {}).get("code", "unknown"))
            stats.refuse(code)
            out.append(code)
    return out


class SyncSender:
    def __init__(self, stats: LoadStats, api: NodeApi | None = None, *, timeout: float = 5.0) -> None:
        self.stats, self.api, self.timeout = stats, api or HttpNodeApi(), timeout

    def post(self, url: str, batch: Sequence[Signed]) -> list[str | None]:
        """Post one batch (at most MAX_BATCH actions) to the node at `url`."""
        self.stats.sent += len(batch)
        try:
            doc = self.api.post(url, BATCH_PATH, {"actions": [s.wire for s in batch]}, timeout=self.timeout)
        except Unavailable:
            self.stats.unavailable += len(batch)
            self.stats.failed_requests += 1
            raise
        return _count(self.stats, batch, doc)


class AsyncSender:
    def __init__(self, stats: LoadStats, api: AsyncNodeApi) -> None:
        self.stats, self.api = stats, api

    async def post(self, url: str, batch: Sequence[Signed]) -> list[str | None]:
        """Post one batch to the node at `url` (the api's session bounds the time)."""
        self.stats.sent += len(batch)
        try:
            doc = await self.api.post(url, BATCH_PATH, {"actions": [s.wire for s in batch]})
        except Unavailable:
            self.stats.unavailable += len(batch)
            self.stats.failed_requests += 1
            raise
        return _count(self.stats, batch, doc)
