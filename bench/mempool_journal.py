"""What the mempool's journal costs on the submit path, and what its reload costs at start.

    python bench/mempool_journal.py [--actions 6000] [--clients 64] [--batch 100] [--batch-clients 4]
                                    [--reload 10000]

For each durability (off: no journal, the node before issue 15; write; fsync, the default), one in-process
node (no sockets: what the API does per request, without HTTP) admits pre-signed transfers of many senders:
`--clients` concurrent clients each submit one action at a time and wait for the node's answer (as POST
/v1/actions does: admitted, then answered once the journal has it), then the same actions' worth in batches of
`--batch` from `--batch-clients` concurrent clients (POST /v1/actions/batch: one wait per batch). Without a
journal each request still yields to the event loop once (a request handler does). Accepted actions/s, side by
side, with the machine's speed reference (bench/_speed.py) printed in the same run. Then the start-up cost:
re-admitting a journal of `--reload` actions (`Node._reload_mempool`, which runs beside the API's import, in
chunks).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _speed import reference_line

from iotex_node import config as config_mod
from iotex_node.actions import Action
from iotex_node.crypto.keys import PrivateKey
from iotex_node.node import Node
from iotex_node.testing import OneDelegate, signed_transfer

SENDERS = 100


def _actions(net: OneDelegate, keys: list[PrivateKey], n: int) -> list[Action]:
    per = -(-n // len(keys))
    return [
        signed_transfer(k, chain_id=net.chain_id, nonce=i, to=net.delegate.address, fee=1)
        for i in range(1, per + 1)
        for k in keys
    ][:n]


def _node(base: Path, net: OneDelegate, durability: str) -> Node:
    cfg = net.init_home(base / durability)
    cfg.mempool_durability = durability
    cfg.write()
    return Node(config_mod.load(cfg.home), net.delegate, net.genesis)


async def _singles(node: Node, acts: list[Action], clients: int) -> float:
    wires = [a.to_wire() for a in acts]
    # One client per sender chain of nonces would serialize a sender; a shared queue in nonce order keeps
    # every client busy and each sender's nonces in order (one event loop: no two submits interleave).
    it = iter(wires)

    async def client() -> None:
        for w in it:
            node.submit(w)
            wait = node.durable()
            await (wait if wait is not None else asyncio.sleep(0))

    t = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return len(wires) / (time.perf_counter() - t)


async def _batches(node: Node, acts: list[Action], size: int, clients: int = 1) -> float:
    wires = [a.to_wire() for a in acts]
    # Batches handed out in order from one iterator: each is admitted in one step of the event loop, so
    # every sender's nonces stay in order across the clients.
    batches = iter([wires[i : i + size] for i in range(0, len(wires), size)])

    async def client() -> None:
        for batch in batches:
            for w in batch:
                node.submit(w)
            wait = node.durable()
            await (wait if wait is not None else asyncio.sleep(0))

    t = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return len(wires) / (time.perf_counter() - t)


def _close(node: Node) -> None:
    if node.journal is not None:
        node.journal.close()
    node.store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--actions", type=int, default=6000)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--batch-clients", type=int, default=4)
    ap.add_argument("--reload", type=int, default=10000)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("iotex_node").setLevel(logging.ERROR)
    keys = [PrivateKey() for _ in range(SENDERS)]
    net = OneDelegate.new(funded={k.address: 10**30 for k in keys})
    total = max(args.actions, args.reload)
    print(f"signing {2 * total} transfers of {SENDERS} senders...", flush=True)
    acts = _actions(net, keys, 2 * total)
    single, batched = acts[: args.actions], acts[total : total + args.actions]
    print(reference_line())
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-mempool-journal-") as tmp:
        for durability in ("off", "write", "fsync"):
            node = _node(Path(tmp) / "s", net, durability)
            s = asyncio.run(_singles(node, single, args.clients))
            commits_s = node.journal.commits if node.journal else 0
            b = asyncio.run(_batches(node, batched, args.batch, args.batch_clients))
            commits = node.journal.commits if node.journal else 0
            _close(node)
            rows.append((durability, s, commits_s, b, commits - commits_s))
        print(f"\naccepted actions/s, in-process (no HTTP), {args.actions} actions each, {SENDERS} senders:")
        print(f"{'durability':<11}{'singles (' + str(args.clients) + ' clients)':>24}{'commits':>9}"
              f"{str(args.batch_clients) + ' x batches of ' + str(args.batch):>22}{'commits':>9}")  # fmt: skip
        base_s, base_b = rows[0][1], rows[0][3]
        for d, s, cs, b, cb in rows:
            print(f"{d:<11}{s:>15,.0f} ({s / base_s:4.0%}){cs:>9}{b:>15,.0f} ({b / base_b:4.0%}){cb:>9}")
        print(reference_line())
        # Start-up: a journal of --reload actions, re-admitted (what runs beside the API's import).
        node = _node(Path(tmp) / "r", net, "fsync")
        asyncio.run(_batches(node, acts[: args.reload], 1000))
        assert node.journal is not None
        node.journal.close()
        node.store.close()
        again = Node(config_mod.load(node.cfg.home), net.delegate, net.genesis)
        t = time.perf_counter()
        asyncio.run(again._reload_mempool())
        took = time.perf_counter() - t
        print(f"\nreload of a journal of {args.reload} actions at start: {took:.3f} s ({len(again.chain.mempool)} restored)")
        _close(again)


if __name__ == "__main__":
    main()
