"""Signed-transfer load against a lab network, from its own process.

    python bench/loadgen.py --net DIR --tps 1200 --seconds 60 --out submits.json

Signs transfers between the testnet's funded accounts (DIR/accounts.secret.json) on the fly, sends them
in batches to every node's POST /v1/actions/batch round-robin, and records each action's hash and
submit time (unix seconds) so that the caller can measure submit-to-finalized latency.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import sys
import time
from pathlib import Path

import aiohttp

from iotex_node import actions
from iotex_node import genesis as genesis_mod
from iotex_node.crypto.keys import PrivateKey


async def run(net: Path, tps: float, seconds: float, out: Path, batch: int, fee: int | None) -> dict[str, object]:
    manifest = json.loads((net / "testnet.json").read_text())
    if fee is None:  # the genesis minimum: every node admits it (unless its mempool.min_fee is higher)
        fee = max(genesis_mod.load(net / "genesis.json").min_fee, 1)
    apis = [n["api"] for n in manifest["nodes"]]
    chain_id = manifest["chain_id"]
    keys = [PrivateKey(bytes.fromhex(s)) for s in json.loads((net / "accounts.secret.json").read_text())]
    if len(keys) < 2:
        raise SystemExit("the network needs at least 2 funded accounts (testnet --accounts N)")
    nonces = [0] * len(keys)
    submits: list[tuple[str, float]] = []
    rejected = 0
    errors = 0
    reasons: collections.Counter[str] = collections.Counter()
    rng = random.Random(7)
    interval = batch / tps
    sent = 0
    start = time.time()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        # One request in flight per node, like a wallet waiting for its answer: a node handles its
        # requests in order, so a sender's nonces arrive in order.
        queues: list[asyncio.Queue[tuple[list[dict[str, object]], list[str], float] | None]] = [asyncio.Queue() for _ in apis]

        async def worker(url: str, q: asyncio.Queue[tuple[list[dict[str, object]], list[str], float] | None]) -> None:
            while (item := await q.get()) is not None:
                await send(url, *item)

        async def send(url: str, wires: list[dict[str, object]], hashes: list[str], t: float) -> None:
            nonlocal rejected, errors
            try:
                async with session.post(url + "/v1/actions/batch", json={"actions": wires}) as resp:
                    body = await resp.json()
                    if resp.status != 200:
                        errors += len(wires)
                        return
            except (TimeoutError, aiohttp.ClientError):
                errors += len(wires)
                return
            for h, r in zip(hashes, body["results"], strict=True):
                if "error" in r:
                    rejected += 1
                    reasons[r["error"]["code"]] += 1
                else:
                    submits.append((h, t))

        workers = [asyncio.create_task(worker(url, q)) for url, q in zip(apis, queues, strict=True)]
        # Each account talks to one node, as a wallet does: its nonces then arrive in order.
        pinned = [list(range(n, len(keys), len(apis))) for n in range(len(apis))]
        cursor = [0] * len(apis)
        next_at = time.monotonic()
        while time.time() - start < seconds:
            node = (sent // batch) % len(apis)
            wires, hashes = [], []
            for _ in range(batch):
                mine = pinned[node]
                i = mine[cursor[node] % len(mine)]
                cursor[node] += 1
                j = (i + 1 + rng.randrange(len(keys) - 1)) % len(keys)
                nonces[i] += 1
                a = actions.sign(
                    keys[i],
                    chain_id=chain_id,
                    nonce=nonces[i],
                    fee=fee,
                    type="transfer",
                    payload={"to": keys[j].address, "amount": 1},
                )
                wires.append(a.to_wire())
                hashes.append(a.hash_hex)
            queues[node].put_nowait((wires, hashes, time.time()))
            sent += batch
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        for q in queues:
            q.put_nowait(None)
        await asyncio.wait(workers, timeout=60)
    elapsed = time.time() - start
    out.write_text(
        json.dumps({"submits": submits, "rejected": rejected, "reasons": reasons, "errors": errors, "elapsed": elapsed})
    )
    return {
        "sent": sent,
        "accepted": len(submits),
        "rejected": rejected,
        "reasons": dict(reasons),
        "errors": errors,
        "elapsed": elapsed,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--net", type=Path, required=True)
    p.add_argument("--tps", type=float, default=1000.0)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--fee", type=int, default=None, help="rau per transfer (default: the genesis min_fee)")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    if a.tps <= 0 or a.seconds <= 0 or not 1 <= a.batch <= 2000:
        raise SystemExit("--tps and --seconds must be positive and --batch 1..2000")
    stats = asyncio.run(run(a.net, a.tps, a.seconds, a.out, a.batch, a.fee))
    print(json.dumps(stats), file=sys.stderr)


if __name__ == "__main__":
    main()
