"""The mempool's journal: accepted actions written before the answer, re-admitted at start, dropped with a reason
when they no longer can be, bounded like the mempool, and a damaged journal never stops the node."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from pathlib import Path

import orjson
import pytest

from iotex_node import config as config_mod
from iotex_node import maintenance, mempool_store
from iotex_node.chain import Chain
from iotex_node.errors import ConfigError
from iotex_node.mempool import NONCE_TAKEN, REPLACED, SENDER_QUOTA, Mempool
from iotex_node.mempool_store import MempoolJournal
from iotex_node.node import Node
from iotex_node.store import Store
from iotex_node.testing import OneDelegate

# --- the journal alone -----------------------------------------------------------------------------


def _row(i: int) -> tuple[bytes, str, int, bytes]:
    return (bytes([i]) * 32, "io1sender", i, orjson.dumps({"n": i}))


def test_writes_are_durable_at_the_barrier_and_read_back_in_nonce_order(tmp_path: Path) -> None:
    j = MempoolJournal(tmp_path / "m.db")
    for i in (3, 1, 2, 4):
        j.add(*_row(i))
    j.remove([_row(4)[0]])
    j.drop(_row(2)[0], "nonce_taken", "nonce 2 was taken")
    j.barrier().result(5)
    assert j.commits >= 1
    # No close: what a kill -9 leaves once the barrier was passed.
    again = MempoolJournal(tmp_path / "m.db").load()
    assert [h for h, _w in again.pending] == [_row(1)[0], _row(3)[0]]
    assert again.dropped == [(_row(2)[0], "nonce_taken", "nonce 2 was taken")]
    assert again.problem is None
    j.close()


def test_writes_no_answer_waits_for_get_no_commit_of_their_own_but_ride_with_the_next_answers(tmp_path: Path) -> None:
    """Gossip and removals (no barrier) are not committed on their own while answers come: one commit (one
    fsync) carries them with the next answer's actions. Committing them every 20 ms cost about 7 commits for
    each one an answer waited for at 1,000 TPS (issue 15)."""
    j = MempoolJournal(tmp_path / "m.db")
    for i in range(1, 40):  # actions from gossip, then a block's removals, over 0.2 s
        j.add(*_row(i))
        if i % 10 == 0:
            j.remove([_row(i - 5)[0]])
        time.sleep(0.005)
    assert j.commits == 0
    j.add(*_row(40))  # an API action: its answer waits
    j.barrier().result(5)
    assert j.commits == 1
    assert j.pending_count() == 40 - 3
    j.add(*_row(41))  # nobody waits: committed after FLUSH_EVERY at the latest
    deadline = time.monotonic() + mempool_store.FLUSH_EVERY + 5
    while j.commits < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert j.commits == 2
    j.close()


def test_rows_are_appended_in_the_order_written_and_removed_by_hash(tmp_path: Path) -> None:
    """Rows are keyed by the order they were written, not by their (random) hash: a commit appends to the
    table's last pages and a block's removals free pages written together (issue 15: half the time per commit)."""
    j = MempoolJournal(tmp_path / "m.db")
    for i in (9, 3, 7, 1, 5):
        j.add(*_row(i))
    j.remove([_row(7)[0], bytes(32)])  # an unknown hash is ignored
    j.add(*_row(3))  # the same action again: its row moves to the end
    j.drop(_row(1)[0], "nonce_taken", "taken")
    j.flush()
    db = sqlite3.connect(tmp_path / "m.db")
    ids = db.execute("SELECT id, hash FROM pending ORDER BY id").fetchall()
    assert [bytes(h) for _i, h in ids] == [_row(9)[0], _row(5)[0], _row(3)[0]]
    assert [i for i, _h in ids] == sorted(i for i, _h in ids)
    j.stop()
    again = MempoolJournal(tmp_path / "m.db")  # reopened: ids go on after the last one, removals still work
    again.add(*_row(11))
    again.remove([_row(9)[0]])
    again.flush()
    assert [bytes(h) for (h,) in db.execute("SELECT hash FROM pending ORDER BY id")] == [_row(5)[0], _row(3)[0], _row(11)[0]]
    assert [h for h, _w in again.load().pending] == [_row(3)[0], _row(5)[0], _row(11)[0]]  # sender, nonce order
    db.close()
    again.close()


def test_a_schema_1_journal_is_converted_with_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    db = sqlite3.connect(path)
    db.executescript(
        """
        PRAGMA journal_mode=WAL;
        CREATE TABLE pending (hash BLOB PRIMARY KEY, sender TEXT NOT NULL, nonce INTEGER NOT NULL, wire BLOB NOT NULL)
            WITHOUT ROWID;
        CREATE TABLE dropped (id INTEGER PRIMARY KEY, hash BLOB NOT NULL UNIQUE, code TEXT NOT NULL, reason TEXT NOT NULL);
        PRAGMA user_version=1;
        """
    )
    db.executemany("INSERT INTO pending VALUES(?, ?, ?, ?)", [_row(i) for i in (2, 1, 3)])
    db.execute("INSERT INTO dropped(hash, code, reason) VALUES(?, 'nonce_taken', 'x')", (bytes([9]) * 32,))
    db.commit()
    db.close()
    j = MempoolJournal(path)
    loaded = j.load()
    assert loaded.problem is None
    assert [h for h, _w in loaded.pending] == [_row(1)[0], _row(2)[0], _row(3)[0]]
    assert loaded.dropped == [(bytes([9]) * 32, "nonce_taken", "x")]
    j.remove([_row(2)[0]])
    j.flush()
    assert j.pending_count() == 2
    j.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == mempool_store.SCHEMA_VERSION


def test_a_barrier_with_nothing_queued_is_done_at_once_and_close_writes_what_is_queued(tmp_path: Path) -> None:
    j = MempoolJournal(tmp_path / "m.db", "write")
    assert j.barrier().done()
    for i in range(1, 200):
        j.add(*_row(i % 250))
    j.close()
    assert len(MempoolJournal(tmp_path / "m.db").load().pending) == 199


def test_the_dropped_table_keeps_only_the_newest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mempool_store, "MAX_DROPPED", 5)
    j = MempoolJournal(tmp_path / "m.db")
    for i in range(12):
        j.drop(bytes([i]) * 32, "nonce_taken", f"#{i}")
        j.flush()
    assert [r for _h, _c, r in j.load().dropped] == [f"#{i}" for i in range(7, 12)]
    j.close()


def test_a_damaged_journal_is_set_aside_with_a_clear_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "m.db"
    path.write_bytes(b"this is not a database" * 300)
    with caplog.at_level(logging.ERROR, "iotex_node.mempool_store"):
        j = MempoolJournal(path)
    assert j.problem and "moved to" in j.problem
    assert any("starting with an empty journal" in r.getMessage() for r in caplog.records)
    assert len(list(tmp_path.glob("m.db.corrupt-*"))) == 1
    j.add(*_row(1))
    j.flush()
    assert j.pending_count() == 1
    j.close()


def test_a_journal_of_an_unknown_schema_is_set_aside(tmp_path: Path) -> None:
    import sqlite3

    db = sqlite3.connect(tmp_path / "m.db")
    db.execute("PRAGMA user_version=99")
    db.close()
    j = MempoolJournal(tmp_path / "m.db")
    assert j.problem and "schema version 99" in j.problem
    j.close()


def test_durability_must_be_one_of_the_policies(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="fsync, write, off"):
        MempoolJournal(tmp_path / "m.db", "sometimes")


# --- the mempool tells what left it ----------------------------------------------------------------


def test_the_mempool_reports_final_displaced_and_replaced_actions() -> None:
    net = OneDelegate.new()
    pool = Mempool(net.chain_id)
    seen: list[tuple[list[bytes], list[tuple[bytes, str]]]] = []
    pool.on_removed = lambda final, gone: seen.append((final, [(a.hash, code) for a, code, _r in gone]))
    a1, a2, other2 = net.transfer(1), net.transfer(2), net.transfer(2, amount=7)
    pool.add(a1, 0, 10**30)
    pool.add(a2, 0, 10**30)
    dearer = net.transfer(2, fee=a2.fee * 2)
    pool.add(dearer, 0, 10**30)
    assert seen[-1] == ([], [(a2.hash, REPLACED)])
    # A block took nonce 1 (ours) and nonce 2 (another action of the same sender: e.g. sent to another node).
    pool.remove_committed([a1, other2], lambda _s: 2)
    assert seen[-1] == ([a1.hash], [(dearer.hash, NONCE_TAKEN)])
    assert len(pool) == 0


# --- the node: accepted actions survive its restart ------------------------------------------------


def _home(tmp_path: Path, **cfg: object) -> tuple[OneDelegate, Path]:
    net = OneDelegate.new()
    c = net.init_home(tmp_path / "home")
    for k, v in cfg.items():
        setattr(c, k, v)
    c.write()
    return net, c.home


def _node(net: OneDelegate, home: Path) -> Node:
    return Node(config_mod.load(home), net.delegate, net.genesis)


def _close(node: Node, *, kill: bool = False) -> None:
    """Stop an in-process node's storage; `kill`: without writing what is still queued (a kill -9)."""
    if node.journal is not None and not kill:
        node.journal.close()
    node.store.close()


def _accept(node: Node, actions: list[object]) -> list[bytes]:
    """Submit as the API does: admitted, then answered once durable."""

    async def go() -> list[bytes]:
        out = [node.submit(a.to_wire()).hash for a in actions]  # type: ignore[attr-defined]
        wait = node.durable()
        if wait is not None:
            await wait
        return out

    return asyncio.run(go())


def _restart(net: OneDelegate, home: Path) -> Node:
    node = _node(net, home)
    asyncio.run(node._reload_mempool())
    return node


def test_accepted_actions_are_back_in_the_mempool_after_a_kill_and_are_gossiped_again(tmp_path: Path) -> None:
    net, home = _home(tmp_path)
    node = _node(net, home)
    hashes = _accept(node, [net.transfer(n) for n in range(1, 6)])
    _close(node, kill=True)
    again = _restart(net, home)
    try:
        assert [again.action_status(h)["status"] for h in hashes] == ["pending"] * 5  # type: ignore[index]
        assert len(again.chain.mempool) == 5
        assert len(again._tx_outbox) == 5  # re-gossiped: peers that lost theirs get them back
        # The sender's next nonce follows what it was told was accepted.
        assert again.chain.mempool.pending_nonce(net.sender.address, 0) == 6
    finally:
        _close(again)


def test_final_stale_and_dropped_actions_after_a_restart(tmp_path: Path) -> None:
    net, home = _home(tmp_path)
    node = _node(net, home)
    mine = _accept(node, [net.transfer(1), net.transfer(2), net.transfer(3)])
    cfg = node.cfg
    _close(node, kill=True)
    # While the node was down, a block took nonce 1 (this very action) and nonce 2 (another one of the sender).
    chain = Chain(net.genesis, Store(cfg.path(cfg.database)))
    chain.submit(net.transfer(1))
    taker = net.transfer(2, amount=99)
    chain.submit(taker)
    net.commit(chain)
    chain.store.close()
    again = _restart(net, home)
    try:
        st = [again.action_status(h) for h in mine]
        assert st[0] is not None and st[0]["status"] == "finalized"
        assert st[1] is not None and st[1]["status"] == "rejected" and st[1]["code"] == NONCE_TAKEN
        assert "nonce 2" in st[1]["reason"]
        # Nonce 3 now leaves no gap only if 2 is final: it is (the taker's), so it is pending again.
        assert st[2] is not None and st[2]["status"] == "pending"
        assert again.journal is not None
        again.journal.flush()
        assert again.journal.pending_count() == 1
    finally:
        _close(again)
    # The reason outlives a further restart.
    third = _restart(net, home)
    try:
        st1 = third.action_status(mine[1])
        assert st1 is not None and st1["code"] == NONCE_TAKEN
    finally:
        _close(third)


def test_committed_actions_leave_the_journal(tmp_path: Path) -> None:
    net, home = _home(tmp_path)
    node = _node(net, home)
    _accept(node, [net.transfer(n) for n in range(1, 4)])
    block = node.chain.build_block(0, net.delegate.address, node.chain.tip_timestamp_ms + 1000).block
    from iotex_node.testing import certify

    node.chain.commit(block, certify(net.delegate, net.chain_id, block))
    assert node.journal is not None
    node.journal.flush()
    assert node.journal.pending_count() == 0
    _close(node)


def test_the_restored_mempool_obeys_the_configured_limits(tmp_path: Path) -> None:
    net, home = _home(tmp_path)
    node = _node(net, home)
    hashes = _accept(node, [net.transfer(n) for n in range(1, 9)])
    _close(node)
    cfg = config_mod.load(home)
    cfg.mempool_max_per_sender = 5  # the operator lowered the limit across the restart
    cfg.write()
    again = _restart(net, home)
    try:
        assert len(again.chain.mempool) == 5
        first = again.action_status(hashes[5])
        assert first is not None and first["code"] == SENDER_QUOTA
        late = again.action_status(hashes[7])  # its predecessor is not pending: a gap
        assert late is not None and late["code"] == "nonce_gap" and "not restored" in late["reason"]
        assert again.journal is not None
        again.journal.flush()
        assert again.journal.pending_count() == 5
    finally:
        _close(again)


def test_a_damaged_row_is_dropped_with_a_reason_and_a_damaged_file_does_not_stop_the_node(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import sqlite3

    net, home = _home(tmp_path)
    node = _node(net, home)
    hashes = _accept(node, [net.transfer(1), net.transfer(2)])
    path = node.cfg.path(node.cfg.mempool_journal)
    _close(node)
    db = sqlite3.connect(path)
    db.execute("UPDATE pending SET wire=? WHERE hash=?", (orjson.dumps({"nonce": "x"}), hashes[1]))
    db.commit()
    db.close()
    again = _restart(net, home)
    st = again.action_status(hashes[1])
    assert st is not None and st["code"] == "corrupt"
    assert again.action_status(hashes[0]) == {"hash": hashes[0].hex(), "status": "pending"}
    _close(again)
    # The whole file damaged: a clear error, the file set aside, and the node goes on (and journals again).
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    path.write_bytes(b"\x00garbage" * 1000)
    with caplog.at_level(logging.ERROR):
        third = _restart(net, home)
    try:
        assert any("mempool journal" in r.getMessage() and "moved to" in r.getMessage() for r in caplog.records)
        assert len(third.chain.mempool) == 0
        _accept(third, [net.transfer(1)])
        assert third.journal is not None and third.journal.pending_count() == 1
    finally:
        _close(third)


def test_durability_off_keeps_no_journal_and_the_config_keys_are_checked(tmp_path: Path) -> None:
    net, home = _home(tmp_path, mempool_durability="off")
    node = _node(net, home)
    assert node.journal is None and node.durable() is None
    _close(node)
    assert "durability" in (home / "config.toml").read_text()
    _net2, home2 = _home(tmp_path / "b")
    assert "durability" not in (home2 / "config.toml").read_text()  # defaults unwritten: older releases read it
    text = (home2 / "config.toml").read_text().replace("[mempool]", '[mempool]\ndurability = "maybe"')
    (home2 / "config.toml").write_text(text)
    with pytest.raises(ConfigError, match=r"mempool\.durability"):
        config_mod.load(home2)


def test_a_rollback_puts_the_removed_blocks_actions_back_in_the_mempool(tmp_path: Path) -> None:
    net, home = _home(tmp_path)
    cfg = config_mod.load(home)
    chain = Chain(net.genesis, Store(cfg.path(cfg.database)))
    net.grow(chain, 3, 4)  # blocks 1..3, 4 transfers each
    removed = [a.hash for h in (2, 3) for a in chain.block(h).actions]  # type: ignore[union-attr]
    chain.store.close()
    report = maintenance.rollback(home, 1, backup=False)
    assert report.requeued_actions == 8
    node = _restart(net, home)
    try:
        assert [node.action_status(h)["status"] for h in removed] == ["pending"] * 8  # type: ignore[index]
    finally:
        _close(node)


def test_an_unusable_journal_path_is_logged_and_the_node_starts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    net, home = _home(tmp_path, mempool_journal=str(blocker / "mempool.db"))
    with caplog.at_level(logging.ERROR):
        node = _node(net, home)
    assert node.journal is None
    assert any("NOT kept across restarts" in r.getMessage() for r in caplog.records)
    _close(node)
