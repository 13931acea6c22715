"""Peer-to-peer transport: TCP, length-prefixed frames, and a handshake that proves each side's key.

Frame: 4-byte big-endian length, then that many bytes of JSON. A frame longer than `max_frame`, a frame
that is not a JSON object with a known type, or a failed handshake drops that peer and nothing else.

Handshake (each side, concurrently): send HELLO {chain_id, genesis, node, nonce, listen, version,
operator?}; on the peer's HELLO, check chain and genesis, then send AUTH {sig = sign(sha256("iotex-p2p" |
peer nonce | own address | peer address)), op_sig?}; the peer checks that the signature recovers to the
address its HELLO claimed. Only then are other messages read. The link is authenticated, not encrypted:
consensus messages and actions are public and individually signed.

The P2P identity (`node`) is a node key of its own, so that a hot standby is a distinct peer. A node that
holds a delegate (operator) key also proves it: `operator` in HELLO and `op_sig`, the operator key's
signature over sha256("iotex-p2p-operator" | peer nonce | operator | own node | peer node). The peer's
nonce makes it unreplayable; the node ids make it unusable by any other node. This is what lets a node
give the delegates of the epoch precedence over other inbound peers.

Limits (each drops or refuses one connection, never more; the config keys of [p2p] in parentheses):
- at most `max_handshakes` inbound handshakes at once (`max_handshakes_per_ip` per address), each within
  `handshake_timeout` (`handshake_timeout_s`) and with frames of at most `HANDSHAKE_MAX_FRAME` bytes;
- at most `max_inbound` inbound peers (`max_inbound_per_ip` per address): a delegate's node evicts the
  newest non-delegate inbound peer when full; outbound connections (the configured peers) are not counted;
- after the handshake, a peer silent for `IDLE_TIMEOUT` is dead (peers send status every second), and
  once a frame's first byte arrives, the rest must keep up `MIN_FRAME_RATE` after `FRAME_GRACE` seconds;
- a peer dropped for misbehaving is refused for `ProtocolViolation.ban` seconds (by node id).
Per-address limits do not apply to peers at 127.0.0.1 or ::1 (a local testnet is all 127.0.0.1); the others do.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import logging
import os
import struct
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from iotex_node.crypto.keys import PrivateKey, recover_address

log = logging.getLogger("iotex_node.p2p")

DEFAULT_MAX_FRAME = 8 * 1024 * 1024
DEFAULT_MAX_INBOUND = 50
HANDSHAKE_TIMEOUT = 5.0
HANDSHAKE_MAX_FRAME = 16 * 1024  # a hello is ~400 bytes
MAX_HANDSHAKES = 64
MAX_HANDSHAKES_PER_IP = 8
MAX_INBOUND_PER_IP = 8
IDLE_TIMEOUT = 30.0
FRAME_GRACE = 5.0
MIN_FRAME_RATE = 128 * 1024  # bytes/s once FRAME_GRACE is over: an 8 MiB frame gets about 70 s
SEND_QUEUE_LIMIT = 4096
MAX_BANS = 10_000
_LEN = struct.Struct(">I")

# Seconds a peer is refused after being dropped for each kind of violation. Proof of dishonesty (a
# signature that is not the claimed signer's, a message no honest node sends or relays) is long; what a
# broken or slow but honest node could do is short; a dead (idle) peer may come back at once.
BAN_LONG = 600.0
BAN_SHORT = 60.0
BAN_SECONDS = {
    "bad_signature": BAN_LONG,
    "not_proposer": BAN_LONG,
    "bad_message": BAN_LONG,
    "bad_block": BAN_LONG,
    "false_status": BAN_LONG,
    "unsolicited": BAN_LONG,
    "frame": BAN_SHORT,
    "slow_frame": BAN_SHORT,
    "sync_timeout": BAN_SHORT,
    "idle": 0.0,
}


class ProtocolViolation(Exception):
    """A peer broke the protocol; the connection is dropped and, by `kind`, the peer refused a while.

    `kind` is the label of iotex_p2p_violations_total: frame, handshake, idle, slow_frame, bad_signature,
    not_proposer, bad_message, bad_block, false_status, unsolicited, sync_timeout.
    """

    def __init__(self, message: str, kind: str = "frame", ban: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.ban = BAN_SECONDS.get(kind, BAN_SHORT) if ban is None else ban


def _auth_digest(nonce: bytes, signer: str, verifier: str) -> bytes:
    return hashlib.sha256(b"iotex-p2p" + nonce + signer.encode() + verifier.encode()).digest()


def _operator_digest(nonce: bytes, operator: str, signer: str, verifier: str) -> bytes:
    return hashlib.sha256(b"iotex-p2p-operator" + nonce + operator.encode() + signer.encode() + verifier.encode()).digest()


def _is_loopback(ip: str) -> bool:
    """127.0.0.1 or ::1, where a local testnet's nodes all are; not the rest of 127.0.0.0/8, so that
    clients bound to other loopback addresses (the flood drill's attackers) count as addresses of their own."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return addr in (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))


@dataclass(eq=False)
class Peer:
    node_id: str
    address: str  # host:port as seen
    outbound: bool
    listen: str | None
    writer: asyncio.StreamWriter
    queue: asyncio.Queue[bytes | None] = field(default_factory=lambda: asyncio.Queue(SEND_QUEUE_LIMIT))
    height: int = 0
    version: str = ""
    closed: bool = False
    operator: str | None = None  # the delegate (operator) address this node proved it holds the key of
    ip: str = ""
    connected_at: float = field(default_factory=time.monotonic)
    dropped_for: str | None = None  # the violation kind it was dropped for

    def send(self, payload: bytes) -> bool:
        if self.closed:
            return False
        try:
            self.queue.put_nowait(payload)
        except asyncio.QueueFull:
            # A peer that cannot keep up is dropped rather than allowed to grow our memory.
            self.close("send queue full")
            return False
        return True

    def close(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            log.info("dropping peer %s (%s): %s", self.node_id, self.address, reason)
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(None)
            self.writer.close()


Handler = Callable[[Peer, dict[str, Any], bytes], Awaitable[None] | None]


class Network:
    def __init__(
        self,
        key: PrivateKey,
        chain_id: int,
        genesis_hash: bytes,
        listen_host: str,
        listen_port: int,
        seeds: list[str],
        on_message: Handler,
        on_connect: Callable[[Peer], None] | None = None,
        on_violation: Callable[[str], None] | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        version: str = "",
        *,
        operator_key: PrivateKey | None = None,
        is_priority: Callable[[Peer], bool] | None = None,
        on_refused: Callable[[str], None] | None = None,
        max_inbound: int = DEFAULT_MAX_INBOUND,
        max_handshakes: int | None = None,
        max_handshakes_per_ip: int | None = None,
        max_inbound_per_ip: int | None = None,
        handshake_timeout: float | None = None,
    ) -> None:
        self.key = key
        self.chain_id = chain_id
        self.genesis_hash = genesis_hash.hex()
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.seeds = [s for s in seeds if s]
        self.on_message = on_message
        self.on_connect = on_connect
        self.on_violation = on_violation
        self.max_frame = max_frame
        self.version = version
        self.operator_key = operator_key
        self.is_priority = is_priority
        self.on_refused = on_refused
        self.max_inbound = max_inbound
        # None: the module's default (read now, so that a test may patch it)
        self.max_handshakes = MAX_HANDSHAKES if max_handshakes is None else max_handshakes
        self.max_handshakes_per_ip = MAX_HANDSHAKES_PER_IP if max_handshakes_per_ip is None else max_handshakes_per_ip
        self.max_inbound_per_ip = MAX_INBOUND_PER_IP if max_inbound_per_ip is None else max_inbound_per_ip
        self.handshake_timeout = HANDSHAKE_TIMEOUT if handshake_timeout is None else handshake_timeout
        self.peers: dict[str, Peer] = {}
        # node id -> monotonic time until which it is refused; oldest first.
        self.bans: OrderedDict[str, float] = OrderedDict()
        self._handshaking = 0
        self._handshaking_by_ip: Counter[str] = Counter()
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False

    @property
    def listen(self) -> str:
        return f"{self.listen_host}:{self.listen_port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.listen_host, self.listen_port, limit=self.max_frame + 64)
        sock = self._server.sockets[0]
        self.listen_port = sock.getsockname()[1]
        for seed in self.seeds:
            self._spawn(self._dial_forever(seed))

    async def stop(self) -> None:
        self._stopping = True
        if self._server:
            self._server.close()
        for p in list(self.peers.values()):
            p.close("shutting down")
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def broadcast(self, payload: bytes, exclude: Peer | None = None) -> int:
        n = 0
        for p in list(self.peers.values()):
            if p is not exclude and p.send(payload):
                n += 1
        return n

    # --- misbehaviour ------------------------------------------------------------------------------

    def punish(self, peer: Peer, exc: ProtocolViolation) -> None:
        """Drop `peer` for `exc`: count it, refuse its node id for `exc.ban` seconds, log one line."""
        if peer.dropped_for is not None:
            return  # counted when it was dropped; later messages of its are moot
        peer.dropped_for = exc.kind
        if self.on_violation:
            self.on_violation(exc.kind)
        ban = ""
        if exc.ban > 0:
            self.ban(peer.node_id, exc.ban)
            ban = f"; refused for {exc.ban:.0f} s"
        if peer.closed:  # it had gone already (a message of its was checked late): refuse it all the same
            log.info("peer %s (%s) sent %s: %s%s", peer.node_id, peer.address, exc.kind, exc, ban)
        peer.close(f"{exc.kind}: {exc}{ban}")

    def ban(self, node_id: str, seconds: float) -> None:
        now = time.monotonic()
        self.bans.pop(node_id, None)
        self.bans[node_id] = now + seconds
        while self.bans:
            first, until = next(iter(self.bans.items()))
            if until > now and len(self.bans) <= MAX_BANS:
                break
            del self.bans[first]

    def banned(self, node_id: str) -> bool:
        until = self.bans.get(node_id)
        if until is None:
            return False
        if until <= time.monotonic():
            del self.bans[node_id]
            return False
        return True

    def _refuse(self, reason: str) -> None:
        if self.on_refused:
            self.on_refused(reason)

    # --- connections -------------------------------------------------------------------------------

    async def _dial_forever(self, seed: str) -> None:
        host, _, port = seed.rpartition(":")
        backoff = 0.2
        while not self._stopping:
            if any(p.listen == seed for p in self.peers.values()):
                await asyncio.sleep(1.0)
                continue
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, int(port), limit=self.max_frame + 64), timeout=3.0
                )
            except (TimeoutError, OSError, ValueError):
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 3.0)
                continue
            if await self._run_connection(reader, writer, outbound=True, dialed=seed):
                backoff = 0.2
                await asyncio.sleep(0.2)
            else:  # refused or failed handshake (e.g. we banned it): do not redial it in a tight loop
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 3.0)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:  # tracked so that stop() also ends connections still in their handshake
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            await self._run_connection(reader, writer, outbound=False, dialed=None)
        except asyncio.CancelledError:
            # stop() cancels inbound connections; asyncio's stream callback would otherwise log the
            # cancellation as an error of this connection.
            writer.close()

    async def _read_frame(self, reader: asyncio.StreamReader, limit: int | None = None) -> bytes:
        """One frame within the handshake (whose overall timeout bounds it), of at most `limit` bytes."""
        limit = self.max_frame if limit is None else limit
        head = await reader.readexactly(4)
        (n,) = _LEN.unpack(head)
        if n == 0 or n > limit:
            raise ProtocolViolation(f"frame of {n} bytes (limit {limit})")
        return await reader.readexactly(n)

    async def _read_peer_frame(self, reader: asyncio.StreamReader) -> bytes:
        """One frame from an authenticated peer: its first byte within IDLE_TIMEOUT, then the rest at
        MIN_FRAME_RATE or faster once FRAME_GRACE has passed (a slow drip cannot hold a connection)."""
        try:
            async with asyncio.timeout(IDLE_TIMEOUT):
                first = await reader.readexactly(1)
        except TimeoutError:
            raise ProtocolViolation(f"silent for {IDLE_TIMEOUT:.0f} s", kind="idle") from None
        loop = asyncio.get_running_loop()
        start = loop.time()
        chunks: list[bytes] = []
        got, n = 0, 0
        try:
            async with asyncio.timeout_at(start + FRAME_GRACE):
                head = first + await reader.readexactly(3)
            (n,) = _LEN.unpack(head)
            if n == 0 or n > self.max_frame:
                raise ProtocolViolation(f"frame of {n} bytes (limit {self.max_frame})")
            while got < n:
                # By now at least (elapsed - FRAME_GRACE) * MIN_FRAME_RATE bytes must have arrived.
                async with asyncio.timeout_at(start + FRAME_GRACE + got / MIN_FRAME_RATE):
                    chunk = await reader.read(n - got)
                if not chunk:
                    raise asyncio.IncompleteReadError(b"".join(chunks), n)
                chunks.append(chunk)
                got += len(chunk)
        except TimeoutError:
            took = loop.time() - start
            raise ProtocolViolation(f"frame too slow: {got} of {n or '?'} bytes in {took:.1f} s", kind="slow_frame") from None
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    @staticmethod
    def _decode(data: bytes) -> dict[str, Any]:
        try:
            msg = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise ProtocolViolation("frame is not JSON") from None
        if not isinstance(msg, dict) or not isinstance(msg.get("t"), str):
            raise ProtocolViolation("frame is not a typed message")
        return msg

    async def _handshake(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[str, dict[str, Any], str | None]:
        nonce = os.urandom(32)
        hello: dict[str, Any] = {
            "t": "hello",
            "chain_id": self.chain_id,
            "genesis": self.genesis_hash,
            "node": self.key.address,
            "nonce": nonce.hex(),
            "listen": self.listen,
            "version": self.version,
        }
        if self.operator_key is not None:
            hello["operator"] = self.operator_key.address
        writer.write(_frame(orjson.dumps(hello)))
        theirs = self._decode(await self._read_frame(reader, HANDSHAKE_MAX_FRAME))
        if theirs.get("t") != "hello":
            raise ProtocolViolation("expected hello")
        if theirs.get("chain_id") != self.chain_id or theirs.get("genesis") != self.genesis_hash:
            raise ProtocolViolation(f"peer is on chain {theirs.get('chain_id')} genesis {str(theirs.get('genesis'))[:16]}")
        node = theirs.get("node")
        operator = theirs.get("operator")
        try:
            their_nonce = bytes.fromhex(str(theirs.get("nonce")))
        except ValueError:
            raise ProtocolViolation("hello nonce is not hex") from None
        if not isinstance(node, str) or len(their_nonce) != 32 or not (operator is None or isinstance(operator, str)):
            raise ProtocolViolation("hello is malformed")
        if node == self.key.address:
            raise ProtocolViolation("connected to ourselves")
        auth = {"t": "auth", "sig": self.key.sign(_auth_digest(their_nonce, self.key.address, node)).hex()}
        if self.operator_key is not None:
            op_digest = _operator_digest(their_nonce, self.operator_key.address, self.key.address, node)
            auth["op_sig"] = self.operator_key.sign(op_digest).hex()
        writer.write(_frame(orjson.dumps(auth)))
        their_auth = self._decode(await self._read_frame(reader, HANDSHAKE_MAX_FRAME))
        try:
            their_sig = bytes.fromhex(str(their_auth.get("sig")))
            op_sig = bytes.fromhex(str(their_auth.get("op_sig"))) if operator is not None else b""
        except ValueError:
            raise ProtocolViolation("auth signature is not hex") from None
        if their_auth.get("t") != "auth" or recover_address(their_sig, _auth_digest(nonce, node, self.key.address)) != node:
            raise ProtocolViolation(f"peer could not prove it holds the key of {node}")
        op_digest = _operator_digest(nonce, str(operator), node, self.key.address)
        if operator is not None and recover_address(op_sig, op_digest) != operator:
            raise ProtocolViolation(f"peer could not prove it holds the operator key of {operator}")
        return node, theirs, operator

    def _admit(self, peer: Peer, replacing: Peer | None) -> str | None:
        """Why an inbound peer that completed its handshake is refused, or None to take it (maybe
        evicting a non-delegate inbound peer to make room for a delegate's node)."""
        inbound = [p for p in self.peers.values() if not p.outbound and not p.closed and p is not replacing]
        priority = self.is_priority is not None and self.is_priority(peer)
        if not priority and not _is_loopback(peer.ip):
            same_ip = [p for p in inbound if p.ip == peer.ip and not (self.is_priority and self.is_priority(p))]
            if len(same_ip) >= self.max_inbound_per_ip:
                return "ip_full"
        if len(inbound) < self.max_inbound:
            return None
        if not priority:
            return "inbound_full"
        others = [p for p in inbound if not (self.is_priority and self.is_priority(p))]
        if not others:
            return "inbound_full"
        victim = max(others, key=lambda p: p.connected_at)
        self._refuse("evicted")
        victim.close(f"evicted: inbound peers full ({self.max_inbound}), making room for delegate {peer.operator}")
        return None

    async def _run_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, outbound: bool, dialed: str | None
    ) -> bool:
        """Handshake, admit and serve one connection until it ends; False when it never became a peer."""
        peername = writer.get_extra_info("peername")
        address = f"{peername[0]}:{peername[1]}" if peername else "?"
        ip = str(peername[0]) if peername else "?"
        busy = self._handshaking >= self.max_handshakes or (
            self._handshaking_by_ip[ip] >= self.max_handshakes_per_ip and not _is_loopback(ip)
        )
        if busy and not outbound:
            self._refuse("handshakes_busy")
            log.debug("refusing %s: too many handshakes in progress", address)
            writer.close()
            return False
        self._handshaking += 1
        self._handshaking_by_ip[ip] += 1
        try:
            node, hello, operator = await asyncio.wait_for(self._handshake(reader, writer), self.handshake_timeout)
        except (TimeoutError, ProtocolViolation, asyncio.IncompleteReadError, OSError) as exc:
            if isinstance(exc, ProtocolViolation) and self.on_violation:
                self.on_violation("handshake")
            log.info("handshake with %s failed: %s", address, exc or type(exc).__name__)
            writer.close()
            return False
        finally:
            self._handshaking -= 1
            self._handshaking_by_ip[ip] -= 1
            if self._handshaking_by_ip[ip] <= 0:
                del self._handshaking_by_ip[ip]
        if self.banned(node):
            self._refuse("banned")
            log.debug("refusing %s (%s): banned for misbehaving", node, address)
            writer.close()
            return False
        existing = self.peers.get(node)
        if existing is not None and existing.closed:
            existing = None
        if existing is not None:
            # Both sides dialed: keep the connection dialed by the lower address, on both ends alike.
            dialer_of_new = self.key.address if outbound else node
            keep_new = dialer_of_new == min(self.key.address, node)
            if not keep_new:
                writer.close()
                return False
        listen = hello.get("listen") if isinstance(hello.get("listen"), str) else None
        peer = Peer(
            node, address, outbound, dialed or listen, writer,
            version=str(hello.get("version", ""))[:64], operator=operator, ip=ip,
        )  # fmt: skip
        if not outbound:
            refused = self._admit(peer, existing)
            if refused is not None:
                self._refuse(refused)
                log.debug("refusing %s (%s): %s", node, address, refused)
                writer.close()
                return False
        if existing is not None:
            existing.close("replaced by a simultaneous connection")
        self.peers[node] = peer
        writer_task = asyncio.ensure_future(self._write_loop(peer))
        if self.on_connect:
            self.on_connect(peer)
        try:
            while not peer.closed:
                data = await self._read_peer_frame(reader)
                msg = self._decode(data)
                res = self.on_message(peer, msg, data)
                if res is not None:
                    await res
        except ProtocolViolation as exc:
            self.punish(peer, exc)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            peer.close("connection closed")
        except asyncio.CancelledError:
            peer.close("cancelled")
            raise
        except Exception:
            # A bug in handling one peer's message must not take the node down; drop that peer loudly.
            log.exception("error handling a message from %s; dropping it", node)
            peer.close("internal error while handling its message")
        finally:
            peer.close("done")
            if self.peers.get(node) is peer:
                del self.peers[node]
            writer_task.cancel()
        return True

    async def _write_loop(self, peer: Peer) -> None:
        try:
            while True:
                item = await peer.queue.get()
                if item is None:
                    return
                peer.writer.write(_frame(item))
                # Coalesce whatever else is queued before waiting on the socket.
                while not peer.queue.empty():
                    nxt = peer.queue.get_nowait()
                    if nxt is None:
                        return
                    peer.writer.write(_frame(nxt))
                await peer.writer.drain()
        except (ConnectionError, OSError):
            peer.close("write failed")
        except asyncio.CancelledError:
            pass


def _frame(payload: bytes) -> bytes:
    return _LEN.pack(len(payload)) + payload
