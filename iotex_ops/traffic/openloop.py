"""An open-loop load: actions signed on the fly at a fixed rate, whatever the nodes answer, from asyncio.

Each account is pinned to one node, as a wallet talks to one node, and each node has one request in
flight at a time, like a wallet waiting for its answer: a node handles its requests in order, so a
sender's nonces arrive in order. An account whose action was refused or got no answer stops until its
actions in flight are answered and its next nonce is read again from its node (with an `api` that can GET):
a gap in its nonces would otherwise refuse everything it sends after. Nonces are counted from 1
(`CountingNonces.fresh`: the accounts of a new network) unless the caller gives where each account starts.
Every accepted action's hash and submit time (unix seconds) is kept so that the caller can measure
submit-to-finalized latency; `on_answer` sees every action as its node answers. Transfers by default;
`build` makes any other action (the load tool's mix).
Imported on its own (`iotex_ops.traffic.openloop`): it needs aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import aiohttp

from iotex_node import sdk
from iotex_ops.traffic.nonces import CountingNonces
from iotex_ops.traffic.senders import AsyncSender, Signed, signed_transfer
from iotex_ops.traffic.stats import LoadStats
from iotex_ops.traffic.transport import AiohttpNodeApi, AsyncNodeApi, Unavailable

# build(sender index, recipient index, nonce, rng) -> the signed action
Build = Callable[[int, int, int, random.Random], Signed]
# on_answer(action, None when accepted else the refusal code ("no_answer": the node did not answer), offer time)
OnAnswer = Callable[[Signed, str | None, float], None]


@dataclass
class OpenLoopRun:
    generated: int = 0  # actions signed and queued (offered)
    submits: list[tuple[str, float]] = field(default_factory=list)  # (hash, submit time) of each accepted action
    stats: LoadStats = field(default_factory=LoadStats)
    elapsed: float = 0.0
    behind_s: float = 0.0  # how far the generator fell behind its schedule at worst (it cannot sign fast enough)
    skipped: int = 0  # actions not offered: every account of their node was waiting to re-read its nonce


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
    nonces: CountingNonces[int] | None = None,
    build: Build | None = None,
    on_answer: OnAnswer | None = None,
    run: OpenLoopRun | None = None,
    stop: asyncio.Event | None = None,
) -> OpenLoopRun:
    """Offer `tps` actions a second for `seconds` (or until `stop` is set), in batches of `batch`, round-robin
    over `apis`. `nonces`: each account's next nonce (default: 1, a fresh account); `build`: the action an
    account sends (default: a 1-rau transfer); `run`: the object to fill (so the caller watches it live)."""
    if len(keys) < 2 or not apis:
        raise ValueError("an open-loop load needs at least 2 accounts and 1 node")
    run = run if run is not None else OpenLoopRun()
    counted: CountingNonces[int] = nonces if nonces is not None else CountingNonces.fresh(range(len(keys)))
    rng = random.Random(seed)
    make: Build = build or (
        lambda i, j, nonce, _rng: signed_transfer(keys, i, keys[j].address, chain_id=chain_id, nonce=nonce, fee=fee)
    )
    interval = batch / tps
    start = time.time()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        sender = AsyncSender(run.stats, api or AiohttpNodeApi(session))
        queues: list[asyncio.Queue[tuple[list[Signed], float] | None]] = [asyncio.Queue() for _ in apis]
        inflight: dict[int, int] = {}  # per account: its actions queued or posted, not answered yet
        stale: set[int] = set()  # accounts whose next nonce must be read again before they send

        async def worker(url: str, q: asyncio.Queue[tuple[list[Signed], float] | None]) -> None:
            while (item := await q.get()) is not None:
                signed, t = item
                try:
                    codes: list[str | None] = await sender.post(url, signed)
                except Unavailable:
                    codes = ["no_answer"] * len(signed)
                codes += ["no_answer"] * (len(signed) - len(codes))  # an answer with fewer results than actions
                for s, code in zip(signed, codes, strict=True):
                    inflight[s.sender] -= 1
                    if code is not None and code != "duplicate":
                        stale.add(s.sender)
                run.submits.extend((s.hash, t) for s, code in zip(signed, codes, strict=True) if code is None)
                if on_answer is not None:
                    for s, code in zip(signed, codes, strict=True):
                        on_answer(s, code, t)

        pinned = [list(range(n, len(keys), len(apis))) for n in range(len(apis))]
        home = {i: n for n, mine in enumerate(pinned) for i in mine}
        reader = getattr(api, "get", None) if api is not None else None

        async def resync() -> None:
            """An account whose action was refused or unanswered has a gap at that nonce: once none of its actions is
            in flight, read its next nonce from its own node; it sends nothing meanwhile."""
            while True:
                await asyncio.sleep(0.25)
                for i in [i for i in stale if not inflight.get(i)]:
                    try:
                        doc = await reader(apis[home[i]], f"/v1/accounts/{keys[i].address}")  # type: ignore[misc]
                        counted.set(i, int(doc["pending_nonce"]))
                    except (Unavailable, KeyError, TypeError, ValueError):
                        continue
                    stale.discard(i)
                    run.stats.resyncs += 1

        workers = [asyncio.create_task(worker(url, q)) for url, q in zip(apis, queues, strict=True)]
        resyncer = asyncio.create_task(resync()) if reader is not None else None
        cursor = [0] * len(apis)
        next_at = time.monotonic()
        batches = 0
        while time.time() - start < seconds and not (stop is not None and stop.is_set()):
            node = batches % len(apis)
            batches += 1
            signed = []
            mine = pinned[node] or list(range(len(keys)))
            for _ in range(batch):
                for _try in range(len(mine)):  # the next account of this node that is not waiting for its nonce
                    i = mine[cursor[node] % len(mine)]
                    cursor[node] += 1
                    if i not in stale:
                        break
                else:
                    break  # every account of this node waits: what it would have sent is not offered
                j = (i + 1 + rng.randrange(len(keys) - 1)) % len(keys)
                signed.append(make(i, j, counted.take(i), rng))
                inflight[i] = inflight.get(i, 0) + 1
            if signed:
                queues[node].put_nowait((signed, time.time()))
            run.generated += len(signed)
            run.skipped += batch - len(signed)
            next_at += interval
            delay = next_at - time.monotonic()
            run.behind_s = max(run.behind_s, -delay)
            # yield to the workers even when behind: the generator must not starve the requests it queued
            await asyncio.sleep(max(0.0, delay))
        for q in queues:
            q.put_nowait(None)
        await asyncio.wait(workers, timeout=60)
        if resyncer is not None:
            resyncer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await resyncer
    run.elapsed = time.time() - start
    return run
