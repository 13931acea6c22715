"""Peer-to-peer transport: TCP, length-prefixed frames, and a handshake that proves each side's key.

Frame: 4-byte big-endian length, then that many bytes of JSON. A frame longer than `max_frame`, a frame
that is not a JSON object with a known type, or a failed handshake drops that peer and nothing else.

Handshake (each side, concurrently): send HELLO {chain_id, genesis, node, nonce, listen, version}; on the
peer's HELLO, check chain and genesis, then send AUTH {sig = sign(sha256("iotex-p2p" | peer nonce |
own address | peer address))}; the peer checks that the signature recovers to the address its HELLO
claimed. Only then are other messages read. The link is authenticated, not encrypted: consensus
messages and actions are public and individually signed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from iotex_node.crypto.keys import PrivateKey, recover_address

log = logging.getLogger("iotex_node.p2p")

DEFAULT_MAX_FRAME = 8 * 1024 * 1024
HANDSHAKE_TIMEOUT = 5.0
SEND_QUEUE_LIMIT = 4096
_LEN = struct.Struct(">I")


class ProtocolViolation(Exception):
    """A peer broke the wire protocol; the connection is dropped."""


def _auth_digest(nonce: bytes, signer: str, verifier: str) -> bytes:
    return hashlib.sha256(b"iotex-p2p" + nonce + signer.encode() + verifier.encode()).digest()


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
        self.peers: dict[str, Peer] = {}
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
            backoff = 0.2
            await self._run_connection(reader, writer, outbound=True, dialed=seed)
            await asyncio.sleep(0.2)

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

    async def _read_frame(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readexactly(4)
        (n,) = _LEN.unpack(head)
        if n == 0 or n > self.max_frame:
            raise ProtocolViolation(f"frame of {n} bytes (limit {self.max_frame})")
        return await reader.readexactly(n)

    @staticmethod
    def _decode(data: bytes) -> dict[str, Any]:
        try:
            msg = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise ProtocolViolation("frame is not JSON") from None
        if not isinstance(msg, dict) or not isinstance(msg.get("t"), str):
            raise ProtocolViolation("frame is not a typed message")
        return msg

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[str, dict[str, Any]]:
        nonce = os.urandom(32)
        hello = {
            "t": "hello",
            "chain_id": self.chain_id,
            "genesis": self.genesis_hash,
            "node": self.key.address,
            "nonce": nonce.hex(),
            "listen": self.listen,
            "version": self.version,
        }
        writer.write(_frame(orjson.dumps(hello)))
        theirs = self._decode(await self._read_frame(reader))
        if theirs.get("t") != "hello":
            raise ProtocolViolation("expected hello")
        if theirs.get("chain_id") != self.chain_id or theirs.get("genesis") != self.genesis_hash:
            raise ProtocolViolation(f"peer is on chain {theirs.get('chain_id')} genesis {str(theirs.get('genesis'))[:16]}")
        node = theirs.get("node")
        try:
            their_nonce = bytes.fromhex(str(theirs.get("nonce")))
        except ValueError:
            raise ProtocolViolation("hello nonce is not hex") from None
        if not isinstance(node, str) or len(their_nonce) != 32:
            raise ProtocolViolation("hello is malformed")
        if node == self.key.address:
            raise ProtocolViolation("connected to ourselves")
        sig = self.key.sign(_auth_digest(their_nonce, self.key.address, node))
        writer.write(_frame(orjson.dumps({"t": "auth", "sig": sig.hex()})))
        auth = self._decode(await self._read_frame(reader))
        try:
            their_sig = bytes.fromhex(str(auth.get("sig")))
        except ValueError:
            raise ProtocolViolation("auth signature is not hex") from None
        if auth.get("t") != "auth" or recover_address(their_sig, _auth_digest(nonce, node, self.key.address)) != node:
            raise ProtocolViolation(f"peer could not prove it holds the key of {node}")
        return node, theirs

    async def _run_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, outbound: bool, dialed: str | None
    ) -> None:
        peername = writer.get_extra_info("peername")
        address = f"{peername[0]}:{peername[1]}" if peername else "?"
        try:
            node, hello = await asyncio.wait_for(self._handshake(reader, writer), HANDSHAKE_TIMEOUT)
        except (TimeoutError, ProtocolViolation, asyncio.IncompleteReadError, OSError) as exc:
            if isinstance(exc, ProtocolViolation) and self.on_violation:
                self.on_violation("handshake")
            log.info("handshake with %s failed: %s", address, exc or type(exc).__name__)
            writer.close()
            return
        existing = self.peers.get(node)
        if existing is not None and not existing.closed:
            # Both sides dialed: keep the connection dialed by the lower address, on both ends alike.
            dialer_of_new = self.key.address if outbound else node
            keep_new = dialer_of_new == min(self.key.address, node)
            if not keep_new:
                writer.close()
                return
            existing.close("replaced by a simultaneous connection")
        listen = hello.get("listen") if isinstance(hello.get("listen"), str) else None
        peer = Peer(node, address, outbound, dialed or listen, writer, version=str(hello.get("version", ""))[:64])
        self.peers[node] = peer
        writer_task = asyncio.ensure_future(self._write_loop(peer))
        if self.on_connect:
            self.on_connect(peer)
        try:
            while not peer.closed:
                data = await self._read_frame(reader)
                msg = self._decode(data)
                res = self.on_message(peer, msg, data)
                if res is not None:
                    await res
        except ProtocolViolation as exc:
            if self.on_violation:
                self.on_violation("frame")
            peer.close(f"protocol violation: {exc}")
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
