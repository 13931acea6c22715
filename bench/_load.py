"""Signed transfer load against a lab network, for benchmarks and integration tests.

The funded accounts of `LocalNet.generate(..., accounts=K)` send each other 1-unit transfers. Each sender
keeps a window of at most `window` nonces above its committed nonce in flight, and the whole window is
re-sent every tick: the action for a (sender, nonce) is always the same signed bytes, so a node that has
it answers `duplicate` and a node that lost it (killed before it gossiped, or restarted with an empty
mempool) takes it back. Nothing is ever lost for good, so no nonce gap can stall a sender, and the load
stays bounded however long the chain stalls.
"""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.error
from dataclasses import dataclass
from typing import Any

from iotex_node import actions
from iotex_node import genesis as genesis_mod
from iotex_node.crypto.keys import PrivateKey
from iotex_ops.lab import LocalNet

# Errors a node that is being killed or restarted gives; the next tick goes to another node.
_DOWN = (OSError, urllib.error.URLError, ValueError, TimeoutError)
_MAX_BATCH = 2000  # the API's limit on one /v1/actions/batch body


@dataclass
class LoadStats:
    ticks: int = 0
    posted: int = 0  # actions sent, re-sends included
    accepted: int = 0  # actions some node admitted to its mempool for the first time
    errors: int = 0  # requests that failed (node down or slow)


class TransferLoad:
    """A background thread that keeps transfers flowing to whichever nodes are running."""

    def __init__(
        self,
        net: LocalNet,
        *,
        senders: int | None = None,
        window: int = 16,
        interval: float = 0.25,
        fee: int | None = None,  # None: the genesis minimum fee (never below 1)
        seed: int = 0,
    ) -> None:
        secrets = json.loads((net.root / "accounts.secret.json").read_text())
        if len(secrets) < 2:
            raise ValueError(f"{net.root} has {len(secrets)} funded accounts; generate the net with accounts >= 2")
        self.keys = [PrivateKey.from_hex(s) for s in secrets[: senders or len(secrets)]]
        self.chain_id = int(json.loads((net.root / "testnet.json").read_text())["chain_id"])
        self.net = net
        self.window = window
        self.interval = interval
        min_fee = max(genesis_mod.load(net.root / "genesis.json").min_fee, 1)
        self.fee = min_fee if fee is None else fee
        self.stats = LoadStats()
        self._rng = random.Random(seed)
        self._committed = {k.address: 0 for k in self.keys}
        self._signed: dict[tuple[str, int], dict[str, Any]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> TransferLoad:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="transfer-load", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    @property
    def committed(self) -> int:
        """Transfers of these senders known to be final (by the committed nonces last read)."""
        return sum(self._committed.values())

    def _wire(self, i: int, nonce: int) -> dict[str, Any]:
        key = self.keys[i]
        wire = self._signed.get((key.address, nonce))
        if wire is None:
            to = self.keys[(i + 1) % len(self.keys)].address
            a = actions.sign(
                key, chain_id=self.chain_id, nonce=nonce, fee=self.fee, type="transfer", payload={"to": to, "amount": 1}
            )
            wire = self._signed[(key.address, nonce)] = a.to_wire()
        return wire

    def _live(self) -> list[int]:
        return [i for i, n in enumerate(self.net.nodes) if n.running]

    def tick(self) -> None:
        """Read committed nonces from one running node and (re-)send every sender's window to it."""
        live = self._live()
        if not live:
            return
        node = self._rng.choice(live)
        batch: list[dict[str, Any]] = []
        try:
            for i, key in enumerate(self.keys):
                acct = self.net.get(node, f"/v1/accounts/{key.address}", timeout=3.0)
                # A node that is still catching up reports an older nonce: never move backwards.
                committed = max(self._committed[key.address], int(acct["nonce"]))
                for n in [n for (a, n) in self._signed if a == key.address and n <= committed]:
                    del self._signed[(key.address, n)]
                self._committed[key.address] = committed
                batch.extend(self._wire(i, n) for n in range(committed + 1, committed + 1 + self.window))
            for at in range(0, len(batch), _MAX_BATCH):
                chunk = batch[at : at + _MAX_BATCH]
                resp = self.net.post(node, "/v1/actions/batch", {"actions": chunk}, timeout=10.0)
                self.stats.posted += len(chunk)
                self.stats.accepted += int(resp.get("accepted", 0))
        except _DOWN:
            self.stats.errors += 1
            return
        self.stats.ticks += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.tick()
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))
