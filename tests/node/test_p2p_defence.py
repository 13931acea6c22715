"""A node under attack from its peers (issue 11): forged consensus messages, lying sync peers, too many
peers, slow frames.

Each attacker is an in-process fake peer (RawPeer from test_p2p.py): a TCP client that does the real
handshake with its own key and then sends crafted frames. The node under attack is a real Node running
in this event loop (a 1-delegate network, 200 ms blocks; a second node where a test needs one).
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from iotex_node import block as blk
from iotex_node import p2p, sync
from iotex_node.crypto.keys import PrivateKey
from iotex_node.node import Node
from iotex_node.p2p import Peer
from tests.node.test_api import make_testnet, metric, start_node, wait_for, wait_height
from tests.node.test_p2p import RawPeer, frame, read_frame

pytestmark = pytest.mark.slow  # nodes in this process on real TCP sockets


def violations(node: Node, kind: str) -> float:
    return metric(node, "iotex_p2p_violations_total", kind=kind)


def refused(node: Node, reason: str) -> float:
    return metric(node, "iotex_p2p_refused_total", reason=reason)


@pytest.fixture
async def delegate(tmp_path: Path) -> AsyncIterator[Node]:
    net = make_testnet(tmp_path / "net", full_nodes=1, accounts=0)
    node = await start_node(net.homes[0], max_frame_bytes=64 * 1024, max_inbound_peers=4)
    try:
        await wait_height(node, 2)
        yield node
    finally:
        await node.stop()


async def peer_of(node: Node, key: PrivateKey | None = None, operator: PrivateKey | None = None) -> RawPeer:
    """A fake peer that completed its handshake and that `node` took."""
    raw = await RawPeer.connect(node, key)
    await raw.handshake(node, operator=operator)
    await wait_for(lambda: raw.key.address in node.net.peers, 5, "the fake peer to be taken")
    return raw


async def still_connected(raw: RawPeer, node: Node, seconds: float = 1.0) -> bool:
    return not await raw.closed_by_node(timeout=seconds) and raw.key.address in node.net.peers


def vote_wire(signer: PrivateKey, chain_id: int, height: int, round_: int = 0, **override: Any) -> dict[str, Any]:
    v = blk.sign_vote(signer, chain_id, blk.PREVOTE, height, round_, None)
    return {"t": "vote", **v.to_wire(), **override}


def proposal_wire(node: Node, signer: PrivateKey | None, height: int, round_: int = 0, proposer: str = "") -> dict[str, Any]:
    """A proposal of a block the node itself would build, re-labelled for `height`; signed by `signer`
    (None: an empty signature)."""
    block = node.chain.build_block(round_, proposer or node.key.address, int(time.time() * 1000)).block
    wire = block.to_wire(with_certificate=False)
    wire["header"]["height"] = height
    header = blk.Header.from_wire(wire["header"])
    sig = b""
    if signer is not None:
        sig = signer.sign(blk.proposal_digest(node.genesis.chain_id, height, round_, -1, header.hash))
    return {
        "t": "proposal",
        "height": height,
        "round": round_,
        "pol_round": -1,
        "proposer": proposer or node.key.address,
        "signature": sig.hex(),
        "block": wire,
    }


# --- 3: forged consensus messages ------------------------------------------------------------------


async def test_a_vote_without_signature_claiming_the_delegate_drops_and_bans_the_peer(delegate: Node) -> None:
    raw = await peer_of(delegate)
    try:
        forged = vote_wire(PrivateKey(), delegate.genesis.chain_id, delegate.chain.height + 50, voter=delegate.key.address)
        forged["signature"] = ""
        raw.send_json(forged)
        await raw.flush()
        assert await raw.closed_by_node()
    finally:
        await raw.close()
    await wait_for(lambda: violations(delegate, "bad_signature") == 1, 3, "a bad_signature violation")
    assert delegate.net.banned(raw.key.address)
    # The same node id is refused for a while: the handshake completes, then the node hangs up.
    again = await RawPeer.connect(delegate, raw.key)
    try:
        await again.handshake(delegate)
        assert await again.closed_by_node()
    finally:
        await again.close()
    assert refused(delegate, "banned") == 1
    assert raw.key.address not in delegate.net.peers
    h0 = delegate.chain.height
    await wait_height(delegate, h0 + 2)


async def test_a_vote_signed_by_another_key_than_its_voter_is_a_bad_signature(delegate: Node) -> None:
    raw = await peer_of(delegate)
    try:
        forged = vote_wire(PrivateKey(), delegate.genesis.chain_id, delegate.chain.height + 50, voter=delegate.key.address)
        raw.send_json(forged)
        await raw.flush()
        assert await raw.closed_by_node()
    finally:
        await raw.close()
    await wait_for(lambda: violations(delegate, "bad_signature") == 1, 3, "a bad_signature violation")


async def test_an_unsigned_proposal_from_the_slots_proposer_drops_the_peer(delegate: Node) -> None:
    raw = await peer_of(delegate)
    try:
        raw.send_json(proposal_wire(delegate, None, delegate.chain.height + 50))
        await raw.flush()
        assert await raw.closed_by_node()
    finally:
        await raw.close()
    await wait_for(lambda: violations(delegate, "bad_signature") == 1, 3, "a bad_signature violation")
    assert delegate.net.banned(raw.key.address)


async def test_a_proposal_signed_by_a_non_delegate_drops_the_peer(delegate: Node) -> None:
    delegate.pause()  # the 1-delegate chain stops, so "the height being decided" holds still
    try:
        await wait_for(lambda: delegate.hc is not None and delegate.hc.height == delegate.chain.height + 1, 5, "a fixed height")
        assert delegate.hc is not None
        outsider = PrivateKey()
        raw = await peer_of(delegate, outsider)
        try:
            raw.send_json(proposal_wire(delegate, outsider, delegate.hc.height, delegate.hc.round, proposer=outsider.address))
            await raw.flush()
            assert await raw.closed_by_node()
        finally:
            await raw.close()
        await wait_for(lambda: violations(delegate, "not_proposer") == 1, 3, "a not_proposer violation")
        assert delegate.net.banned(outsider.address)
    finally:
        delegate.resume()
    h0 = delegate.chain.height
    await wait_height(delegate, h0 + 2)


async def test_a_forgery_kept_for_the_next_height_is_held_against_its_sender_when_checked(delegate: Node) -> None:
    delegate.pause()
    try:
        await wait_for(lambda: delegate.hc is not None and delegate.hc.height == delegate.chain.height + 1, 5, "a fixed height")
        assert delegate.hc is not None
        outsider = PrivateKey()
        raw = await peer_of(delegate, outsider)
        # Well signed by its claimed proposer, for the next height: kept until that height starts.
        raw.send_json(proposal_wire(delegate, outsider, delegate.hc.height + 1, 0, proposer=outsider.address))
        await raw.flush()
        assert await still_connected(raw, delegate, 0.5)
    finally:
        delegate.resume()
    try:
        assert await raw.closed_by_node(timeout=10)
    finally:
        await raw.close()
    assert violations(delegate, "not_proposer") == 1
    assert delegate.net.banned(outsider.address)


async def test_what_an_honest_relay_may_send_does_not_drop_the_peer(delegate: Node) -> None:
    chain_id = delegate.genesis.chain_id
    raw = await peer_of(delegate)
    try:
        h = delegate.chain.height
        stranger = PrivateKey()
        sent = [
            # an old vote, even with a garbage signature: decided heights are not checked at all
            vote_wire(stranger, chain_id, max(1, h - 1), voter=delegate.key.address, signature="00" * 65),
            # a well-signed vote from a key that is not a delegate here (it may be one of another epoch)
            vote_wire(stranger, chain_id, h + 1),
            vote_wire(stranger, chain_id, h + 2),
            # a well-signed vote for a height far ahead
            vote_wire(stranger, chain_id, h + 10_000),
            # a well-signed proposal for a height already decided
            proposal_wire(delegate, stranger, max(1, h - 1), proposer=stranger.address),
        ]
        for m in sent:
            raw.send_json(m)
        await raw.flush()
        assert await still_connected(raw, delegate, 1.5)
        assert sum(
            violations(delegate, k) for k in ("bad_signature", "not_proposer", "bad_message", "frame")
        ) == 0  # fmt: skip
    finally:
        await raw.close()


async def test_a_flood_of_forged_votes_costs_one_log_line_and_one_drop(delegate: Node, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="iotex_node")
    raw = await peer_of(delegate)
    chain_id = delegate.genesis.chain_id
    try:
        base = delegate.chain.height + 50
        for i in range(3000):
            forged = vote_wire(PrivateKey(), chain_id, base + i % 20, i // 20, voter=delegate.key.address)
            raw.send_json(forged)
        await raw.flush()
        assert await raw.closed_by_node()
    finally:
        await raw.close()
    await wait_for(lambda: raw.key.address not in delegate.net.peers, 3, "the peer to be gone")
    lines = [r for r in caplog.records if raw.key.address in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert "bad_signature" in lines[0].getMessage() and "refused for" in lines[0].getMessage()
    assert violations(delegate, "bad_signature") == 1


# --- 5: caps and deadlines -------------------------------------------------------------------------


async def test_inbound_peers_are_capped_and_a_delegates_node_evicts_a_non_delegate(delegate: Node) -> None:
    cap = delegate.net.max_inbound
    peers = [await peer_of(delegate) for _ in range(cap)]
    extra = await RawPeer.connect(delegate)
    try:
        await extra.handshake(delegate)
        assert await extra.closed_by_node(), "a peer beyond the cap was taken"
        assert refused(delegate, "inbound_full") == 1
        # A node proving it runs a delegate key of the epoch gets in: the newest non-delegate makes room.
        standby = await peer_of(delegate, operator=delegate.key)
        assert delegate.net.peers[standby.key.address].operator == delegate.key.address
        assert await peers[-1].closed_by_node()
        assert refused(delegate, "evicted") == 1
        assert all(p.key.address in delegate.net.peers for p in peers[:-1])
        assert len([p for p in delegate.net.peers.values() if not p.outbound]) == cap
        await standby.close()
    finally:
        await extra.close()
        for p in peers:
            await p.close()


async def test_an_operator_proof_that_does_not_check_fails_the_handshake(delegate: Node) -> None:
    raw = await RawPeer.connect(delegate)
    try:
        # Claims the delegate's operator address, proves it with another key.
        theirs = await read_frame(raw.reader)
        raw.send_json(raw.hello(delegate, operator=delegate.key.address))
        assert (await read_frame(raw.reader))["t"] == "auth"
        nonce = bytes.fromhex(theirs["nonce"])
        me, them = raw.key.address, delegate.node_key.address
        op_sig = PrivateKey().sign(p2p._operator_digest(nonce, delegate.key.address, me, them)).hex()
        raw.send_json({"t": "auth", "sig": raw.key.sign(p2p._auth_digest(nonce, me, them)).hex(), "op_sig": op_sig})
        await raw.flush()
        assert await raw.closed_by_node()
    finally:
        await raw.close()
    await wait_for(lambda: violations(delegate, "handshake") == 1, 3, "a handshake violation")


async def test_per_address_limits_apply_to_non_loopback_peers(delegate: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(p2p, "_is_loopback", lambda ip: False)
    monkeypatch.setattr(delegate.net, "max_inbound_per_ip", 2)
    peers = [await peer_of(delegate) for _ in range(2)]
    extra = await RawPeer.connect(delegate)
    try:
        await extra.handshake(delegate)
        assert await extra.closed_by_node()
        assert refused(delegate, "ip_full") == 1
    finally:
        await extra.close()
        for p in peers:
            await p.close()


async def test_concurrent_handshakes_are_capped(delegate: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delegate.net, "max_handshakes", 2)
    monkeypatch.setattr(delegate.net, "handshake_timeout", 30.0)
    slow = [await RawPeer.connect(delegate) for _ in range(2)]  # connect and say nothing
    try:
        await wait_for(lambda: delegate.net._handshaking == 2, 5, "two handshakes in progress")
        third = await RawPeer.connect(delegate)
        try:
            assert await third.closed_by_node(timeout=5)
        finally:
            await third.close()
        assert refused(delegate, "handshakes_busy") == 1
    finally:
        for r in slow:
            await r.close()
    # Once they are gone, handshakes are taken again.
    await wait_for(lambda: delegate.net._handshaking == 0, 5, "the handshakes to end")
    ok = await peer_of(delegate)
    await ok.close()


async def test_a_handshake_frame_is_small(delegate: Node) -> None:
    raw = await RawPeer.connect(delegate)
    try:
        await read_frame(raw.reader)
        raw.send_json(raw.hello(delegate, pad="x" * (p2p.HANDSHAKE_MAX_FRAME + 1)))
        await raw.flush()
        assert await raw.closed_by_node()
    finally:
        await raw.close()
    await wait_for(lambda: violations(delegate, "handshake") == 1, 3, "a handshake violation")


async def test_a_silent_peer_is_dropped_after_the_idle_timeout(delegate: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(p2p, "IDLE_TIMEOUT", 0.5)
    raw = await peer_of(delegate)
    try:
        assert await raw.closed_by_node(timeout=5)
    finally:
        await raw.close()
    await wait_for(lambda: violations(delegate, "idle") == 1, 3, "an idle drop")
    assert not delegate.net.banned(raw.key.address), "a dead peer may come back"


async def test_a_slow_drip_of_a_large_frame_is_dropped(delegate: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(p2p, "FRAME_GRACE", 0.5)
    monkeypatch.setattr(p2p, "MIN_FRAME_RATE", 10_000)
    raw = await peer_of(delegate)
    t0 = time.monotonic()
    try:
        raw.writer.write(struct.pack(">I", 60_000))  # within max_frame, then one byte every 50 ms

        async def drip() -> None:
            for _ in range(400):
                raw.writer.write(b" ")
                await raw.flush()
                await asyncio.sleep(0.05)

        dripping = asyncio.ensure_future(drip())
        try:
            assert await raw.closed_by_node(timeout=10)
        finally:
            dripping.cancel()
    finally:
        await raw.close()
    assert time.monotonic() - t0 < 8
    await wait_for(lambda: violations(delegate, "slow_frame") == 1, 3, "a slow_frame drop")


async def test_a_large_frame_at_a_fair_rate_is_read(delegate: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(p2p, "FRAME_GRACE", 1.0)
    monkeypatch.setattr(p2p, "MIN_FRAME_RATE", 5_000)
    raw = await peer_of(delegate)
    try:
        payload = orjson.dumps({"t": "status", "height": 1, "hash": "00" * 32, "pad": "x" * 30_000})
        data = frame(payload)
        for i in range(0, len(data), 5_000):  # ~30 KB at ~100 KB/s: each chunk buys a second
            raw.writer.write(data[i : i + 5_000])
            await raw.flush()
            await asyncio.sleep(0.05)
        assert await still_connected(raw, delegate, 1.0)
    finally:
        await raw.close()
    assert violations(delegate, "slow_frame") == 0


# --- 4: sync and readiness -------------------------------------------------------------------------


class FakeWriter:
    def close(self) -> None:
        pass


def fake_peer(node_id: str, height: int, *, outbound: bool = False, operator: str | None = None) -> Peer:
    return Peer(node_id, "127.0.0.1:1", outbound, None, FakeWriter(), height=height, operator=operator)  # type: ignore[arg-type]


def test_network_height_is_the_lower_median_of_the_weighed_claims() -> None:
    honest = [fake_peer(f"n{i}", 30 + i) for i in range(3)]
    liar = fake_peer("liar", 10**12)
    assert sync.network_height([*honest, liar], set()) == 31
    assert sync.network_height([liar], set()) == 10**12  # alone it is all there is (sync will test it)
    assert sync.network_height([], set()) is None
    # 150 random-key peers cannot outvote the peers we dialed...
    sybils = [fake_peer(f"s{i}", 10**12) for i in range(150)]
    dialed = [fake_peer("d0", 40, outbound=True), fake_peer("d1", 41, outbound=True)]
    assert sync.network_height([*sybils, *dialed], set()) == 40
    # ...nor the epoch's delegates, who count once each (a standby is the same delegate).
    dels = [fake_peer("a", 50, operator="opA"), fake_peer("a2", 48, operator="opA"), fake_peer("b", 51, operator="opB")]
    assert sync.network_height([*sybils, *dialed, *dels], {"opA", "opB"}) == 50
    assert sync.network_height([*sybils, *dels], {"opX"}) == 10**12  # not delegates of this epoch: all count


def test_sync_prefers_peers_whose_claim_the_network_backs_and_hedges() -> None:
    import random

    state = sync.SyncState(random.Random(1))
    honest = [fake_peer(f"n{i}", 32) for i in range(3)]
    liar = fake_peer("liar", 10**12)
    peers = [liar, *honest]
    chosen = {state.choose(peers, 3, set(), 0.0) for _ in range(50)}
    assert liar not in chosen and len(chosen) == 3  # random among the backed ones
    # Asked one; no second request until HEDGE_AFTER, then another peer, up to MAX_INFLIGHT.
    first = state.choose(peers, 3, set(), 0.0)
    assert first is not None
    state.sent(first, 4, 29, 0.0)
    assert state.choose(peers, 3, set(), sync.HEDGE_AFTER / 2) is None
    second = state.choose(peers, 3, set(), sync.HEDGE_AFTER + 0.01)
    assert second is not None and second is not first
    state.sent(second, 4, 29, sync.HEDGE_AFTER + 0.01)
    assert state.answered(second) is not None and state.answered(second) is None
    assert state.answered(liar) is None  # never asked
    assert [r.peer for r in state.expired(sync.REQUEST_TIMEOUT + 1)] == [first]
    # With only the liar ahead, it is asked (and must back its claim with blocks).
    assert state.choose([liar, fake_peer("x", 3)], 3, set(), 100.0) is liar


@pytest.fixture
async def fresh_full_node(tmp_path: Path) -> AsyncIterator[tuple[Node, Node]]:
    """A delegate at height >= 8 and a full node started without seeds (at height 0): the test decides
    who its peers are."""
    net = make_testnet(tmp_path / "net", full_nodes=1, accounts=0)
    delegate = await start_node(net.homes[0])
    full: Node | None = None
    try:
        await wait_height(delegate, 8)
        full = await start_node(net.homes[1], peers=[])
        yield delegate, full
    finally:
        if full is not None:
            await full.stop()
        await delegate.stop()


async def serve_blocks_from(raw: RawPeer, source: Node, height: int) -> None:
    """Play an honest peer: claim `height` and answer each get_blocks from `source`'s store."""
    raw.send_json({"t": "status", "height": height, "hash": "00" * 32})
    await raw.flush()
    while True:
        msg = await read_frame(raw.reader)
        if msg["t"] == "get_blocks":
            datas = source.store.blocks_data(msg["from"], max(0, min(msg["count"], height - msg["from"] + 1)))
            raw.writer.write(frame(b'{"t":"blocks","blocks":[' + b",".join(datas) + b"]}"))
            await raw.flush()


async def test_a_peer_that_never_answers_get_blocks_does_not_hold_up_catch_up(
    fresh_full_node: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync, "REQUEST_TIMEOUT", 60.0)  # catch-up must not wait for the liar's timeout
    delegate, full = fresh_full_node
    liar = await peer_of(full)
    honest = None
    serving: asyncio.Future[None] | None = None
    try:
        liar.send_json({"t": "status", "height": 10**12, "hash": "00" * 32})
        await liar.flush()
        async with asyncio.timeout(10):  # alone, the liar is asked first
            while (await read_frame(liar.reader))["t"] != "get_blocks":
                pass
        target = delegate.chain.height
        honest = await peer_of(full)
        t0 = time.monotonic()
        serving = asyncio.ensure_future(serve_blocks_from(honest, delegate, target))
        await wait_height(full, target, timeout=20)
        took = time.monotonic() - t0
        assert took < 10, f"catch-up took {took:.1f} s with a liar connected"
        assert sync.network_height(full.net.peers.values(), set()) == target  # lower median of [target, 10**12]
        assert full.is_synced()
        assert liar.key.address in full.net.peers  # not yet timed out: it was simply not waited for
    finally:
        if serving is not None:
            serving.cancel()
        if honest is not None:
            await honest.close()
        await liar.close()


async def test_a_peer_that_does_not_answer_in_time_is_dropped(
    fresh_full_node: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync, "REQUEST_TIMEOUT", 1.0)
    _delegate, full = fresh_full_node
    liar = await peer_of(full)
    try:
        liar.send_json({"t": "status", "height": 10**12, "hash": "00" * 32})
        await liar.flush()
        assert await liar.closed_by_node(timeout=10)
    finally:
        await liar.close()
    await wait_for(lambda: violations(full, "sync_timeout") == 1, 3, "a sync_timeout drop")
    assert full.net.banned(liar.key.address)


async def test_blocks_nobody_asked_for_drop_the_peer(fresh_full_node: tuple[Node, Node]) -> None:
    delegate, full = fresh_full_node
    raw = await peer_of(full)
    try:
        raw.writer.write(frame(b'{"t":"blocks","blocks":[' + b",".join(delegate.store.blocks_data(1, 2)) + b"]}"))
        await raw.flush()
        assert await raw.closed_by_node()
    finally:
        await raw.close()
    await wait_for(lambda: violations(full, "unsolicited") == 1, 3, "an unsolicited drop")
    assert full.chain.height == 0


async def test_a_block_with_a_forged_certificate_drops_the_peer(fresh_full_node: tuple[Node, Node]) -> None:
    delegate, full = fresh_full_node
    raw = await peer_of(full)
    try:
        raw.send_json({"t": "status", "height": 5, "hash": "00" * 32})
        await raw.flush()
        async with asyncio.timeout(10):
            while (msg := await read_frame(raw.reader))["t"] != "get_blocks":
                pass
        assert msg["from"] == 1
        good = [orjson.loads(d) for d in delegate.store.blocks_data(1, 2)]
        good[1]["certificate"]["signatures"][0]["signature"] = PrivateKey().sign(b"\x00" * 32).hex()
        raw.send_json({"t": "blocks", "blocks": good})
        await raw.flush()
        assert await raw.closed_by_node()
    finally:
        await raw.close()
    await wait_for(lambda: violations(full, "bad_block") == 1, 3, "a bad_block drop")
    assert full.chain.height == 1  # the good block before it stays
    assert full.net.banned(raw.key.address)


async def test_a_liar_does_not_make_a_healthy_node_unready(tmp_path: Path) -> None:
    net = make_testnet(tmp_path / "net", full_nodes=1, accounts=0)
    delegate = await start_node(net.homes[0])
    full: Node | None = None
    liar: RawPeer | None = None
    try:
        full = await start_node(net.homes[1], peers=[delegate.net.listen])
        await wait_for(lambda: full is not None and len(delegate.net.peers) == 1, 10, "the full node to connect")
        await wait_height(full, delegate.chain.height)
        liar = await peer_of(full)
        liar.send_json({"t": "status", "height": 10**12, "hash": "00" * 32})
        await liar.flush()
        await wait_for(lambda: full is not None and full.best_peer_height() == 10**12, 5, "the claim to be heard")
        async with aiohttp.ClientSession() as http:
            for _ in range(10):  # over about two seconds
                async with http.get(full.api_url + "/readyz") as resp:
                    body = await resp.json()
                    assert resp.status == 200, body
                await asyncio.sleep(0.2)
        assert full.is_synced()
        # The full node follows its dialed peer (the delegate): the lone liar is not the majority.
        nh = full.network_height()
        assert nh is not None and nh <= full.chain.height + 1
    finally:
        if liar is not None:
            await liar.close()
        if full is not None:
            await full.stop()
        await delegate.stop()
