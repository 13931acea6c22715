"""Catch-up of a restarted delegate, with and without a lying peer (issue 11), on a 4-delegate lab network.

    python bench/catchup.py [--behind 15] [--block-interval-ms 1000] [--cap 60] [--node-src DIR]

For each mode, node3 is stopped, the other three finalize `--behind` more blocks, and node3 is started
again; catch-up is the time from starting its process until its finalized height reaches the height the
network had when it was started.

- honest: nothing else is connected;
- liar: an in-process fake peer (real handshake, a fresh key on every connection) dials node3 from the
  moment its port opens, claims height 10^12 every second and never answers get_blocks; a second one
  does the same to node0, whose /readyz is sampled meanwhile (a lying peer must not make a healthy node
  unready).

`--node-src DIR` runs the node processes from another source tree (e.g. a `git archive` of an older
commit's node/ directory) for a before/after comparison; the fake peer speaks the same protocol to both.
Catch-up is given up after `--cap` seconds. A speed reference for the machine is printed with the figures:
libsecp256k1 public-key recoveries per second (what signature checks cost here).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import coincurve
import orjson

from iotex_node import config as config_mod
from iotex_node import genesis as genesis_mod
from iotex_node import p2p
from iotex_node.sdk import PrivateKey, recover_address
from iotex_ops.lab import LocalNet

LIE = 10**12


@dataclass
class LiarStats:
    connections: int = 0
    get_blocks: int = 0
    dropped_by_node: int = 0
    refused: int = 0


@dataclass
class Liar:
    """A fake peer that claims LIE and never answers get_blocks, reconnecting with a fresh key when dropped."""

    host: str
    port: int
    chain_id: int
    genesis_hex: str
    stats: LiarStats = field(default_factory=LiarStats)
    stop: threading.Event = field(default_factory=threading.Event)

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> dict[str, Any]:
        (n,) = struct.unpack(">I", await reader.readexactly(4))
        return dict(orjson.loads(await reader.readexactly(n)))

    @staticmethod
    def _send(writer: asyncio.StreamWriter, msg: dict[str, Any]) -> None:
        data = orjson.dumps(msg)
        writer.write(struct.pack(">I", len(data)) + data)

    async def _session(self) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        key = PrivateKey()
        try:
            theirs = await asyncio.wait_for(self._read(reader), 5)
            nonce = os.urandom(32)
            self._send(writer, {"t": "hello", "chain_id": self.chain_id, "genesis": self.genesis_hex, "node": key.address,
                                "nonce": nonce.hex(), "listen": "127.0.0.1:1", "version": "liar"})  # fmt: skip
            await asyncio.wait_for(self._read(reader), 5)  # its auth (not checked: we are the liar)
            digest = p2p._auth_digest(bytes.fromhex(theirs["nonce"]), key.address, theirs["node"])
            self._send(writer, {"t": "auth", "sig": key.sign(digest).hex()})
            self.stats.connections += 1

            async def claim() -> None:
                while True:
                    self._send(writer, {"t": "status", "height": LIE, "hash": "00" * 32})
                    await writer.drain()
                    await asyncio.sleep(1.0)

            claiming = asyncio.ensure_future(claim())
            try:
                while not self.stop.is_set():
                    msg = await self._read(reader)
                    if msg.get("t") == "get_blocks":
                        self.stats.get_blocks += 1
            finally:
                claiming.cancel()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            if self.stats.connections:
                self.stats.dropped_by_node += 1
        finally:
            writer.close()

    async def run(self) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(OSError):  # the node is not listening yet (or refused us): try again at once
                await self._session()
            await asyncio.sleep(0.02)

    def start(self) -> threading.Thread:
        def main() -> None:
            loop = asyncio.new_event_loop()
            task = loop.create_task(self.run())
            while not self.stop.is_set():
                loop.run_until_complete(asyncio.sleep(0.1))
            task.cancel()
            loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
            loop.close()

        t = threading.Thread(target=main, daemon=True)
        t.start()
        return t


def per_second(fn: Callable[[], object], seconds: float = 1.0) -> int:
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(100):
            fn()
        n += 100
    return int(n / (time.perf_counter() - t0))


def speed_reference() -> dict[str, int]:
    """Signature recoveries per second on one core: libsecp256k1 alone, and the node's recover_address
    (recovery plus the address derivation every signature check pays)."""
    key = PrivateKey()
    digest = os.urandom(32)
    sig = key.sign(digest)
    recover = coincurve.PublicKey.from_signature_and_message
    return {
        "libsecp256k1_recover_per_s": per_second(lambda: recover(sig, digest, hasher=None)),
        "recover_address_per_s": per_second(lambda: recover_address(sig, digest)),
    }


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback URL of our own node
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, urllib.error.URLError):
        return 0


def metric_sum(net: LocalNet, i: int, prefix: str) -> dict[str, float]:
    try:
        text = net.client(i).metrics(timeout=2)
    except OSError:  # NodeApiError is one
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(prefix):
            name, _, value = line.rpartition(" ")
            out[name[len(prefix) :]] = float(value)
    return out


def max_height(net: LocalNet, nodes: list[int]) -> int:
    return max((h for i, h in enumerate(net.heights()) if i in nodes and h is not None), default=0)


def one_round(net: LocalNet, mode: str, behind: int, cap: float, env: dict[str, str]) -> dict[str, Any]:
    net.stop_node(3)
    h0 = max_height(net, [0, 1, 2])
    net.wait_height(h0 + behind, nodes=[0, 1, 2], timeout=behind * 10 + 30)
    genesis = genesis_mod.load(net.root / "genesis.json")
    liars: list[tuple[Liar, threading.Thread]] = []
    if mode == "liar":
        for i in (3, 0):
            host, _, port = config_mod.load(net.nodes[i].home).p2p_listen.rpartition(":")
            liar = Liar(host, int(port), genesis.chain_id, genesis.hash.hex())
            liars.append((liar, liar.start()))
    target = max_height(net, [0, 1, 2])
    t0 = time.monotonic()
    net.start_node(3, env=env)
    api_up: float | None = None
    caught: float | None = None
    ready_samples: list[int] = []
    last_sample = 0.0
    while time.monotonic() - t0 < cap:
        c = net.chain(3)
        now = time.monotonic()
        if c is not None and api_up is None:
            api_up = now - t0
        if c is not None and c["finalized_height"] >= target:
            caught = now - t0
            break
        if mode == "liar" and now - last_sample > 0.5:
            ready_samples.append(http_status(net.nodes[0].api + "/readyz"))
            last_sample = now
        time.sleep(0.05)
    if mode == "liar":
        for _ in range(6):  # node0 keeps being sampled a little while after the restarted node caught up
            ready_samples.append(http_status(net.nodes[0].api + "/readyz"))
            time.sleep(0.5)
    violations = metric_sum(net, 3, "iotex_p2p_violations_total")
    for liar, thread in liars:
        liar.stop.set()
        thread.join(timeout=5)
    net.wait_height(max_height(net, [0, 1, 2]), nodes=[3], timeout=cap + 30)  # settled before the next round
    out: dict[str, Any] = {
        "mode": mode,
        "stopped_at": h0,
        "target": target,
        "catch_up_s": None if caught is None else round(caught, 2),
        "api_up_s": None if api_up is None else round(api_up, 2),
        "node3_violations": violations,
    }
    if mode == "liar":
        s3 = liars[0][0].stats
        out["liar_on_node3"] = {"connections": s3.connections, "get_blocks": s3.get_blocks, "dropped": s3.dropped_by_node}
        ok = sum(1 for s in ready_samples if s == 200)
        out["node0_readyz_200"] = f"{ok}/{len(ready_samples)}"
    return out


def make_net(root: Path, block_interval_ms: int, env: dict[str, str]) -> LocalNet:
    """A 4-delegate lab network, its homes generated by the code the nodes will run (their config files
    must be the ones that code reads)."""
    if not env:
        return LocalNet.generate(root, 4, block_interval_ms=block_interval_ms)
    script = (
        "import sys; from pathlib import Path; from iotex_node.testnet import TestnetSpec, generate; "
        "generate(TestnetSpec(delegates=4, out=Path(sys.argv[1]), block_interval_ms=int(sys.argv[2])))"
    )
    subprocess.run([sys.executable, "-c", script, str(root), str(block_interval_ms)], env={**os.environ, **env}, check=True)
    return LocalNet.load(root)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--behind", type=int, default=15, help="blocks the network advances while node3 is down")
    ap.add_argument("--block-interval-ms", type=int, default=1000)
    ap.add_argument("--cap", type=float, default=60.0, help="give up on a catch-up after this many seconds")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--node-src", type=Path, help="run the nodes from this source tree (its node/ directory)")
    args = ap.parse_args()
    env = {"PYTHONPATH": str(args.node_src.resolve())} if args.node_src else {}
    root = Path(tempfile.mkdtemp(prefix="iotex-bench-catchup-"))
    results: list[dict[str, Any]] = []
    speed = speed_reference()
    try:
        net = make_net(root / "net", args.block_interval_ms, env)
        with net:
            for i in range(4):
                net.start_node(i, env=env)
            net.wait_height(3, timeout=60)
            for _ in range(args.rounds):
                for mode in ("honest", "liar"):
                    results.append(one_round(net, mode, args.behind, args.cap, env))
                    print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    finally:
        # Child processes are stopped by the LocalNet context; keep nothing on disk.
        shutil.rmtree(root, ignore_errors=True)

    def fmt(r: dict[str, Any]) -> str:
        return f"{r['catch_up_s']:.2f} s" if r["catch_up_s"] is not None else f"> {args.cap:.0f} s (not caught up)"

    print(f"catch-up of a restarted delegate, 4 delegates, {args.block_interval_ms} ms blocks, {args.behind} blocks behind")
    print(f"  nodes from: {args.node_src or 'this tree'}")
    print(f"  {'round':<6} {'honest':>12} {'with a liar':>30}  node0 /readyz 200 while lied to")
    for k in range(args.rounds):
        h, lie = results[2 * k], results[2 * k + 1]
        print(f"  {k + 1:<6} {fmt(h):>12} {fmt(lie):>30}  {lie.get('node0_readyz_200', '-')}")
    print(f"  speed reference (one core): {speed['libsecp256k1_recover_per_s']:,} libsecp256k1 recoveries/s, "
          f"{speed['recover_address_per_s']:,} recover_address/s; {os.cpu_count()} CPUs, "
          f"{platform.platform()}, Python {platform.python_version()}")  # fmt: skip
    print(json.dumps({"results": results, "speed": speed}, indent=2))
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    sys.exit(main())
