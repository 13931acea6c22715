"""A restarted node's way back: the key derived beside the imports, start-up moments, sync without the grace."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from iotex_node import sync
from iotex_node.crypto import keystore
from iotex_node.errors import KeystoreError
from iotex_node.node import Node
from iotex_node.p2p import Peer
from iotex_node.startup import KeyLoader, Phases, process_age
from iotex_node.testing import OneDelegate


class _Writer:
    def close(self) -> None:
        pass


def _peer(node_id: str, height: int) -> Peer:
    return Peer(node_id, "127.0.0.1:1", True, None, _Writer(), height=height)  # type: ignore[arg-type,unused-ignore]


def _sent(peer: Peer) -> list[dict[str, object]]:
    out = []
    while not peer.queue.empty():
        item = peer.queue.get_nowait()
        assert item is not None
        out.append(orjson.loads(item))
    return out


def _home(tmp_path: Path, password: str = "pw") -> tuple[OneDelegate, Path]:  # noqa: S107 - a test keystore
    net = OneDelegate.new()
    cfg = net.init_home(tmp_path / "home")
    keystore.write(cfg.path(cfg.keystore), net.delegate, password, n=2**4)  # a cheap cost: the test is about threads
    cfg.path(cfg.password_file).write_text(password + "\n")
    cfg.path(cfg.password_file).chmod(0o600)
    return net, cfg.home


def test_a_peer_one_block_ahead_waits_the_grace_only_for_a_node_deciding_that_block() -> None:
    assert sync.grace_applies(11, 10, joined=True)  # deciding 11 ourselves: its commit is probably a moment away
    assert not sync.grace_applies(11, 10, joined=False)  # just (re)started: we heard nothing of 11, ask now
    assert not sync.grace_applies(12, 10, joined=True)  # two behind: never wait


def test_a_restarted_node_asks_a_peer_one_block_ahead_at_once_and_a_joined_one_waits(tmp_path: Path) -> None:
    from iotex_node import config as config_mod

    net, home = _home(tmp_path)
    node = Node(config_mod.load(home), net.delegate, net.genesis)
    try:
        ahead = _peer("peer-ahead", node.chain.height + 1)
        node.net.peers[ahead.node_id] = ahead
        node._maybe_sync()
        asked = [m for m in _sent(ahead) if m["t"] == "get_blocks"]
        assert asked == [{"t": "get_blocks", "from": node.chain.height + 1, "count": 1}]

        node._sync.answered(ahead)  # as if it had answered; now the node decides heights itself
        node._joined = True
        node._maybe_sync()
        assert _sent(ahead) == []  # one block ahead of a node deciding that block: the grace applies
    finally:
        node.store.close()


def test_the_key_is_derived_in_a_thread_and_its_errors_reach_the_caller(tmp_path: Path) -> None:
    from iotex_node import config as config_mod

    net, home = _home(tmp_path)
    cfg = config_mod.load(home)
    assert KeyLoader(cfg).result().secret() == net.delegate.secret()

    cfg.path(cfg.password_file).write_text("not the password\n")
    loader = KeyLoader(cfg)
    with pytest.raises(KeystoreError, match="wrong password"):
        loader.result()


def test_the_keystore_is_unchanged_by_loading_it(tmp_path: Path) -> None:
    from iotex_node import config as config_mod

    _net, home = _home(tmp_path)
    cfg = config_mod.load(home)
    before = sorted(p.name for p in home.rglob("*"))
    doc = cfg.path(cfg.keystore).read_bytes()
    KeyLoader(cfg).result()
    assert sorted(p.name for p in home.rglob("*")) == before  # no cached or derived key written anywhere
    assert cfg.path(cfg.keystore).read_bytes() == doc


def test_start_up_moments_count_from_the_process_start_and_are_recorded_once() -> None:
    age = process_age()
    assert age > 0  # this test runs in a process that has been up for a while
    phases = Phases()
    assert phases.now() >= age
    first = phases.mark("config")
    assert phases.once("peers") is not None
    assert phases.once("peers") is None  # a moment happens once per process
    assert list(phases.marks) == ["config", "peers"]
    assert phases.marks["config"] == first
    assert phases.line().startswith("config ")


def test_an_in_process_node_counts_its_moments_from_its_own_creation() -> None:
    phases = Phases(since_process_start=False)
    assert phases.now() < process_age()
