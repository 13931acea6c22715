"""An open-loop load: transfers signed on the fly at a fixed rate, whatever the nodes answer, from asyncio.

Each account is pinned to one node, as a wallet talks to one node, and each node has one request in
flight at a time, like a wallet waiting for its answer: a node handles its requests in order, so a
sender's nonces arrive in order. Nonces are counted from 1 (`CountingNonces.fresh`: the accounts of a new
network). Every accepted action's hash and submit time (unix seconds) is kept so that the caller can
measure submit-to-finalized latency. Imported on its own (`iotex_ops.traffic.openloop`): it needs aiohttp.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp

from iotex_node import sdk
from iotex_ops.traffic.nonces import CountingNonces
from iotex_ops.traffic.senders import AsyncSender, Signed, signed_transfer
from iotex_ops.traffic.stats import LoadStats
from iotex_ops.traffic.transport import AiohttpNodeApi, AsyncNodeApi, Unavailable


@dataclass
class OpenLoopRun:
    generated: int = 0  # actions signed and queued
    submits: list[tuple[str, float]] = field(default_factory=list)  # (hash, submit time) of each accepted action
    stats: LoadStats = field(default_factory=LoadStats)
    elapsed: float = 0.0


async def open_loop(
    apis: Sequence[str],
    keys: Sequence[sdk.PrivateKey],
    *,
    chain_id: int,
    fee: int,
    tps: float,
    seconds: float,
    batch: int = 100,
    seed: int = 7,
    api: AsyncNodeApi | None = None,
) -> OpenLoopRun:
    """Offer `tps` transfers a second for `seconds`, in batches of `batch`, round-robin over `apis`."""
    if len(keys) < 2 or not apis:
        raise ValueError("an open-loop load needs at least 2 accounts and 1 node")
    run = OpenLoopRun()
    nonces: CountingNonces[int] = CountingNonces.fresh(range(len(keys)))
    rng = random.Random(seed)
    interval = batch / tps
    start = time.time()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        sender = AsyncSender(run.stats, api or AiohttpNodeApi(session))
        queues: list[asyncio.Queue[tuple[list[Signed], float] | None]] = [asyncio.Queue() for _ in apis]

        async def worker(url: str, q: asyncio.Queue[tuple[list[Signed], float] | None]) -> None:
            while (item := await q.get()) is not None:
                signed, t = item
                try:
                    codes = await sender.post(url, signed)
                except Unavailable:
                    continue
                run.submits.extend((s.hash, t) for s, code in zip(signed, codes, strict=False) if code is None)

        workers = [asyncio.create_task(worker(url, q)) for url, q in zip(apis, queues, strict=True)]
        pinned = [list(range(n, len(keys), len(apis))) for n in range(len(apis))]
        cursor = [0] * len(apis)
        next_at = time.monotonic()
        while time.time() - start < seconds:
            node = (run.generated // batch) % len(apis)
            signed = []
            for _ in range(batch):
                mine = pinned[node]
                i = mine[cursor[node] % len(mine)]
                cursor[node] += 1
                j = (i + 1 + rng.randrange(len(keys) - 1)) % len(keys)
                signed.append(signed_transfer(keys, i, keys[j].address, chain_id=chain_id, nonce=nonces.take(i), fee=fee))
            queues[node].put_nowait((signed, time.time()))
            run.generated += batch
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        for q in queues:
            q.put_nowait(None)
        await asyncio.wait(workers, timeout=60)
    run.elapsed = time.time() - start
    return run
