"""A bounded background load of signed transfers, and the check that nothing it got accepted was lost.

Used by the rehearsal while the drills run: every action a node accepted (202) is recorded with its hash;
`lost()` later asks the network for each one's status. Nonces are counted (`CountingNonces`) and an
account's next nonce is re-read from a node when a submission fails (a node down, a rollback), so the
load continues after any drill.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from iotex_node import sdk
from iotex_ops.errors import OpsError
from iotex_ops.traffic.accounts import AccountsError, read_accounts
from iotex_ops.traffic.nonces import CountingNonces
from iotex_ops.traffic.senders import MAX_BATCH, Signed, SyncSender, signed_transfer
from iotex_ops.traffic.stats import LoadStats
from iotex_ops.traffic.transport import HttpNodeApi, NodeApi, Unavailable

MAX_SECONDS = 6 * 3600
RETRY_DOWN_S = 1.0  # a node that did not answer gets its accounts' next batch after this long
# The fee paid when the node does not say its minimum (a node before `min_fee` in /v1/chain): the default
# genesis minimum, 0.01 IOTX.
FALLBACK_FEE = sdk.DEFAULT_MIN_FEE


class BackgroundLoad:
    """Transfers between funded accounts at `tps`, in batches, round-robin over the nodes' APIs; stops by
    itself after `max_seconds` (a bound, whatever happens to the caller)."""

    def __init__(
        self,
        api_urls: Sequence[str],
        accounts_file: Path,
        *,
        tps: float = 20.0,
        batch: int | None = None,
        max_seconds: float = 3600,
        fee: int | None = None,
        api: NodeApi | None = None,
    ) -> None:
        """`fee`: what each transfer pays; None pays the node's minimum (`min_fee` of /v1/chain), and a
        lower fee is raised to it, since the node would refuse it (`fee_too_low`). `api`: how nodes are
        reached (HTTP by default). `batch`: transfers per request (default: a tenth of a second's worth, 10 at
        least), so that one thread offers hundreds a second."""
        if not api_urls:
            raise OpsError("background load: no node API to send to")
        if not 0 < tps <= 2000 or not 0 < max_seconds <= MAX_SECONDS:
            raise OpsError(f"background load: tps must be in (0, 2000] and max_seconds in (0, {MAX_SECONDS}]")
        if fee is not None and fee < 1:
            raise OpsError(f"background load: fee must be at least 1 rau (got {fee}): no node admits a free action")
        try:
            self.keys = read_accounts(accounts_file, at_least=2)
        except AccountsError as exc:
            raise AccountsError(f"background load: {exc}") from None
        self.apis = list(api_urls)
        self.tps, self.max_seconds, self.fee = tps, max_seconds, fee
        self.batch = batch or max(10, min(MAX_BATCH, int(tps // 10)))
        self.api = api or HttpNodeApi()
        self.stats = LoadStats()
        self.accepted: list[tuple[float, str]] = []  # (unix time it was offered, hash)
        self.offered: list[tuple[float, int]] = []  # (unix time, transfers) per batch offered (signed to be sent)
        self.behind_s = 0.0  # how far the loop fell behind its rate at worst (it could not offer `tps`)
        self.nonces: CountingNonces[int] = CountingNonces()
        self._sender = SyncSender(self.stats, self.api, timeout=5)
        self._chain: sdk.ChainParams | None = None  # what is paid: max(fee, the node's min_fee), once read
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._thread = threading.Thread(target=self._loop, name="background-load", daemon=True)
        self._rng = random.Random(11)
        # account k talks to node k % len(nodes) only; a node that fails is left alone for RETRY_DOWN_S
        self._pinned = [list(range(i, len(self.keys), len(self.apis))) for i in range(len(self.apis))]
        self._failed_at: dict[int, float] = {}

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

    def _nodes_up(self) -> list[int]:
        """The nodes (with accounts pinned to them) that did not fail in the last RETRY_DOWN_S seconds."""
        now = time.monotonic()
        return [i for i, mine in enumerate(self._pinned) if mine and now - self._failed_at.get(i, -RETRY_DOWN_S) >= RETRY_DOWN_S]

    def _resync(self, k: int, node: int) -> bool:
        """Read account k's next nonce from its own node (whose pending nonce counts what that node accepted)."""
        try:
            doc = self.api.get(self.apis[node], f"/v1/accounts/{self.keys[k].address}", timeout=2)
            self.nonces.set(k, int(doc["pending_nonce"]))
        except (Unavailable, KeyError, ValueError, TypeError):
            self.nonces.forget(k)
            return False
        self.stats.resyncs += 1
        return True

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
            late = time.monotonic() - next_at
            self.behind_s = max(self.behind_s, late)
            if late > 1.0:
                next_at = time.monotonic()  # what could not be offered in time is not offered in a burst later
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _send_batch(self, n: int) -> None:
        """One batch from the accounts pinned to one node that answers, to that node. Each account talks to its
        own node only, as a wallet does: a nonce is never read from a node that has not seen the account's
        latest actions yet (a race that signs a second action with a nonce already taken). While a node is down
        its accounts wait and the others carry the rate."""
        up = self._nodes_up()
        if not up:
            self.stats.unavailable += self.batch
            return
        node = up[n % len(up)]
        api = self.apis[node]
        if self._chain is None:
            try:
                read = sdk.ChainParams.from_chain_info(self.api.get(api, "/v1/chain", timeout=2))
            except (Unavailable, sdk.InvalidAction):
                self._failed_at[node] = time.monotonic()
                self.stats.unavailable += self.batch
                return
            self._chain = sdk.ChainParams(read.chain_id, max(self.fee or 0, read.min_fee))
        mine = self._pinned[node]
        batch: list[Signed] = []
        for _ in range(self.batch):
            k = mine[self._rng.randrange(len(mine))]
            if not self.nonces.known(k) and not self._resync(k, node):
                self._failed_at[node] = time.monotonic()
                self.stats.unavailable += self.batch - len(batch)
                break
            to = self.keys[(k + 1 + self._rng.randrange(len(self.keys) - 1)) % len(self.keys)]
            nonce = self.nonces.take(k)
            batch.append(
                signed_transfer(self.keys, k, to.address, chain_id=self._chain.chain_id, nonce=nonce, fee=self._chain.min_fee)
            )
        if not batch:
            return
        offered_at = time.time()
        self.offered.append((offered_at, len(batch)))
        try:
            codes = self._sender.post(api, batch)
        except Unavailable:
            self._failed_at[node] = time.monotonic()
            for k in {s.sender for s in batch}:
                self.nonces.forget(k)  # re-read from its node when it answers again
            return
        self._failed_at.pop(node, None)
        for s, code in zip(batch, codes, strict=False):
            if code is None:
                # stamped when offered, as `offered` is: a drill's window counts each action on one side of it
                self.accepted.append((offered_at, s.hash))
            else:
                self.nonces.forget(s.sender)

    def offered_between(self, since: float = 0.0, until: float | None = None) -> int:
        return sum(n for t, n in self.offered if t >= since and (until is None or t <= until))

    def lost(
        self, since: float = 0.0, until: float | None = None, wait: float = 30.0, from_height: int | None = None
    ) -> dict[str, Any]:
        """Accepted actions (submitted in [since, until]) that are not final, after waiting up to `wait` s; with
        how many were offered meanwhile. `from_height`: the actions are looked for in the finalized blocks from
        there to the tip first (a few requests, however many actions), and only those not found are asked for
        one by one (GET /v1/actions/{hash})."""
        chosen = [h for t, h in self.accepted if t >= since and (until is None or t <= until)]
        offered = self.offered_between(since, until)
        deadline = time.monotonic() + wait
        pending = list(chosen)
        seen: set[str] = set()
        next_height = from_height
        while pending and next_height is not None:
            next_height = self._final_hashes(next_height, seen)
            pending = [h for h in pending if h not in seen]
            if not pending or time.monotonic() > deadline or next_height is None:
                break
            time.sleep(1.0)
        while pending:
            with ThreadPoolExecutor(max_workers=8) as pool:
                statuses = list(pool.map(self._status, pending))
            pending = [h for h, s in zip(pending, statuses, strict=True) if s != "finalized"]
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        return {
            "offered": offered,
            "accepted": len(chosen),
            "final": len(chosen) - len(pending),
            "lost": len(pending),
            "examples": pending[:5],
        }

    def _final_hashes(self, start: int, into: set[str]) -> int | None:
        """Add the hashes of the actions in the finalized blocks from `start` to the tip (one node's) to `into`;
        the next height to read, or None when no node answers."""
        for j in range(len(self.apis)):
            url = self._api(j)
            try:
                tip = int(self.api.get(url, "/v1/chain", timeout=3)["finalized_height"])
                h = start
                while h <= tip:
                    block = self.api.get(url, f"/v1/blocks/{h}", timeout=10)
                    into.update(sdk.action_hash(w) for w in block.get("actions") or ())
                    h += 1
                return h
            except (Unavailable, KeyError, TypeError, ValueError, sdk.InvalidAction):
                continue
        return None

    def _status(self, h: str) -> str:
        for j in range(len(self.apis)):
            try:
                return str(self.api.get(self._api(j), f"/v1/actions/{h}", timeout=3).get("status"))
            except (Unavailable, AttributeError):
                continue
        return "unknown"
