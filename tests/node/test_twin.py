"""Two holders of one delegate key on a live network: the old primary, cut off while it runs, comes back after
its standby was promoted (the failover drill's `mode=partition` with `demote_before_heal=false`, without
network namespaces).

Four delegates and a standby of node3 (node3's key, a node key of its own) run in this event loop on loopback
TCP. The partition is played above the sockets: while node3 is cut off, every frame between it and its peers is
held back (both ways) and, at the heal, delivered in order, as TCP does once a blackhole route goes (the
connections stay up: the segments are retransmitted). So the old primary comes back to the backlog of every
height it missed, the messages of the standby's key among them, byte for byte what it would sign itself.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from iotex_node.node import Node
from iotex_node.p2p import Peer
from tests.node.test_api import make_testnet, start_node, wait_for, wait_height

pytestmark = pytest.mark.slow  # nodes in this process on real TCP sockets


class Partition:
    """Cut `victim` off its peers above the sockets; `heal()` delivers what was held back, in order."""

    def __init__(self, nodes: list[Node], victim: Node) -> None:
        self.victim = victim
        self.cut = False
        self._held: dict[int, list[tuple[Peer, dict[str, Any], bytes]]] = {}
        self._handlers: dict[int, Callable[..., Any]] = {}
        self._replay: set[int] = set()
        for n in nodes:
            self._handlers[id(n)] = n.net.on_message
            n.net.on_message = self._wrap(n)

    def _crosses(self, n: Node, peer: Peer) -> bool:
        return n is self.victim or peer.node_id == self.victim.node_key.address

    def _wrap(self, n: Node) -> Callable[[Peer, dict[str, Any], bytes], Any]:
        held = self._held.setdefault(id(n), [])
        handler = self._handlers[id(n)]

        def on_message(peer: Peer, msg: dict[str, Any], raw: bytes) -> Any:
            if (self.cut or id(n) in self._replay) and self._crosses(n, peer):
                held.append((peer, msg, raw))
                return None
            return handler(peer, msg, raw)

        return on_message

    async def heal(self) -> None:
        self._replay = set(self._held)
        self.cut = False

        async def deliver(key: int) -> None:
            held, handler = self._held[key], self._handlers[key]
            while held:
                peer, msg, raw = held.pop(0)
                if peer.closed:
                    continue
                try:
                    res = handler(peer, msg, raw)
                    if res is not None:
                        await res
                except Exception as exc:  # what the read loop would do: drop the peer
                    peer.close(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0)
            self._replay.discard(key)

        await asyncio.gather(*(deliver(k) for k in list(self._held)))


def _signed_heights(node: Node, start: int) -> set[int]:
    return {h for h, *_ in node.store.signed_between(start, 10**9)}


async def _twin_net(tmp_path: Path) -> tuple[list[Node], Node]:
    net = make_testnet(tmp_path / "net", delegates=4, full_nodes=1, accounts=0)
    standby_home = net.homes[4]
    for f in ("keystore.json", "keystore.pass"):  # the standby holds node3's delegate key
        shutil.copy(net.homes[3] / f, standby_home / f)
    nodes: list[Node] = []
    try:
        for home in net.homes[:4]:
            nodes.append(await start_node(home, peers=[n.net.listen for n in nodes]))
        standby = await start_node(standby_home, peers=[n.net.listen for n in nodes], standby=True, standby_guard_seconds=1.0)
    except BaseException:
        for n in nodes:
            await n.stop()
        raise
    return nodes, standby


@pytest.mark.parametrize("claims", [True, False], ids=["holder-claims", "standby-without-claims"])
async def test_a_healed_old_primary_does_not_sign_the_heights_its_promoted_standby_signs(tmp_path: Path, claims: bool) -> None:
    """With the holder claims the old primary hears its successor's later fence in the backlog and stops. Without
    them (a standby of the previous release: its votes are the old primary's byte for byte) the double-sign check
    after the silence holds its signatures until a height finalized by the others shows the key signing there."""
    delegates, standby = await _twin_net(tmp_path)
    old = delegates[3]
    everyone = [*delegates, standby]
    if not claims:
        standby._holder_claim = dict  # type: ignore[method-assign]  # an empty claim: read as none
    try:
        await wait_height(old, 4, 20)
        await wait_for(lambda: standby.chain.height >= 4, 20, "the standby to follow")
        part = Partition(everyone, old)
        part.cut = True
        # The other three delegates are a quorum of four: the network goes on without node3.
        cut_at = old.chain.height
        await wait_height(delegates[0], cut_at + 3, 20)
        await wait_for(lambda: standby.chain.height >= delegates[0].chain.height, 10, "the standby in step")
        promoted = standby.activate(force=True)
        assert promoted is not None
        fence = promoted["fence"]
        await wait_for(lambda: any(h >= fence for h in _signed_heights(standby, fence)), 20, "the new primary to sign")
        await wait_height(delegates[0], fence + 3, 20)
        assert not old.controls.standby  # cut off, it still believes it is the primary
        await part.heal()
        await wait_for(lambda: old.chain.height >= delegates[0].chain.height - 1, 20, "the old primary to catch up")
        await wait_height(delegates[0], delegates[0].chain.height + 4, 20)

        both = _signed_heights(old, fence) & _signed_heights(standby, fence)
        assert both == set(), f"heights at or above the fence {fence} signed by both holders: {sorted(both)}"
        assert old.controls.standby, "the old primary did not step down"
        assert not standby.controls.standby, "the new primary stepped down"
        assert any(h > fence + 3 for h in _signed_heights(standby, fence)), "the new primary stopped signing"
    finally:
        for n in everyone:
            await n.stop()
