"""A restarted node's way back: the key derived beside the imports, start-up moments, sync without the grace."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from iotex_node import init_request, sync
from iotex_node.crypto import keystore
from iotex_node.errors import KeystoreError, StorageError
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


# --- the database asked for at install (init_request) ----------------------------------------------------


def _requested_home(tmp_path: Path) -> tuple[OneDelegate, Path, Path]:
    """A home as the playbooks leave it for a release that reads requests: no database, init.request."""
    import hashlib
    import json

    net, home = _home(tmp_path)
    db = home / "data" / "chain.db"
    for p in db.parent.glob("chain.db*"):
        p.unlink()
    digest = hashlib.sha256((home / "genesis.json").read_bytes()).hexdigest()
    (home / init_request.FILE).write_text(json.dumps({"genesis_sha256": digest}) + "\n")
    return net, home, db


def test_a_requested_database_is_created_from_the_genesis_once_and_the_request_consumed(tmp_path: Path) -> None:
    from iotex_node.chain import Chain

    net, home, db = _requested_home(tmp_path)
    made: list[Path] = []

    def initialize(path: Path) -> None:
        made.append(path)
        Chain.initialize(net.genesis, path)

    assert init_request.apply(home, db, home / "genesis.json", initialize) is True
    assert made == [db] and db.exists() and not (home / init_request.FILE).exists()
    assert init_request.apply(home, db, home / "genesis.json", initialize) is False  # no request: nothing to do
    # a request left beside an existing database (restored meanwhile) is dropped, the database kept
    (home / init_request.FILE).write_text('{"genesis_sha256": "' + "0" * 64 + '"}')
    assert init_request.apply(home, db, home / "genesis.json", initialize) is False
    assert made == [db] and not (home / init_request.FILE).exists()


def test_a_request_for_another_genesis_or_a_malformed_one_is_refused_and_makes_no_database(tmp_path: Path) -> None:
    _net, home, db = _requested_home(tmp_path)
    (home / "genesis.json").write_text((home / "genesis.json").read_text().replace("{", '{"x": 1, ', 1))
    with pytest.raises(StorageError, match=r"is for a genesis with sha256 [0-9a-f]{64}, but .*genesis\.json has sha256"):
        init_request.apply(home, db, home / "genesis.json", lambda p: pytest.fail("initialized"))
    assert not db.exists() and (home / init_request.FILE).exists()  # kept: the operator decides
    for bad in ("{", '{"genesis_sha256": "ABC"}', "[]", "x" * 5000):
        (home / init_request.FILE).write_text(bad)
        with pytest.raises(StorageError, match=r"init\.request is malformed"):
            init_request.apply(home, db, home / "genesis.json", lambda p: pytest.fail("initialized"))
    assert not db.exists()


@pytest.mark.slow
def test_a_node_process_creates_its_requested_database_only_with_the_right_password(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    _net, home, db = _requested_home(tmp_path)
    (home / "keystore.pass").write_text("not the password\n")
    cmd = [sys.executable, "-m", "iotex_node", "run", "--home", str(home)]
    bad = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode != 0 and "wrong password" in bad.stderr + bad.stdout
    assert not db.exists() and (home / init_request.FILE).exists()  # a home whose secrets are wrong gets no database

    (home / "keystore.pass").write_text("pw\n")
    (home / "admin.token").write_text("t" * 43 + "\n")
    (home / "admin.token").chmod(0o600)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not ((home / "node.pid").exists() and db.exists()) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[0]
        assert db.exists() and not (home / init_request.FILE).exists()
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    assert "requested at install" in out and proc.returncode == 0, out
