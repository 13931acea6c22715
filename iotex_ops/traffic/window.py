"""A window load: signed transfers that keep flowing to whichever nodes are running, through kills and
restarts, for benchmarks and integration tests (see `WindowNonces` for why nothing is ever lost)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from iotex_node import sdk
from iotex_ops.traffic.accounts import read_accounts
from iotex_ops.traffic.nonces import WindowNonces
from iotex_ops.traffic.senders import MAX_BATCH, Signed, SyncSender, signed_transfer
from iotex_ops.traffic.stats import LoadStats
from iotex_ops.traffic.transport import HttpNodeApi, NodeApi, Unavailable

if TYPE_CHECKING:
    from iotex_ops.lab import LocalNet


class WindowLoad:
    """A background thread: every `interval` s, read the senders' committed nonces from one running node
    (chosen at random) and (re-)send every sender's window to it. Sender i pays sender i+1 1 rau."""

    def __init__(
        self,
        live_apis: Callable[[], Sequence[str]],
        keys: Sequence[sdk.PrivateKey],
        *,
        chain_id: int,
        fee: int,
        window: int = 16,
        interval: float = 0.25,
        seed: int = 0,
        api: NodeApi | None = None,
    ) -> None:
        if len(keys) < 2:
            raise ValueError(f"a window load needs at least 2 senders, not {len(keys)}")
        self.keys = list(keys)
        self.chain_id, self.fee, self.window, self.interval = chain_id, fee, window, interval
        self.live_apis = live_apis
        self.api = api or HttpNodeApi()
        self.stats = LoadStats()
        self.nonces: WindowNonces[int, Signed] = WindowNonces(range(len(self.keys)), window)
        self._sender = SyncSender(self.stats, self.api, timeout=10.0)
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> WindowLoad:
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
        return self.nonces.total_committed

    def _sign(self, i: int) -> Callable[[int], Signed]:
        to = self.keys[(i + 1) % len(self.keys)].address
        return lambda nonce: signed_transfer(self.keys, i, to, chain_id=self.chain_id, nonce=nonce, fee=self.fee)

    def tick(self) -> None:
        """One round: committed nonces from one running node, every sender's window posted to it."""
        live = list(self.live_apis())
        if not live:
            return
        url = self._rng.choice(live)
        batch: list[Signed] = []
        try:
            for i, key in enumerate(self.keys):
                acct = self.api.get(url, f"/v1/accounts/{key.address}", timeout=3.0)
                self.nonces.update(i, int(acct["nonce"]))
                sign = self._sign(i)
                batch.extend(self.nonces.signed(i, n, sign) for n in self.nonces.in_flight(i))
        except (Unavailable, KeyError, ValueError, TypeError):
            self.stats.failed_requests += 1
            return
        try:
            for at in range(0, len(batch), MAX_BATCH):
                self._sender.post(url, batch[at : at + MAX_BATCH])
        except Unavailable:
            return  # counted by the sender
        self.stats.ticks += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.tick()
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))


class LocalNetLoad(WindowLoad):
    """A window load of a lab network's funded accounts (the first `senders` of them, all by default),
    paying the genesis minimum fee unless `fee`, to whichever of its nodes are running."""

    def __init__(
        self,
        net: LocalNet,
        *,
        senders: int | None = None,
        window: int = 16,
        interval: float = 0.25,
        fee: int | None = None,
        seed: int = 0,
        api: NodeApi | None = None,
    ) -> None:
        keys = read_accounts(net.root, at_least=2)
        params = sdk.ChainParams.from_testnet(net.root)
        self.net = net
        super().__init__(
            lambda: [n.api for n in net.nodes if n.running],
            keys[: senders or len(keys)],
            chain_id=params.chain_id,
            fee=params.min_fee if fee is None else fee,
            window=window,
            interval=interval,
            seed=seed,
            api=api,
        )
