"""A node on a volume that fills up, and a node whose database is damaged (issue 17): writes pause before the
volume is full and resume when space returns, a full volume fails a commit whole (never a half-written
block), `iotex-node db check` names damage, and a node refuses to start on a damaged database by its name.

The full volume is simulated in-process: SQLite's max_page_count gives SQLITE_FULL ("database or disk is
full") exactly as ENOSPC does, and the guard's free-space reading is a function the test sets."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from iotex_node import config as config_mod
from iotex_node.chain import Chain
from iotex_node.cli import main as node_cli
from iotex_node.crypto import keystore
from iotex_node.diskguard import MIB, DiskGuard
from iotex_node.errors import DiskFull, Rejected, StorageError
from iotex_node.maintenance import check_database
from iotex_node.node import Node
from iotex_node.store import Store, is_disk_full
from iotex_node.testing import OneDelegate, certify, submit_transfers


def _home(tmp_path: Path, blocks: int = 0) -> tuple[OneDelegate, config_mod.NodeConfig]:
    net = OneDelegate.new()
    cfg = net.init_home(tmp_path / "home")
    keystore.write(cfg.path(cfg.keystore), net.delegate, "pw", n=2**4)
    cfg.path(cfg.password_file).write_text("pw\n")
    cfg.path(cfg.password_file).chmod(0o600)
    if blocks:
        chain = Chain(net.genesis, Store(cfg.path(cfg.database)))
        try:
            net.grow(chain, blocks, 40)
        finally:
            chain.store.close()
    return net, cfg


def _fill(store: Store) -> None:
    """The database may not grow by a single page: the next write that needs one fails with SQLITE_FULL."""
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count={pages}")


def _unfill(store: Store) -> None:
    store._db.execute("PRAGMA max_page_count=1073741823")


def test_the_guard_pauses_below_the_threshold_and_resumes_above_it_with_a_margin(tmp_path: Path) -> None:
    free = [100 * MIB]
    g = DiskGuard(tmp_path, 64 * MIB, free=lambda _p: free[0])
    assert not g.check() and g.paused is None
    free[0] = 63 * MIB
    assert g.check() and g.paused is not None
    assert "63.0 MiB free" in g.paused and "min_free_disk_mb=64" in g.paused and str(tmp_path) in g.paused
    free[0] = 64 * MIB + 1  # just above the line: no flapping
    assert not g.check() and g.paused is not None
    free[0] = 73 * MIB  # the threshold plus an eighth of it
    assert g.check() and g.paused is None
    off = DiskGuard(tmp_path, 0, free=lambda _p: 0)  # no guard: never paused by the reading alone
    assert not off.check() and off.paused is None
    assert off.full("database or disk is full") and off.paused is not None and "is full" in off.paused
    assert not off.check()  # stays paused until space returns
    off.free = lambda _p: 2 * MIB
    assert off.check() and off.paused is None


def test_a_full_volume_fails_a_commit_whole_and_the_block_commits_once_space_returns(tmp_path: Path) -> None:
    net, cfg = _home(tmp_path, blocks=3)
    chain = Chain(net.genesis, Store(cfg.path(cfg.database)))
    try:
        submit_transfers(chain, net.sender, 300, to=net.delegate.address)
        block = chain.build_block(0, net.delegate.address, 0).block
        cert = certify(net.delegate, net.chain_id, block)
        before = (chain.height, chain.tip_hash, chain.state.root())
        _fill(chain.store)
        with pytest.raises(DiskFull, match=r"commit of block 4 to .*chain\.db failed: database or disk is full"):
            chain.commit(block, cert)
        assert (chain.height, chain.tip_hash, chain.state.root()) == before  # memory as the database: block 3
        assert chain.store.tip() == (3, before[1])
        assert chain.store.check() == []
        _unfill(chain.store)
        chain.commit(block, cert)
        assert chain.height == 4 and chain.store.tip()[0] == 4
    finally:
        chain.store.close()
    assert check_database(cfg.home).ok


def test_disk_full_is_told_from_other_storage_errors() -> None:
    assert is_disk_full(sqlite3.OperationalError("database or disk is full"))
    assert is_disk_full(OSError(28, "No space left on device"))
    assert not is_disk_full(sqlite3.OperationalError("database is locked"))
    assert not is_disk_full(OSError(5, "Input/output error"))


def _node(tmp_path: Path, min_free_mb: int = 64, blocks: int = 2) -> tuple[OneDelegate, Node, list[int]]:
    net, cfg = _home(tmp_path, blocks=blocks)
    cfg.min_free_disk_mb = min_free_mb
    free = [10_000 * MIB]
    node = Node(cfg, net.delegate, net.genesis)
    node.disk.free = lambda _p: free[0]
    return net, node, free


def _in_loop(fn: Callable[[], object]) -> None:
    """Run `fn` where the node expects to run: in an event loop (a commit starts the next height's timers)."""

    async def go() -> None:
        fn()

    asyncio.run(go())


def _decided(net: OneDelegate, node: Node) -> tuple[object, object]:
    submit_transfers(node.chain, net.sender, 5, to=net.delegate.address)
    block = node.chain.build_block(0, net.delegate.address, 0).block
    return block, certify(net.delegate, net.chain_id, block)


def test_below_min_free_disk_the_node_pauses_writes_and_takes_them_up_when_space_returns(tmp_path: Path) -> None:
    net, node, free = _node(tmp_path)
    try:
        block, cert = _decided(net, node)
        free[0] = 10 * MIB
        assert node._disk_check() and node.writes_paused is not None
        assert not node.participating
        assert node.status()["writes_paused"] == node.writes_paused
        assert node.metrics.writes_paused._value.get() == 1
        with pytest.raises(Rejected) as refused:
            node.submit(net.transfer(100).to_wire())
        assert refused.value.code == "writes_paused"
        node._commit(block, cert)  # type: ignore[arg-type]
        assert node.chain.height == 2 and node.fatal is None  # decided elsewhere; not written here, not fatal
        free[0] = 80 * MIB
        assert not node._disk_check() and node.writes_paused is None
        assert node.participating and node.metrics.writes_paused._value.get() == 0
        _in_loop(lambda: node._commit(block, cert))  # type: ignore[arg-type]
        assert node.chain.height == 3
    finally:
        node.store.close()


def test_a_commit_that_meets_a_full_volume_pauses_writes_instead_of_killing_the_node(tmp_path: Path) -> None:
    net, node, free = _node(tmp_path, min_free_mb=0)  # no guard: the full volume is met by the write itself
    try:
        block, cert = _decided(net, node)
        free[0] = 0
        _fill(node.store)
        node._commit(block, cert)  # type: ignore[arg-type]
        assert node.fatal is None and node.chain.height == 2
        assert node.writes_paused is not None and "is full" in node.writes_paused
        assert node.store.check() == []
        _unfill(node.store)
        free[0] = 50 * MIB
        assert not node._disk_check() and node.writes_paused is None
        _in_loop(lambda: node._commit(block, cert))  # type: ignore[arg-type]
        assert node.chain.height == 3
    finally:
        node.store.close()


def test_a_node_started_on_a_volume_already_too_full_starts_with_writes_paused(tmp_path: Path) -> None:
    net, cfg = _home(tmp_path)
    cfg.min_free_disk_mb = 1 << 30  # a petabyte: more than this volume has free
    node = Node(cfg, net.delegate, net.genesis)
    try:
        assert node.writes_paused is not None and "below min_free_disk_mb=1073741824" in node.writes_paused
        assert not node.participating
    finally:
        node.store.close()


def _damage(db: Path, how: str) -> None:
    size = db.stat().st_size
    if how == "truncate":
        os.truncate(db, size // 2)
        return
    with db.open("r+b") as fh:  # overwrite pages in the middle of the file (page 1, the header, stays)
        for page in range(2, size // 4096 - 1, 3):
            fh.seek(page * 4096 + 100)
            fh.write(os.urandom(2000))


def _checkpointed(cfg: config_mod.NodeConfig) -> Path:
    db = cfg.path(cfg.database)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return db


@pytest.mark.parametrize("how", ["pages", "truncate"])
def test_db_check_names_damage_and_a_node_refuses_to_start_on_it(tmp_path: Path, how: str) -> None:
    net, cfg = _home(tmp_path, blocks=30)
    db = _checkpointed(cfg)
    runner = CliRunner()
    ok = runner.invoke(node_cli, ["db", "check", "--home", str(cfg.home)])
    assert ok.exit_code == 0, ok.output
    assert "ok at height 30" in ok.output and "(verified)" in ok.output
    _damage(db, how)
    bad = runner.invoke(node_cli, ["db", "check", "--home", str(cfg.home), "--json"])
    assert bad.exit_code == 1
    report = check_database(cfg.home)
    assert not report.ok and report.problems
    with pytest.raises(StorageError) as refused:
        Node(config_mod.load(cfg.home), net.delegate, net.genesis)
    assert str(db) in str(refused.value) and "damaged" in str(refused.value)
    assert "restore" in str(refused.value)


def test_db_check_refuses_a_home_without_a_database(tmp_path: Path) -> None:
    _net, cfg = _home(tmp_path)
    cfg.path(cfg.database).unlink()
    res = CliRunner().invoke(node_cli, ["db", "check", "--home", str(cfg.home)])
    assert res.exit_code == 2 and "no database at" in res.output


def test_sqlites_many_problems_in_one_row_become_one_line_each() -> None:
    """quick_check may answer one row holding many lines under a heading: the node's one-line refusal must
    not carry them (fault-corrupt-db once saw a refusal spread over a hundred log lines)."""
    from iotex_node.store import integrity_problems

    class Rows:
        def execute(self, sql: str) -> list[tuple[str]]:
            return [("*** in database main ***\nPage 326 is never used\nPage 327 is never used",), ("row 3 missing",)]

    assert integrity_problems(Rows(), quick=True) == ["Page 326 is never used", "Page 327 is never used", "row 3 missing"]  # type: ignore[arg-type]
