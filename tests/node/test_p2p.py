"""The P2P layer drops a peer that breaks the wire protocol, and nothing else.

A 1-delegate network (the delegate finalizes alone) with a full node as its peer runs in-process; the
test opens raw TCP connections to the delegate's p2p port and misbehaves in one way each. Every such
connection must be closed, counted in iotex_p2p_violations_total, and the delegate must keep its full
node peer and keep finalizing. Frames are a 4-byte big-endian length and JSON; see iotex_node/p2p.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from iotex_node import p2p
from iotex_node.crypto.keys import PrivateKey
from iotex_node.node import Node
from iotex_node.p2p import Network, Peer
from tests.node.test_api import make_testnet, metric, start_node, wait_for, wait_height

pytestmark = pytest.mark.slow  # nodes in this process on real TCP sockets

MAX_FRAME = 64 * 1024


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any]:
    (n,) = struct.unpack(">I", await reader.readexactly(4))
    return dict(orjson.loads(await reader.readexactly(n)))


@dataclass
class Pair:
    delegate: Node
    full: Node
    full_peer: Peer  # the delegate's connection to the full node

    def violations(self, kind: str) -> float:
        return metric(self.delegate, "iotex_p2p_violations_total", kind=kind)


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    net = make_testnet(tmp_path / "net", full_nodes=1, accounts=0)
    delegate = await start_node(net.homes[0], max_frame_bytes=MAX_FRAME)
    full: Node | None = None
    try:
        full = await start_node(net.homes[1], peers=[delegate.net.listen])
        await wait_for(lambda: full is not None and len(delegate.net.peers) == 1, 10, "the full node to connect")
        (peer,) = delegate.net.peers.values()
        assert peer.node_id == full.node_key.address
        await wait_height(full, 2)  # it follows the delegate's chain
        yield Pair(delegate, full, peer)
    finally:
        if full is not None:
            await full.stop()
        await delegate.stop()


class RawPeer:
    """A hand-driven TCP connection to a node's p2p port."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: PrivateKey) -> None:
        self.reader, self.writer, self.key = reader, writer, key

    @classmethod
    async def connect(cls, node: Node, key: PrivateKey | None = None) -> RawPeer:
        reader, writer = await asyncio.open_connection(node.net.listen_host, node.net.listen_port)
        return cls(reader, writer, key or PrivateKey())

    def hello(self, target: Node, **override: Any) -> dict[str, Any]:
        msg = {
            "t": "hello",
            "chain_id": target.genesis.chain_id,
            "genesis": target.genesis.hash.hex(),
            "node": self.key.address,
            "nonce": os.urandom(32).hex(),
            "listen": "127.0.0.1:1",
            "version": "test",
        }
        msg.update(override)
        return msg

    async def handshake(
        self, target: Node, *, signer: PrivateKey | None = None, operator: PrivateKey | None = None, **hello: Any
    ) -> dict[str, Any]:
        """Read the node's hello, send ours and our auth; return the node's hello. With `operator`, also
        prove that this peer runs that delegate (operator) key."""
        theirs = await read_frame(self.reader)
        assert theirs["t"] == "hello" and theirs["node"] == target.node_key.address
        if operator is not None:
            hello.setdefault("operator", operator.address)
        self.send_json(self.hello(target, **hello))
        auth = await read_frame(self.reader)
        assert auth["t"] == "auth"
        nonce = bytes.fromhex(theirs["nonce"])
        digest = p2p._auth_digest(nonce, self.key.address, target.node_key.address)
        msg = {"t": "auth", "sig": (signer or self.key).sign(digest).hex()}
        if operator is not None:
            op_digest = p2p._operator_digest(nonce, operator.address, self.key.address, target.node_key.address)
            msg["op_sig"] = operator.sign(op_digest).hex()
        self.send_json(msg)
        await self.writer.drain()
        return theirs

    def send_json(self, msg: Any) -> None:
        self.writer.write(frame(json.dumps(msg).encode()))

    async def flush(self) -> None:
        with contextlib.suppress(ConnectionError):  # the node may already have hung up mid-write
            await self.writer.drain()

    async def closed_by_node(self, timeout: float = 5.0) -> bool:
        """Read (and discard) until the node closes the connection; False if it is still open at the timeout."""
        try:
            async with asyncio.timeout(timeout):
                while await self.reader.read(65536):
                    pass
        except TimeoutError:
            return False
        except ConnectionError:
            pass
        return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def assert_unharmed(pair: Pair, h0: int) -> None:
    """The delegate still has its full node (the same connection) and keeps finalizing, and so does the full node."""
    await wait_height(pair.delegate, h0 + 2)
    await wait_height(pair.full, h0 + 1)
    assert pair.delegate.net.peers.get(pair.full.node_key.address) is pair.full_peer
    assert not pair.full_peer.closed


Misbehaviour = Callable[[RawPeer, Node], Awaitable[None]]


async def oversized_frame_after_handshake(raw: RawPeer, node: Node) -> None:
    await raw.handshake(node)
    raw.writer.write(struct.pack(">I", MAX_FRAME + 1) + b"{" * 1024)


async def oversized_frame_body_after_handshake(raw: RawPeer, node: Node) -> None:
    await raw.handshake(node)
    payload = json.dumps({"t": "status", "height": 1, "pad": "x" * MAX_FRAME}).encode()
    raw.writer.write(frame(payload))


async def zero_length_frame(raw: RawPeer, node: Node) -> None:
    await raw.handshake(node)
    raw.writer.write(struct.pack(">I", 0))


async def non_json_frame_after_handshake(raw: RawPeer, node: Node) -> None:
    await raw.handshake(node)
    raw.writer.write(frame(b"\x00\xffnot json at all"))


async def json_that_is_not_a_message(raw: RawPeer, node: Node) -> None:
    await raw.handshake(node)
    raw.send_json([1, 2, 3])


async def message_without_type(raw: RawPeer, node: Node) -> None:
    await raw.handshake(node)
    raw.send_json({"height": 5})


async def unknown_message_type(raw: RawPeer, node: Node) -> None:
    await raw.handshake(node)
    raw.send_json({"t": "gimme_keys"})


async def malformed_known_message(raw: RawPeer, node: Node) -> None:
    await raw.handshake(node)
    raw.send_json({"t": "status", "height": "tall"})


async def garbage_instead_of_handshake(raw: RawPeer, node: Node) -> None:
    await read_frame(raw.reader)
    raw.writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # "GET " is a 1.2 GB frame length


async def small_garbage_frame_instead_of_handshake(raw: RawPeer, node: Node) -> None:
    await read_frame(raw.reader)
    raw.writer.write(frame(os.urandom(100)))


async def message_instead_of_hello(raw: RawPeer, node: Node) -> None:
    await read_frame(raw.reader)
    raw.send_json({"t": "status", "height": 1})


async def wrong_chain_id(raw: RawPeer, node: Node) -> None:
    await read_frame(raw.reader)
    raw.send_json(raw.hello(node, chain_id=node.genesis.chain_id + 1))


async def wrong_genesis(raw: RawPeer, node: Node) -> None:
    await read_frame(raw.reader)
    raw.send_json(raw.hello(node, genesis="00" * 32))


async def malformed_hello(raw: RawPeer, node: Node) -> None:
    await read_frame(raw.reader)
    raw.send_json(raw.hello(node, nonce="short"))


async def hello_claiming_the_nodes_own_address(raw: RawPeer, node: Node) -> None:
    await read_frame(raw.reader)
    raw.send_json(raw.hello(node, node=node.node_key.address))


async def auth_signed_by_another_key(raw: RawPeer, node: Node) -> None:
    await raw.handshake(node, signer=PrivateKey())


async def auth_claiming_another_nodes_address(raw: RawPeer, node: Node) -> None:
    # Claims to be some other node (here: a fresh address) but can only sign with its own key.
    impostor = PrivateKey()
    await raw.handshake(node, node=impostor.address)


async def auth_not_hex(raw: RawPeer, node: Node) -> None:
    theirs = await read_frame(raw.reader)
    assert theirs["t"] == "hello"
    raw.send_json(raw.hello(node))
    await read_frame(raw.reader)
    raw.send_json({"t": "auth", "sig": "zz"})


CASES: dict[str, tuple[Misbehaviour, str]] = {
    "frame longer than max_frame (header only)": (oversized_frame_after_handshake, "frame"),
    "frame longer than max_frame (whole body)": (oversized_frame_body_after_handshake, "frame"),
    "zero-length frame": (zero_length_frame, "frame"),
    "non-JSON frame after a valid handshake": (non_json_frame_after_handshake, "frame"),
    "JSON that is not an object": (json_that_is_not_a_message, "frame"),
    "message without a type": (message_without_type, "frame"),
    "unknown message type": (unknown_message_type, "frame"),
    "known message with a wrong field type": (malformed_known_message, "frame"),
    "garbage instead of a handshake": (garbage_instead_of_handshake, "handshake"),
    "a random frame instead of a handshake": (small_garbage_frame_instead_of_handshake, "handshake"),
    "a message before the handshake": (message_instead_of_hello, "handshake"),
    "handshake with a wrong chain id": (wrong_chain_id, "handshake"),
    "handshake with a wrong genesis": (wrong_genesis, "handshake"),
    "malformed hello": (malformed_hello, "handshake"),
    "hello with the node's own address": (hello_claiming_the_nodes_own_address, "handshake"),
    "auth signed by another key": (auth_signed_by_another_key, "handshake"),
    "hello claiming an address whose key it lacks": (auth_claiming_another_nodes_address, "handshake"),
    "auth signature not hex": (auth_not_hex, "handshake"),
}


async def test_each_protocol_violation_drops_only_that_connection(pair: Pair) -> None:
    for name, (misbehave, kind) in CASES.items():
        h0 = pair.delegate.chain.height
        before = pair.violations(kind)
        raw = await RawPeer.connect(pair.delegate)
        try:
            await misbehave(raw, pair.delegate)
            await raw.flush()
            assert await raw.closed_by_node(), f"{name}: the node kept the connection open"
        finally:
            await raw.close()
        await wait_for(lambda kind=kind, before=before: pair.violations(kind) == before + 1, 3, f"{name}: a {kind} violation")
        assert raw.key.address not in pair.delegate.net.peers, name
        await assert_unharmed(pair, h0)


async def test_a_well_behaved_raw_peer_is_kept_and_served(pair: Pair) -> None:
    raw = await RawPeer.connect(pair.delegate)
    try:
        await raw.handshake(pair.delegate)
        await wait_for(lambda: raw.key.address in pair.delegate.net.peers, 3, "the raw peer to be registered")
        status = await read_frame(raw.reader)  # the node greets a new peer with its status
        assert status["t"] == "status" and isinstance(status["height"], int)
        raw.send_json({"t": "status", "height": 0, "hash": "00" * 32})
        raw.send_json({"t": "get_blocks", "from": 1, "count": 2})
        await raw.writer.drain()
        async with asyncio.timeout(5):
            while (msg := await read_frame(raw.reader))["t"] != "blocks":
                pass
        assert [b["header"]["height"] for b in msg["blocks"]] == [1, 2]
        assert not await raw.closed_by_node(timeout=0.5)
        assert pair.violations("frame") == 0 and pair.violations("handshake") == 0
    finally:
        await raw.close()
    await wait_for(lambda: raw.key.address not in pair.delegate.net.peers, 3, "the closed peer to be forgotten")
    await assert_unharmed(pair, pair.delegate.chain.height)


async def test_a_silent_connection_is_dropped_after_the_handshake_timeout(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pair.delegate.net, "handshake_timeout", 0.5)
    h0 = pair.delegate.chain.height
    raw = await RawPeer.connect(pair.delegate)
    try:
        assert await raw.closed_by_node(timeout=5.0)
    finally:
        await raw.close()
    assert pair.violations("handshake") == 0, "a timeout is not a protocol violation"
    await assert_unharmed(pair, h0)


async def test_many_bad_connections_at_once(pair: Pair) -> None:
    h0 = pair.delegate.chain.height
    before = pair.violations("handshake") + pair.violations("frame")
    cases = list(CASES.values()) * 3

    async def one(misbehave: Misbehaviour) -> bool:
        raw = await RawPeer.connect(pair.delegate)
        try:
            await misbehave(raw, pair.delegate)
            await raw.flush()
            return await raw.closed_by_node()
        finally:
            await raw.close()

    assert all(await asyncio.gather(*(one(m) for m, _ in cases)))
    expected = before + len(cases)
    await wait_for(lambda: pair.violations("handshake") + pair.violations("frame") == expected, 3, "every violation counted")
    await assert_unharmed(pair, h0)


async def test_out_of_range_integer_in_a_known_message_is_a_violation(pair: Pair) -> None:
    raw = await RawPeer.connect(pair.delegate)
    try:
        await raw.handshake(pair.delegate)
        raw.send_json({"t": "get_blocks", "from": 2**63 + 5, "count": 1})
        await raw.writer.drain()
        assert await raw.closed_by_node()
    finally:
        await raw.close()
    await wait_for(lambda: pair.violations("frame") == 1, 2, "a frame violation")


# --- two Network objects ---------------------------------------------------------------------------


async def test_two_networks_connect_authenticate_and_exchange_messages() -> None:
    genesis_hash = os.urandom(32)
    got: dict[str, list[tuple[str, dict[str, Any]]]] = {"a": [], "b": []}
    violations: list[str] = []

    def handler(name: str) -> Callable[[Peer, dict[str, Any], bytes], None]:
        return lambda peer, msg, raw: got[name].append((peer.node_id, msg))

    ka, kb = PrivateKey(), PrivateKey()
    a = Network(ka, 7, genesis_hash, "127.0.0.1", 0, [], handler("a"), on_violation=violations.append, version="a")
    await a.start()
    b = Network(kb, 7, genesis_hash, "127.0.0.1", 0, [a.listen], handler("b"), on_violation=violations.append, version="b")
    try:
        await b.start()
        await wait_for(lambda: kb.address in a.peers and ka.address in b.peers, 5, "both sides to authenticate")
        assert a.peers[kb.address].version == "b" and b.peers[ka.address].version == "a"
        assert b.peers[ka.address].outbound and not a.peers[kb.address].outbound
        assert b.broadcast(orjson.dumps({"t": "ping", "n": 1})) == 1
        assert a.peers[kb.address].send(orjson.dumps({"t": "pong", "n": 2}))
        await wait_for(lambda: bool(got["a"]) and bool(got["b"]), 5, "the messages to arrive")
        assert got["a"] == [(kb.address, {"t": "ping", "n": 1})]
        assert got["b"] == [(ka.address, {"t": "pong", "n": 2})]
        assert violations == []
    finally:
        await b.stop()
        await a.stop()


async def test_a_network_on_another_genesis_is_refused() -> None:
    violations: list[str] = []
    ka, kc = PrivateKey(), PrivateKey()
    a = Network(ka, 7, os.urandom(32), "127.0.0.1", 0, [], lambda p, m, r: None, on_violation=violations.append)
    await a.start()
    c = Network(kc, 7, os.urandom(32), "127.0.0.1", 0, [a.listen], lambda p, m, r: None)
    try:
        await c.start()
        await wait_for(lambda: len(violations) >= 1, 5, "the handshake to be refused")
        assert violations[0] == "handshake"
        assert a.peers == {} and c.peers == {}
    finally:
        await c.stop()
        await a.stop()


async def test_a_peer_claiming_blocks_it_cannot_serve_is_dropped(pair: Pair) -> None:
    raw = await RawPeer.connect(pair.delegate)
    try:
        await raw.handshake(pair.delegate)
        raw.send_json({"t": "status", "height": 2**64 - 1, "hash": "00" * 32})
        await raw.writer.drain()
        # The node asks the liar for blocks; an empty answer gets it dropped and its claim forgotten.
        for _ in range(100):
            msg = await asyncio.wait_for(read_frame(raw.reader), 10)
            if msg.get("t") == "get_blocks":
                break
        raw.send_json({"t": "blocks", "blocks": []})
        await raw.writer.drain()
        assert await raw.closed_by_node()
    finally:
        await raw.close()
    await wait_for(lambda: pair.violations("false_status") == 1, 3, "a false_status violation")
    assert pair.delegate.is_synced()
