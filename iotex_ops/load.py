"""A bounded background load of signed transfers, and the check that nothing it got accepted was lost.

Used by the rehearsal while the drills run: every action a node accepted (202) is recorded with its hash;
`lost()` later asks the network for each one's status. Each account's next nonce is re-read from a node
when a submission fails (a node down, a rollback), so the load continues after any drill.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iotex_node import actions
from iotex_node.crypto.keys import PrivateKey
from iotex_ops.errors import OpsError
from iotex_ops.network import NodeApiError, http_json

MAX_SECONDS = 6 * 3600
# The fee paid when the node does not say its minimum (a node before `min_fee` in /v1/chain): the default
# genesis minimum, 0.01 IOTX.
FALLBACK_FEE = 10**16


@dataclass
class LoadStats:
    accepted: int = 0
    refused: int = 0
    unavailable: int = 0
    resyncs: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "refused": self.refused,
            "unavailable": self.unavailable,
            "resyncs": self.resyncs,
            "by_reason": self.by_reason,
        }


class BackgroundLoad:
    """Transfers between funded accounts at `tps`, in batches, round-robin over the nodes' APIs; stops by
    itself after `max_seconds` (a bound, whatever happens to the caller)."""

    def __init__(
        self,
        api_urls: Sequence[str],
        accounts_file: Path,
        *,
        tps: float = 20.0,
        batch: int = 10,
        max_seconds: float = 3600,
        fee: int | None = None,
    ) -> None:
        """`fee`: what each transfer pays; None pays the node's minimum (`min_fee` of /v1/chain), and a
        lower fee is raised to it, since the node would refuse it (`fee_too_low`)."""
        if not api_urls:
            raise OpsError("background load: no node API to send to")
        if not 0 < tps <= 2000 or not 0 < max_seconds <= MAX_SECONDS:
            raise OpsError(f"background load: tps must be in (0, 2000] and max_seconds in (0, {MAX_SECONDS}]")
        if fee is not None and fee < 1:
            raise OpsError(f"background load: fee must be at least 1 rau (got {fee}): no node admits a free action")
        try:
            secrets_ = json.loads(accounts_file.read_text())
        except (OSError, ValueError) as exc:
            raise OpsError(f"background load: cannot read funded accounts from {accounts_file}: {type(exc).__name__}") from None
        self.keys = [PrivateKey(bytes.fromhex(s)) for s in secrets_]
        if len(self.keys) < 2:
            raise OpsError(f"background load: {accounts_file} holds fewer than 2 accounts")
        self.apis = list(api_urls)
        self.tps, self.batch, self.max_seconds, self.fee = tps, batch, max_seconds, fee
        self.stats = LoadStats()
        self.accepted: list[tuple[float, str]] = []  # (unix time, hash)
        self._nonces: dict[int, int] = {}
        self._chain_id: int | None = None
        self._fee: int | None = None  # what is paid: max(fee, the node's min_fee), once the chain is read
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._thread = threading.Thread(target=self._loop, name="background-load", daemon=True)
        self._rng = random.Random(11)

    def __repr__(self) -> str:
        return f"BackgroundLoad(tps={self.tps}, accounts={len(self.keys)}, nodes={len(self.apis)})"

    def start(self) -> BackgroundLoad:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def hold(self) -> None:
        """Stop sending until `release` (as an operator holds traffic at the gateway during a recovery)."""
        self._running.clear()

    def release(self) -> None:
        self._running.set()

    def __enter__(self) -> BackgroundLoad:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _api(self, i: int) -> str:
        return self.apis[i % len(self.apis)]

    def _resync(self, k: int) -> None:
        for j in range(len(self.apis)):
            try:
                doc = http_json(f"{self._api(k + j)}/v1/accounts/{self.keys[k].address}", timeout=2)
                self._nonces[k] = int(doc["pending_nonce"])
                self.stats.resyncs += 1
                return
            except (NodeApiError, KeyError, ValueError):
                continue
        self._nonces.pop(k, None)

    def _loop(self) -> None:
        interval = self.batch / self.tps
        end = time.monotonic() + self.max_seconds
        next_at = time.monotonic()
        n = 0
        while not self._stop.is_set() and time.monotonic() < end:
            if not self._running.is_set():
                self._stop.wait(0.1)
                next_at = time.monotonic()
                continue
            self._send_batch(n)
            n += 1
            next_at += interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _send_batch(self, n: int) -> None:
        api = self._api(n)
        if self._chain_id is None or self._fee is None:
            try:
                chain = http_json(api + "/v1/chain", timeout=2)
                self._chain_id = int(chain["chain_id"])
                self._fee = max(self.fee or 0, int(chain.get("min_fee", FALLBACK_FEE)))
            except (NodeApiError, KeyError, ValueError, TypeError):
                self.stats.unavailable += self.batch
                return
        wires, senders, hashes = [], [], []
        for _ in range(self.batch):
            k = self._rng.randrange(len(self.keys))
            if k not in self._nonces:
                self._resync(k)
                if k not in self._nonces:
                    continue
            to = self.keys[(k + 1 + self._rng.randrange(len(self.keys) - 1)) % len(self.keys)]
            a = actions.sign(
                self.keys[k], chain_id=self._chain_id, nonce=self._nonces[k], fee=self._fee, type="transfer",
                payload={"to": to.address, "amount": 1},
            )  # fmt: skip
            self._nonces[k] += 1
            wires.append(a.to_wire())
            senders.append(k)
            hashes.append(a.hash_hex)
        if not wires:
            return
        try:
            doc = http_json(api + "/v1/actions/batch", {"actions": wires}, timeout=5)
        except NodeApiError:
            self.stats.unavailable += len(wires)
            for k in set(senders):
                self._nonces.pop(k, None)  # re-read when the network answers again
            return
        now = time.time()
        for k, h, r in zip(senders, hashes, doc.get("results", []), strict=False):
            if r.get("hash") == h:
                self.stats.accepted += 1
                self.accepted.append((now, h))
            else:
                self.stats.refused += 1
                code = str((r.get("error") or {}).get("code", "unknown"))
                self.stats.by_reason[code] = self.stats.by_reason.get(code, 0) + 1
                self._nonces.pop(k, None)

    def lost(self, since: float = 0.0, until: float | None = None, wait: float = 30.0) -> dict[str, Any]:
        """Accepted actions (submitted in [since, until]) that are not final, after waiting up to `wait` s."""
        chosen = [h for t, h in self.accepted if t >= since and (until is None or t <= until)]
        deadline = time.monotonic() + wait
        pending = list(chosen)
        while pending:
            with ThreadPoolExecutor(max_workers=8) as pool:
                statuses = list(pool.map(self._status, pending))
            pending = [h for h, s in zip(pending, statuses, strict=True) if s != "finalized"]
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        return {"accepted": len(chosen), "final": len(chosen) - len(pending), "lost": len(pending), "examples": pending[:5]}

    def _status(self, h: str) -> str:
        for j in range(len(self.apis)):
            try:
                return str(http_json(f"{self._api(j)}/v1/actions/{h}", timeout=3).get("status"))
            except NodeApiError:
                continue
        return "unknown"
