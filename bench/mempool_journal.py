"""What the mempool's journal costs on the submit path, and what its reload costs at start.

    python bench/mempool_journal.py [--actions 6000] [--clients 64] [--batch 100] [--batch-clients 4]
                                    [--reload 10000] [--rounds 3] [--http 10000] [--threads 8]

For each durability (off: no journal, the node before issue 15; write; fsync, the default), one in-process
node (no sockets: what the API does per request, without HTTP) admits pre-signed transfers of many senders:
`--clients` concurrent clients each submit one action at a time and wait for the node's answer (as POST
/v1/actions does: admitted, then answered once the journal has it), then the same actions' worth in batches of
`--batch` from `--batch-clients` concurrent clients (POST /v1/actions/batch: one wait per batch). Without a
journal each request still yields to the event loop once (a request handler does). Accepted actions/s, side by
side, with the machine's speed reference (bench/_speed.py) printed in the same run. Then the start-up cost:
re-admitting a journal of `--reload` actions (`Node._reload_mempool`, which runs beside the API's import, in
chunks).

With `--http N` (the default 10000), the same through the real HTTP API of a one-delegate node process
(paused, so that every action stays in the mempool), durability off vs fsync: N/2 single submissions from
`--threads` client threads, then N actions in batches.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import logging
import statistics
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


def _http(base: Path, durability: str, n_singles: int, n_batched: int, threads: int, batch: int) -> tuple[float, float]:
    """Accepted actions/s through the real HTTP API of a one-delegate node process (paused: nothing is
    included, every action stays in the mempool): singles from `threads` client threads, then batches."""
    from iotex_node import admin
    from iotex_node.sdk import ChainParams, transfer
    from iotex_ops.lab.localnet import LocalNet
    from iotex_ops.traffic import read_accounts

    net = LocalNet.generate(base / durability, 1, accounts=SENDERS, rate_limit=1e6)
    cfg = config_mod.load(net.nodes[0].home)
    cfg.mempool_durability = durability
    cfg.rate_limit_burst = 10**6
    cfg.write()
    try:
        net.start()
        net.wait_for("the node's API", lambda: net.chain(0) is not None, 60)
        admin.call(cfg, "POST", "/pause")
        params = ChainParams.from_chain_info(net.get(0, "/v1/chain"))
        keys = read_accounts(net.root)
        to = keys[0].address

        def signed(k: PrivateKey, first: int, n: int) -> list[Action]:
            return [transfer(k, chain_id=params.chain_id, nonce=first + i, fee=params.min_fee, to=to, amount=1) for i in range(n)]

        per_s = n_singles // SENDERS
        per_b = n_batched // SENDERS
        acts = {k.address: (signed(k, 1, per_s), signed(k, 1 + per_s, per_b)) for k in keys}
        groups = [keys[i::threads] for i in range(threads)]  # each thread its own senders: nonces in order
        client = net.client(0)

        def singles(ks: list[PrivateKey]) -> None:
            for k in ks:
                for a in acts[k.address][0]:
                    client.submit(a, timeout=30)

        def batches(ks: list[PrivateKey]) -> None:
            flat = [a for k in ks for a in acts[k.address][1]]
            for i in range(0, len(flat), batch):
                res = client.submit_batch(flat[i : i + batch], timeout=60)
                assert res.accepted == len(flat[i : i + batch]), res.results[:1]

        out = []
        for fn, n in ((singles, per_s * SENDERS), (batches, per_b * SENDERS)):
            t = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(threads) as pool:
                list(pool.map(fn, groups))
            out.append(n / (time.perf_counter() - t))
        return out[0], out[1]
    finally:
        net.stop()


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
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--http", type=int, default=10000, help="actions per HTTP run (0: no HTTP runs)")
    ap.add_argument("--threads", type=int, default=8, help="HTTP client threads")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("iotex_node").setLevel(logging.ERROR)
    keys = [PrivateKey() for _ in range(SENDERS)]
    net = OneDelegate.new(funded={k.address: 10**30 for k in keys})
    total = max(2 * args.actions, args.reload)
    print(f"signing {total} transfers of {SENDERS} senders...", flush=True)
    acts = _actions(net, keys, total)
    # Senders take turns in `acts`: the first half's nonces come right before the second half's.
    single, batched = acts[: args.actions], acts[args.actions : 2 * args.actions]
    print(reference_line())
    results: dict[str, list[tuple[float, int, float, int]]] = {d: [] for d in ("off", "write", "fsync")}
    with tempfile.TemporaryDirectory(prefix="bench-mempool-journal-") as tmp:
        for r in range(args.rounds):  # the modes interleaved, round after round: a shared machine's noise
            for durability in results:
                node = _node(Path(tmp) / f"s{r}", net, durability)
                s = asyncio.run(_singles(node, single, args.clients))
                commits_s = node.journal.commits if node.journal else 0
                b = asyncio.run(_batches(node, batched, args.batch, args.batch_clients))
                commits = node.journal.commits if node.journal else 0
                _close(node)
                results[durability].append((s, commits_s, b, commits - commits_s))
        print(f"\naccepted actions/s, in-process (no HTTP), {args.actions} actions each, {SENDERS} senders, "
              f"median of {args.rounds} rounds (each round's figure in brackets):")  # fmt: skip
        print(f"{'durability':<11}{'singles (' + str(args.clients) + ' clients)':>24}{'commits':>9}"
              f"{str(args.batch_clients) + ' x batches of ' + str(args.batch):>22}{'commits':>9}")  # fmt: skip
        base_s = statistics.median(x[0] for x in results["off"])
        base_b = statistics.median(x[2] for x in results["off"])
        for d, runs in results.items():
            s = statistics.median(x[0] for x in runs)
            b = statistics.median(x[2] for x in runs)
            cs = runs[-1][1]
            cb = runs[-1][3]
            print(f"{d:<11}{s:>15,.0f} ({s / base_s:4.0%}){cs:>9}{b:>15,.0f} ({b / base_b:4.0%}){cb:>9}"
                  f"   [{', '.join(f'{x[0]:,.0f}' for x in runs)} | {', '.join(f'{x[2]:,.0f}' for x in runs)}]")  # fmt: skip
        print(reference_line())
        if args.http:
            print(f"\naccepted actions/s through HTTP (one node process, {args.threads} client threads; singles: "
                  f"POST /v1/actions, {args.http // 2} actions; batches of {args.batch}, {args.http} actions):")  # fmt: skip
            http = {d: [_http(Path(tmp) / f"h{r}", d, args.http // 2, args.http, args.threads, args.batch)
                        for r in range(args.rounds)] for d in ("off", "fsync")}  # fmt: skip
            hs0 = statistics.median(x[0] for x in http["off"])
            hb0 = statistics.median(x[1] for x in http["off"])
            for d, runs in http.items():
                hs = statistics.median(x[0] for x in runs)
                hb = statistics.median(x[1] for x in runs)
                print(f"{d:<11}singles {hs:>8,.0f} ({hs / hs0:4.0%})   batches {hb:>8,.0f} ({hb / hb0:4.0%})"
                      f"   [{', '.join(f'{x[0]:,.0f}' for x in runs)} | {', '.join(f'{x[1]:,.0f}' for x in runs)}]")  # fmt: skip
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
