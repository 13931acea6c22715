"""Offline and online maintenance of a node's data: rollback to a height, snapshot, restore, the node lock.

In-process against real SQLite databases built through `Chain` (a 1-delegate chain with transfers in every
block, epochs of 7 blocks so elections and epoch rewards are among the reverted changes), plus child
processes killed with SIGKILL in the middle of a rollback or a restore.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from iotex_node import actions
from iotex_node import config as config_mod
from iotex_node import execution as ex
from iotex_node import genesis as genesis_mod
from iotex_node import maintenance as mt
from iotex_node.chain import Chain
from iotex_node.cli import main
from iotex_node.crypto import keystore
from iotex_node.crypto.keys import PrivateKey
from iotex_node.errors import ConfigError, NodeError
from iotex_node.store import Store
from iotex_node.testing import OneDelegate, init_home

TIP = 120
PER_BLOCK = 20
PRIVVAL = {"h": TIP + 1, "r": 2, "s": 1, "hash": "ab" * 32}
LOCK = {"height": TIP + 1, "round": 2, "locked_round": -1, "locked_block": None, "valid_round": -1, "valid_block": None}
CONTROLS = {"paused": False, "halt_height": None, "standby": True}


# --- building chains ---------------------------------------------------------------------------------


@dataclass
class Template:
    home: Path
    solo: OneDelegate  # the genesis, the delegate and the sender of every block's transfers
    states: dict[int, dict[str, bytes]]  # the state after each height
    blocks: dict[int, bytes]  # stored block data by height
    hashes: dict[int, bytes]

    @property
    def genesis(self) -> genesis_mod.Genesis:
        return self.solo.genesis


def grow(
    home: Path,
    solo: OneDelegate,
    blocks: int,
    per_block: int = PER_BLOCK,
    *,
    undo_depth: int = 1000,
    states: dict[int, dict[str, bytes]] | None = None,
) -> int:
    """Commit `blocks` blocks of transfers (some to new accounts) with a self-signed certificate."""
    cfg = config_mod.load(home)
    store = Store(cfg.path(cfg.database), durable=False)
    try:
        chain = Chain(solo.genesis, store, undo_depth=undo_depth)

        def to(nonce: int) -> str:
            return PrivateKey().address if nonce % 7 == 0 else solo.delegate.address

        def record(c: Chain) -> None:
            if states is not None:
                states[c.height] = dict(c.state.data)

        return solo.grow(chain, blocks, per_block, to=to, on_block=record)
    finally:
        store.close()


def set_meta(home: Path, **values: object) -> None:
    cfg = config_mod.load(home)
    store = Store(cfg.path(cfg.database))
    try:
        for k, v in values.items():
            store.set_meta(k, v)
    finally:
        store.close()


def get_meta(db: Path, key: str) -> object:
    conn = sqlite3.connect(db)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else orjson.loads(row[0])
    finally:
        conn.close()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    home = tmp_path_factory.mktemp("template") / "node"
    solo = OneDelegate.new()
    genesis = solo.genesis
    init_home(home, genesis)
    states: dict[int, dict[str, bytes]] = {0: ex.genesis_state(genesis).data}
    assert grow(home, solo, TIP, states=states) == TIP
    set_meta(home, privval=PRIVVAL, lock=LOCK, controls=CONTROLS)
    db = home / "data" / "chain.db"
    conn = sqlite3.connect(db)
    blocks = {h: bytes(d) for h, d in conn.execute("SELECT height, data FROM blocks")}
    hashes = {h: bytes(x) for h, x in conn.execute("SELECT height, hash FROM blocks")}
    conn.close()
    hashes[0] = genesis.hash
    assert not (home / "data" / "chain.db-wal").exists()
    return Template(home, solo, states, blocks, hashes)


def clone(t: Template, dest: Path) -> Path:
    shutil.copytree(t.home, dest)
    return dest


def db_of(home: Path) -> Path:
    return home / "data" / "chain.db"


def fingerprint(home: Path) -> tuple[str, list[str]]:
    """Everything the database holds, and every file of the home: equal before and after a refusal."""
    h = hashlib.sha256()
    conn = sqlite3.connect(db_of(home))
    try:
        for table in ("blocks", "actions", "state", "undo", "meta"):
            for row in conn.execute(f"SELECT * FROM {table} ORDER BY 1"):  # noqa: S608 - fixed table names
                h.update(repr(row).encode())
    finally:
        conn.close()
    files = sorted(
        str(p.relative_to(home)) for p in home.rglob("*") if not p.name.startswith("chain.db-") and p.name != mt.LOCK_FILE
    )
    return h.hexdigest(), files


def open_chain(home: Path, genesis: genesis_mod.Genesis) -> tuple[Store, Chain]:
    store = Store(db_of(home))
    return store, Chain(genesis, store)


def removed_wires(t: Template, above: int, upto: int = TIP) -> list[dict]:
    return [w for h in range(above + 1, upto + 1) for w in orjson.loads(t.blocks[h])["actions"]]


# --- rollback ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("to", [TIP - 1, TIP - 37, 1, 0])
def test_rollback_gives_exactly_block_h_and_the_removed_blocks_replay_on_top(template: Template, tmp_path: Path, to: int) -> None:
    t = template
    home = clone(t, tmp_path / "node")
    r = mt.rollback(home, to)
    assert (r.from_height, r.to_height, r.removed_blocks, r.noop) == (TIP, to, TIP - to, False)
    assert r.removed_actions == (TIP - to) * PER_BLOCK
    assert r.cleared_meta == ["privval", "lock"]
    assert r.tip_hash == t.hashes[to].hex()
    store, chain = open_chain(home, t.genesis)
    try:
        assert (chain.height, chain.tip_hash) == (to, t.hashes[to])
        expected_root = ex.genesis_state(t.genesis).root() if to == 0 else chain.tip_header.state_root  # type: ignore[union-attr]
        assert chain.state.root() == expected_root == bytes.fromhex(r.state_root)
        assert chain.state.data == t.states[to], "the state differs from the state the chain had at that height"
        assert store.block_data(to + 1) is None and store.block_count_above(to) == 0
        assert store.get_meta("privval") is None and store.get_meta("lock") is None
        assert store.get_meta("controls") == CONTROLS, "operator controls are the node's own: kept"
        assert store._db.execute("SELECT MAX(height) FROM undo").fetchone()[0] == (to or None)
        removed = removed_wires(t, to)
        for w in removed:
            assert store.receipt(actions.parse(w, verify=False).hash) is None
        if to > 0:
            kept = orjson.loads(t.blocks[to])["actions"][0]
            assert store.receipt(actions.parse(kept, verify=False).hash) is not None
        # The actions file holds the removed blocks' actions in block order, in the wire form.
        lines = Path(r.actions_file).read_text().splitlines()  # type: ignore[arg-type]
        assert [json.loads(line) for line in lines] == removed
        # Replaying the removed blocks on top gives back the very same chain.
        for h in range(to + 1, TIP + 1):
            chain.apply_synced(chain.decode_block(orjson.loads(t.blocks[h])))
        assert (chain.height, chain.tip_hash) == (TIP, t.hashes[TIP])
        assert chain.state.data == t.states[TIP]
    finally:
        store.close()
    # The backup is the database as it was: at the old tip, signing records included.
    assert r.backup is not None and Path(r.backup).parent == home / "backups"
    assert get_meta(Path(r.backup), "tip")["height"] == TIP  # type: ignore[index]
    assert get_meta(Path(r.backup), "privval") == PRIVVAL


def test_rollback_keeps_signing_records_at_or_below_h_and_the_chain_continues(template: Template, tmp_path: Path) -> None:
    t = template
    home = clone(t, tmp_path / "node")
    set_meta(home, privval={**PRIVVAL, "h": 50}, lock={**LOCK, "height": 50})
    r = mt.rollback(home, 60)
    assert r.cleared_meta == []
    assert get_meta(db_of(home), "privval") == {**PRIVVAL, "h": 50}
    assert grow(home, t.solo, 3) == 63, "a new block builds on the rolled-back tip"


def test_rollback_to_the_tip_is_a_no_op(template: Template, tmp_path: Path) -> None:
    home = clone(template, tmp_path / "node")
    before = fingerprint(home)
    r = mt.rollback(home, TIP)
    assert r.noop and r.removed_blocks == 0 and r.backup is None and r.actions_file is None
    assert "nothing to roll back" in r.notes[0]
    assert fingerprint(home) == before


def test_rollback_refuses_beyond_the_undo_depth_naming_the_earliest_height(template: Template, tmp_path: Path) -> None:
    t = template
    home = clone(t, tmp_path / "node")
    cfg = config_mod.load(home)
    cfg.undo_depth = 30
    cfg.write()
    top = grow(home, t.solo, 2, undo_depth=30)  # commits prune undo records below top-30
    earliest = top - 30 - 1
    before = fingerprint(home)
    with pytest.raises(mt.MaintenanceError, match=f"earliest reachable height is {earliest} "):
        mt.rollback(home, earliest - 1)
    assert fingerprint(home) == before
    r = mt.rollback(home, earliest)
    assert r.to_height == earliest and r.removed_blocks == 31


@pytest.mark.parametrize(
    ("to", "message"),
    [
        (-1, "rollback height -1 is negative"),
        ("-7", "rollback height -7 is negative"),
        ("ten", "must be a block height"),
        ("1.5", "must be a block height"),
        (True, "must be a block height"),
        (TIP + 1, f"above the tip {TIP}"),
        (10**12, f"above the tip {TIP}"),
    ],
)
def test_rollback_with_a_bad_height_is_refused_and_changes_nothing(
    template: Template, tmp_path: Path, to: object, message: str
) -> None:
    home = clone(template, tmp_path / "node")
    before = fingerprint(home)
    with pytest.raises(mt.MaintenanceError, match=message):
        mt.rollback(home, to)
    assert fingerprint(home) == before


def test_rollback_of_an_unknown_home_or_a_running_node_is_refused(template: Template, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        mt.rollback(tmp_path / "nope", 3)
    home = clone(template, tmp_path / "node")
    before = fingerprint(home)
    (home / "node.pid").write_text("4242\n")
    with mt.NodeLock(home, "node"):
        with pytest.raises(mt.NodeBusy, match=r"node at .* is running \(pid 4242 from node.pid\): stop it first"):
            mt.rollback(home, 3)
        with pytest.raises(mt.NodeBusy, match="is running"):
            mt.restore(home, template.home / "data" / "chain.db")
    assert fingerprint(home)[0] == before[0]


def test_rollback_refuses_an_inconsistent_undo_history(template: Template, tmp_path: Path) -> None:
    home = clone(template, tmp_path / "node")
    conn = sqlite3.connect(db_of(home))
    rec = orjson.loads(conn.execute("SELECT data FROM undo WHERE height=91").fetchone()[0])
    key = next(iter(rec))
    rec[key] = '{"tampered":1}'
    conn.execute("UPDATE undo SET data=? WHERE height=91", (orjson.dumps(rec),))
    conn.commit()
    conn.close()
    before = fingerprint(home)
    with pytest.raises(mt.MaintenanceError, match="do not lead to block 90's state root"):
        mt.rollback(home, 90)
    assert fingerprint(home) == before


# --- the command line --------------------------------------------------------------------------------


def _cli(*args: str, input: str | None = None) -> tuple[int, str, str]:
    res = CliRunner().invoke(main, list(args), input=input)
    return res.exit_code, res.stdout, res.stderr


@pytest.mark.parametrize(
    ("to", "message"),
    [
        ("-3", "rollback height -3 is negative"),
        ("x", "must be a block height"),
        (str(TIP + 5), f"above the tip {TIP}"),
        ("3", "earliest reachable height is"),
    ],
)
def test_cli_rollback_refusals_are_one_error_line_and_change_nothing(
    template: Template, tmp_path: Path, to: str, message: str
) -> None:
    home = clone(template, tmp_path / "node")
    if to == "3":
        conn = sqlite3.connect(db_of(home))
        conn.execute("DELETE FROM undo WHERE height < 10")  # as if undo_depth pruned them
        conn.commit()
        conn.close()
    before = fingerprint(home)
    code, out, err = _cli("rollback", "--home", str(home), "--to", to, "--yes")
    assert code == 2
    assert out == "" and len(err.splitlines()) == 1 and err.startswith("error: ") and message in err, err
    assert fingerprint(home) == before


def test_cli_refusals_for_homes_running_nodes_and_unconfirmed_rollbacks(template: Template, tmp_path: Path) -> None:
    for args in (
        ["rollback", "--home", str(tmp_path / "nope"), "--to", "3", "--yes"],
        ["restore", "--home", str(tmp_path / "nope"), "--from", str(db_of(template.home))],
        ["snapshot", "--home", str(tmp_path / "nope"), "--out", str(tmp_path / "s.db")],
    ):
        code, _out, err = _cli(*args)
        assert code == 2 and err.startswith("error: node home") and "does not exist" in err and len(err.splitlines()) == 1
    home = clone(template, tmp_path / "node")
    (home / "node.pid").write_text("777\n")
    before = fingerprint(home)
    with mt.NodeLock(home, "node"):
        for args in (["rollback", "--to", "3", "--yes"], ["restore", "--from", str(db_of(template.home))], ["run"]):
            code, _out, err = _cli(args[0], "--home", str(home), *args[1:])
            assert code == 2, err
            assert err.strip() == f"error: node at {home.resolve()} is running (pid 777 from node.pid): stop it first"
    code, out, err = _cli("rollback", "--home", str(home), "--to", "100", input="n\n")
    assert code == 2 and "rollback not confirmed: nothing was changed" in err
    assert f"from height {TIP} to 100, removing 20 blocks with {20 * PER_BLOCK} actions" in err  # the question
    assert fingerprint(home) == before
    code, out, err = _cli("rollback", "--home", str(home), "--to", "100")  # no answer at all (stdin closed)
    assert code == 2 and "not confirmed" in err
    assert fingerprint(home) == before
    code, out, err = _cli("rollback", "--home", str(home), "--to", "100", input="y\n")
    assert code == 0, err
    assert f"rolled back {home.resolve()} from height {TIP} to 100: removed 20 blocks" in out
    code, out, err = _cli("rollback", "--home", str(home), "--to", "100", "--json")
    assert code == 0 and json.loads(out)["noop"] is True


# --- the node lock -----------------------------------------------------------------------------------


@pytest.mark.slow  # child processes
def test_node_lock_names_its_holder_and_dies_with_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with mt.NodeLock(home, "restore"):
        with pytest.raises(mt.NodeBusy, match=rf"in use by `iotex-node restore` \(pid {os.getpid()}\)") as info:
            mt.NodeLock(home, "rollback").acquire()
        assert info.value.holder == "restore"
    with (
        mt.NodeLock(home, "node"),
        pytest.raises(mt.NodeBusy, match=rf"is running \(pid {os.getpid()}, holding node.lock\): stop it first"),
    ):
        mt.NodeLock(home, "rollback").acquire()
    # A holder killed with SIGKILL leaves no stale lock behind.
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from iotex_node.maintenance import NodeLock; "
         "NodeLock(sys.argv[1], 'node').acquire(); print('held', flush=True); time.sleep(60)", str(home)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        with pytest.raises(mt.NodeBusy, match=f"pid {child.pid}"):
            mt.NodeLock(home).acquire()
    finally:
        child.kill()
        child.wait(timeout=10)
        assert child.stdout is not None
        child.stdout.close()
    with mt.NodeLock(home, "rollback") as lock:
        assert lock.held


# --- snapshot and restore ----------------------------------------------------------------------------


def _fresh_home(t: Template, path: Path) -> Path:
    init_home(path, t.genesis)
    return path


def test_snapshot_and_restore_round_trip_keeps_the_nodes_own_records(template: Template, tmp_path: Path) -> None:
    t = template
    src = clone(t, tmp_path / "src")
    snap = tmp_path / "snaps" / "a.db"
    snap.parent.mkdir()
    info = mt.snapshot_home(src, snap)
    assert (info.height, info.tip_hash, info.online) == (TIP, t.hashes[TIP].hex(), False)
    assert info.sha256 == mt.sha256_file(snap) and info.bytes == snap.stat().st_size
    assert (tmp_path / "snaps" / "a.db.sha256").read_text() == f"{info.sha256}  a.db\n"
    manifest = json.loads((tmp_path / "snaps" / "a.db.manifest.json").read_text())
    assert manifest["kind"] == "iotex-node-snapshot"
    assert (manifest["height"], manifest["genesis_hash"], manifest["chain_id"]) == (TIP, t.genesis.hash.hex(), 77)
    assert manifest["state_root"] == info.state_root
    assert sorted(os.listdir(snap.parent)) == ["a.db", "a.db.manifest.json", "a.db.sha256"], "no -wal, no temporary file"
    for key in mt.LOCAL_META:
        assert get_meta(snap, key) is None, f"the snapshot carries the source node's {key}"
    assert get_meta(db_of(src), "privval") == PRIVVAL, "the source keeps its records"
    with pytest.raises(mt.MaintenanceError, match="exists: choose another output file"):
        mt.snapshot_home(src, snap)
    # Restore into another node's home: its chain data is replaced, its own records are kept.
    dst = _fresh_home(t, tmp_path / "dst")
    own = {
        "privval": {"h": 9, "r": 0, "s": 2, "hash": ""},
        "lock": {**LOCK, "height": 9},
        "controls": {**CONTROLS, "standby": False},
    }
    set_meta(dst, **own)
    r = mt.restore(dst, snap)
    assert (r.height, r.previous_height, r.sha256_checked) == (TIP, 0, True)
    assert r.kept_meta == ["controls", "lock", "privval"] and r.warnings == []
    assert r.backup is not None and get_meta(Path(r.backup), "tip")["height"] == 0  # type: ignore[index]
    for key, value in own.items():
        assert get_meta(db_of(dst), key) == value
    store, chain = open_chain(dst, t.genesis)
    try:
        assert (chain.height, chain.tip_hash) == (TIP, t.hashes[TIP])
        assert chain.state.data == t.states[TIP]
        assert store._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        store.close()
    assert not list((dst / "data").glob(".*")), "a temporary file was left in the data directory"
    # The restored node goes on from the snapshot's tip.
    assert grow(dst, t.solo, 2) == TIP + 2


def test_restore_without_a_checksum_file_and_a_snapshot_of_height_zero(template: Template, tmp_path: Path) -> None:
    t = template
    fresh = _fresh_home(t, tmp_path / "fresh")
    snap = tmp_path / "zero.db"
    info = mt.snapshot_home(fresh, snap)
    assert info.height == 0 and info.state_root == ex.genesis_state(t.genesis).root().hex() and info.chain_id == 77
    home = clone(t, tmp_path / "node")
    os.unlink(str(snap) + ".sha256")
    r = mt.restore(home, snap)
    assert (r.height, r.previous_height, r.sha256_checked) == (0, TIP, False)
    assert get_meta(db_of(home), "privval") == PRIVVAL


@pytest.mark.parametrize(
    "problem", ["checksum", "state", "truncated", "garbage", "other-genesis", "schema", "missing", "directory", "itself"]
)
def test_restore_refuses_a_bad_snapshot_and_changes_nothing(template: Template, tmp_path: Path, problem: str) -> None:
    t = template
    src = clone(t, tmp_path / "src")
    snap = tmp_path / "s.db"
    mt.snapshot_home(src, snap)
    side = Path(str(snap) + ".sha256")
    if problem == "checksum":
        data = bytearray(snap.read_bytes())
        data[len(data) // 2] ^= 0xFF
        snap.write_bytes(bytes(data))
        message = "fails its checksum"
    elif problem == "state":
        side.unlink()
        conn = sqlite3.connect(snap)
        conn.execute("UPDATE state SET value=? WHERE key=(SELECT MIN(key) FROM state WHERE key LIKE 'a/%')", (b'{"x":1}',))
        conn.commit()
        conn.close()
        message = f"inconsistent: its state root .* does not match block {TIP}'s"
    elif problem == "truncated":
        side.unlink()
        with open(snap, "r+b") as fh:
            fh.truncate(snap.stat().st_size // 2)
        message = "integrity_check|not a readable database|cannot be read"
    elif problem == "garbage":
        side.unlink()
        snap.write_bytes(os.urandom(100_000))
        message = "not a readable database"
    elif problem == "other-genesis":
        other = init_home(tmp_path / "other", OneDelegate.new(chain_id=78).genesis).home
        snap = tmp_path / "o.db"
        mt.snapshot_home(other, snap)
        message = "belongs to genesis .* but this home's genesis is"
    elif problem == "schema":
        side.unlink()
        conn = sqlite3.connect(snap)
        conn.execute("UPDATE meta SET value=? WHERE key='schema'", (b"99",))
        conn.commit()
        conn.close()
        message = "has database schema 99; this node uses 1"
    elif problem == "missing":
        snap = tmp_path / "absent.db"
        message = "does not exist"
    elif problem == "directory":
        snap = tmp_path
        message = "is not a file"
    home = clone(t, tmp_path / "node")
    if problem == "itself":
        snap = db_of(home)
        message = "is the database of .* itself"
    before = fingerprint(home)
    with pytest.raises(NodeError, match=message):
        mt.restore(home, snap)
    assert fingerprint(home) == before
    assert not (home / "backups").exists()


@pytest.mark.slow  # child processes
def test_restore_over_a_database_left_with_a_wal_by_kill9(template: Template, tmp_path: Path) -> None:
    """The old database's -wal holds committed records; they are read (privval) and never replayed into
    the restored file."""
    t = template
    snap = tmp_path / "s.db"
    mt.snapshot_home(clone(t, tmp_path / "src"), snap)
    home = clone(t, tmp_path / "node")
    rolled = mt.rollback(home, 60)  # the old database is at 60: different pages from the snapshot's
    assert rolled.to_height == 60
    newer = {**PRIVVAL, "h": 61, "r": 7}
    script = textwrap.dedent(
        """
        import os, signal, sys, orjson
        from iotex_node.store import Store
        s = Store(sys.argv[1])
        s._db.execute("PRAGMA wal_autocheckpoint=0")
        for i in range(50):
            s.set_meta(f"filler{i}", "x" * 3000)
        s.set_meta("privval", orjson.loads(sys.argv[2]))
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    subprocess.run([sys.executable, "-c", script, str(db_of(home)), json.dumps(newer)], check=False, timeout=30)
    wal = Path(str(db_of(home)) + "-wal")
    assert wal.exists() and wal.stat().st_size > 100_000, "the killed writer left no -wal"
    r = mt.restore(home, snap)
    assert (r.height, r.previous_height) == (TIP, 60)
    assert get_meta(db_of(home), "privval") == newer, "the signing record in the old -wal was lost"
    assert get_meta(db_of(home), "filler1") is None
    store, chain = open_chain(home, t.genesis)
    try:
        assert (chain.height, chain.tip_hash) == (TIP, t.hashes[TIP])
        assert store._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        store.close()


def test_restore_over_an_unreadable_database_needs_force(template: Template, tmp_path: Path) -> None:
    t = template
    snap = tmp_path / "s.db"
    mt.snapshot_home(clone(t, tmp_path / "src"), snap)
    home = clone(t, tmp_path / "node")
    garbage = os.urandom(50_000)
    db_of(home).write_bytes(garbage)
    with pytest.raises(mt.MaintenanceError, match=r"cannot be read .* Pass --force"):
        mt.restore(home, snap)
    assert db_of(home).read_bytes() == garbage
    code, _out, err = _cli("restore", "--home", str(home), "--from", str(snap))
    assert code == 2 and "--force" in err
    code, out, err = _cli("restore", "--home", str(home), "--from", str(snap), "--force", "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["height"] == TIP and r["kept_meta"] == [] and "signing records are lost" in r["warnings"][0]
    assert Path(r["backup"]).read_bytes() == garbage


def test_a_new_node_starts_from_a_peers_snapshot(template: Template, tmp_path: Path) -> None:
    t = template
    snap = tmp_path / "peer.db"
    code, out, err = _cli("snapshot", "--home", str(clone(t, tmp_path / "peer")), "--out", str(snap), "--json")
    assert code == 0, err
    assert json.loads(out)["height"] == TIP
    genesis_file = tmp_path / "genesis.json"
    genesis_mod.write(genesis_file, t.genesis)
    pw = tmp_path / "pw"
    pw.write_text("a long password")
    pw.chmod(0o600)
    keystore.write(tmp_path / "key.json", PrivateKey(), "a long password", n=2**14)
    new = tmp_path / "new"
    args = ["--genesis", str(genesis_file), "--keystore", str(tmp_path / "key.json"), "--password-file", str(pw)]
    code, out, err = _cli("init", "--home", str(new), *args)
    assert code == 0, err
    code, out, err = _cli("restore", "--home", str(new), "--from", str(snap))
    assert code == 0, err
    assert f"height {TIP} (was height 0)" in out and "sha256     checked" in out
    store, chain = open_chain(new, t.genesis)
    try:
        assert (chain.height, chain.tip_hash) == (TIP, t.hashes[TIP])
        assert store.get_meta("controls") is None, "the peer's controls (standby) must not come along"
    finally:
        store.close()


def test_online_snapshots_are_consistent_while_blocks_are_committed(template: Template, tmp_path: Path) -> None:
    """The node's connection commits blocks in one thread while snapshots read through their own."""
    t = template
    home = clone(t, tmp_path / "node")
    store = Store(db_of(home))
    chain = Chain(t.genesis, store)
    stop = threading.Event()
    committed: list[int] = []
    failure: list[BaseException] = []

    def commit_blocks() -> None:
        try:
            while not stop.is_set():
                t.solo.grow(chain, 1, 50, to=lambda n: PrivateKey().address, amount=1)
                committed.append(chain.height)
        except BaseException as exc:
            failure.append(exc)

    writer = threading.Thread(target=commit_blocks)
    writer.start()
    infos = []
    try:
        for i in range(6):
            deadline = time.monotonic() + 30
            while len(committed) <= i and not failure and time.monotonic() < deadline:
                time.sleep(0.002)  # at least one more block committed before each snapshot
            infos.append(mt.snapshot(store, tmp_path / f"s{i}.db", chain_id=77, online=True))
    finally:
        stop.set()
        writer.join(timeout=60)
        store.close()
    assert not failure, failure
    heights = [i.height for i in infos]
    assert heights == sorted(heights) and heights[-1] >= TIP + 6, (heights, len(committed))
    # Each snapshot was checked when taken (state root = its tip header's); each restores.
    for i, info in enumerate(infos):
        dst = _fresh_home(t, tmp_path / f"r{i}")
        assert mt.restore(dst, Path(info.path)).height == info.height


# --- kill -9 in the middle ---------------------------------------------------------------------------

# The child reports each phase as it begins ("<phase> <seconds since ready>"), and SIGKILLs itself on
# reaching the phase named by its last argument, if any: kills exactly at every phase boundary. Random
# kills land inside the phases, the commit transaction included.
_CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path
    from iotex_node import maintenance

    die_at = sys.argv[4]
    t0 = time.monotonic()

    def say(phase):
        sys.stdout.write(f"{phase} {time.monotonic() - t0:.6f}\\n")
        sys.stdout.flush()
        if phase == die_at:
            os.kill(os.getpid(), signal.SIGKILL)

    say("ready")
    if sys.argv[1] == "rollback":
        maintenance.rollback(Path(sys.argv[2]), int(sys.argv[3]), progress=say)
    else:
        maintenance.restore(Path(sys.argv[2]), Path(sys.argv[3]), progress=say)
    """
)


def _child(args: list[str], *, delay: float | None = None, die_at: str = "") -> list[tuple[str, float]]:
    """Run the child; SIGKILL it `delay` seconds after it is ready (None: let it finish or die at
    `die_at`). Returns the phases it reported with their times."""
    with subprocess.Popen([sys.executable, "-c", _CHILD, *args, die_at], stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        assert child.stdout.readline().startswith("ready")
        if delay is not None:
            time.sleep(delay)
            child.send_signal(signal.SIGKILL)
        lines = [line.split() for line in child.stdout.read().split("\n")[:-1] if line]
        child.wait(timeout=30)
    return [(w[0], float(w[1])) for w in lines if len(w) == 2]


def _kill_schedule(timeline: list[tuple[str, float]], runs: int, rng: random.Random) -> list[tuple[float | None, str]]:
    """Exact kills at each phase, then random kills spread over every phase window of `timeline`."""
    phases = [p for p, _ in timeline if p != "done"]
    edges = [0.0] + [t for _, t in timeline]
    windows = list(itertools.pairwise(edges))
    plan: list[tuple[float | None, str]] = [(None, p) for p in phases]
    plan += [(rng.uniform(*windows[i % len(windows)]), "") for i in range(runs)]
    return plan


@pytest.mark.slow  # child processes
def test_kill9_during_rollback_then_again_ends_consistent(template: Template, tmp_path: Path) -> None:
    t = template
    to = 5
    home = clone(t, tmp_path / "node")
    timeline = _child(["rollback", str(home), str(to)])
    assert [p for p, _ in timeline] == ["check", "backup", "actions", "commit", "verify", "done"]
    landed: dict[str, int] = {}
    for delay, die_at in _kill_schedule(timeline, 12, random.Random(31337)):
        shutil.rmtree(home)
        clone(t, home)
        reported = _child(["rollback", str(home), str(to)], delay=delay, die_at=die_at)
        last = reported[-1][0] if reported else "start"
        landed[last] = landed.get(last, 0) + 1
        # Killed anywhere: the database is the old one or the rolled-back one, and opens consistent.
        store, chain = open_chain(home, t.genesis)
        try:
            killed_at = chain.height
            assert killed_at in (TIP, to), f"killed in {last}: tip {killed_at}"
            assert chain.state.data == t.states[killed_at]
            assert store.get_meta("privval") == (PRIVVAL if killed_at == TIP else None), "signing records apart from blocks"
        finally:
            store.close()
        # Running it again completes it.
        r = mt.rollback(home, to)
        assert r.noop == (killed_at == to)
        store, chain = open_chain(home, t.genesis)
        try:
            assert (chain.height, chain.tip_hash) == (to, t.hashes[to]) and chain.state.data == t.states[to]
            assert store.block_count_above(to) == 0 and store.get_meta("privval") is None
            for w in removed_wires(t, to):
                assert store.receipt(actions.parse(w, verify=False).hash) is None
        finally:
            store.close()
        assert not list(home.rglob(f"*{mt._TMP}*")), "a temporary file survived the second run"
        actions_files = list(home.glob("rollback-*.actions.jsonl"))
        assert actions_files, "no actions file to re-submit"
        assert all(len(f.read_text().splitlines()) == (TIP - to) * PER_BLOCK for f in actions_files)
    print(f"rollback timeline {timeline}; kills landed in: {landed}")
    assert len(landed) >= 5, landed


@pytest.mark.slow  # child processes
def test_kill9_during_restore_then_again_ends_consistent(template: Template, tmp_path: Path) -> None:
    t = template
    snap = tmp_path / "s.db"
    mt.snapshot_home(clone(t, tmp_path / "src"), snap)
    base = _fresh_home(t, tmp_path / "base")
    own = {"h": 3, "r": 1, "s": 2, "hash": "cd" * 32}
    set_meta(base, privval=own)
    home = tmp_path / "node"
    shutil.copytree(base, home)
    timeline = _child(["restore", str(home), str(snap)])
    assert [p for p, _ in timeline] == ["sha256", "copy", "check", "backup", "install", "verify", "done"]
    landed: dict[str, int] = {}
    for delay, die_at in _kill_schedule(timeline, 12, random.Random(4242)):
        shutil.rmtree(home)
        shutil.copytree(base, home)
        reported = _child(["restore", str(home), str(snap)], delay=delay, die_at=die_at)
        last = reported[-1][0] if reported else "start"
        landed[last] = landed.get(last, 0) + 1
        store, chain = open_chain(home, t.genesis)
        try:
            assert chain.height in (0, TIP), f"killed in {last}: tip {chain.height}"
            assert chain.state.data == t.states[chain.height]
            assert store.get_meta("privval") == own, f"killed in {last}: the node's signing record was lost"
        finally:
            store.close()
        assert mt.restore(home, snap).height == TIP
        store, chain = open_chain(home, t.genesis)
        try:
            assert (chain.height, chain.tip_hash) == (TIP, t.hashes[TIP]) and chain.state.data == t.states[TIP]
            assert store.get_meta("privval") == own
            assert store._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            store.close()
        assert not list(home.rglob(f"*{mt._TMP}*")), "a temporary file survived the second run"
    print(f"restore timeline {timeline}; kills landed in: {landed}")
    assert len(landed) >= 5, landed
