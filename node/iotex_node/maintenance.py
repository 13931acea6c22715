"""Maintenance of a node's data: rollback to a height, snapshot and restore. Synchronous, no asyncio.

- `NodeLock`: HOME/node.lock, an exclusive flock held by the running node for its whole life and by each
  offline command (rollback, restore, offline snapshot) while it runs. The kernel drops it when its holder
  dies, even by kill -9, so it never goes stale the way a pid file does.
- `rollback(home, H)`: reverts blocks H+1..tip and all their state effects in ONE SQLite transaction, from
  the undo records kept per block. Before that, and only once every check has passed: a backup of the
  database (HOME/backups/) and the removed blocks' actions as JSON lines (HOME/rollback-H-...jsonl, the
  wire form accepted by POST /v1/actions/batch). The node's signing records (meta 'privval' and 'lock')
  above H are deleted in the same transaction: the node must sign heights H+1.. again, which is what the
  operator asked for. A kill -9 at any instant leaves the old or the rolled-back database; run it again.
- `snapshot(db, out)`: a consistent copy with SQLite's backup API through a connection of its own (so the
  running node's event loop is never blocked and its connection is never shared across threads; WAL gives
  the copy one point in time while the node keeps committing), without the node's local records (what it
  signed, its lock, its operator controls), then fsync and rename, with OUT.sha256 and OUT.manifest.json.
- `restore(home, snap)`: checks (sha256 if beside it, integrity_check, genesis, state root against the tip
  header), backs the current database up, keeps the home's own local records, then installs the copy with
  one rename after checkpointing and removing the old database's -wal/-shm (a stale -wal next to the new
  file would be replayed into it).

Every refusal is a `MaintenanceError` (a NodeError) naming the problem, raised before anything changed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from iotex_node import actions as actions_mod
from iotex_node import config as config_mod
from iotex_node import execution as ex
from iotex_node import genesis as genesis_mod
from iotex_node import mempool_store
from iotex_node.chain import Chain
from iotex_node.config import PID_FILE, NodeConfig
from iotex_node.controls import Controls
from iotex_node.errors import ConfigError, InvalidAction, NodeError, StorageError
from iotex_node.fsutil import fsync_dir, fsync_path
from iotex_node.state import State
from iotex_node.store import SCHEMA_VERSION, Store, copy_database

LOCK_FILE = "node.lock"
BACKUPS_DIR = "backups"
# Meta records that belong to one node, not to the chain: what its delegate key signed last, its consensus
# lock, and its operator controls (paused, halt height, standby). A snapshot never carries them; a restore
# keeps the home's own. Carrying a peer's 'controls' would, for one, turn a standby into an active signer.
LOCAL_META = ("privval", "lock", "controls")
_TMP = ".maint.tmp"  # suffix of every temporary file we write in a node home
SNAPSHOT_FORMAT = 1

Progress = Callable[[str], None]


class MaintenanceError(NodeError):
    """A maintenance command was refused, or could not finish; the message says what and why."""


class NodeBusy(MaintenanceError):
    """The node lock is held: by the running node (holder 'node') or by another maintenance command."""

    def __init__(self, message: str, holder: str | None, pid: int | None) -> None:
        super().__init__(message)
        self.holder = holder
        self.pid = pid


# --- the node lock ---------------------------------------------------------------------------------


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class NodeLock:
    """Exclusive flock on HOME/node.lock; `holder` names who holds it ('node', 'rollback', ...)."""

    def __init__(self, home: Path, holder: str = "node") -> None:
        self.home = Path(home)
        self.path = self.home / LOCK_FILE
        self.holder = holder
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> NodeLock:
        if self._fd is not None:
            return self
        if not self.home.is_dir():
            raise ConfigError(f"node home {self.home} does not exist or is not a directory")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise self._busy() from None
        except OSError:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "holder": self.holder}).encode() + b"\n", 0)
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the flock; the file stays (unlinking it would race)

    def _busy(self) -> NodeBusy:
        try:
            doc = json.loads(self.path.read_text())
            holder, pid = str(doc["holder"]), int(doc["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            holder, pid = "node", None  # being written this very instant: the node is the usual holder
        if holder == "node":
            from_file = _read_pid(self.home / PID_FILE)
            where = f"pid {from_file} from {PID_FILE}" if from_file else f"pid {pid or 'unknown'}, holding {LOCK_FILE}"
            return NodeBusy(f"node at {self.home} is running ({where}): stop it first", holder, from_file or pid)
        return NodeBusy(
            f"node home {self.home} is in use by `iotex-node {holder}` (pid {pid}): wait for it to finish", holder, pid
        )

    def __enter__(self) -> NodeLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


# --- files -----------------------------------------------------------------------------------------


def _utc_stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def _tmp_for(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}{_TMP}")


def _unique(path: Path) -> Path:
    """`path`, or path with -1, -2 ... before its suffixes when it exists (two runs in one second)."""
    if not path.exists():
        return path
    stem, dot, rest = path.name.partition(".")
    for i in range(1, 10_000):
        p = path.with_name(f"{stem}-{i}{dot}{rest}")
        if not p.exists():
            return p
    raise MaintenanceError(f"too many files named like {path}")


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = _tmp_for(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def _unlink_tmp(path: Path) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def _cleanup_temps(cfg: NodeConfig) -> None:
    """Temporary files a killed maintenance command left behind; only called with the node lock held."""
    for d in {cfg.home, cfg.home / BACKUPS_DIR, cfg.path(cfg.database).parent}:
        if d.is_dir():
            for p in d.glob(f".*{_TMP}*"):
                p.unlink(missing_ok=True)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _backup(cfg: NodeConfig, src: Store | sqlite3.Connection, tip: int) -> Path:
    """A consistent copy of the database open on `src` as HOME/backups/chain-<tip>-<utc>.db."""
    d = cfg.home / BACKUPS_DIR
    d.mkdir(mode=0o700, exist_ok=True)
    final = _unique(d / f"chain-{tip}-{_utc_stamp()}.db")
    tmp = _tmp_for(final)
    try:
        if isinstance(src, Store):
            src.backup_to(tmp)
        else:
            copy_database(src, tmp)
        fsync_path(tmp)
        os.replace(tmp, final)
    finally:
        _unlink_tmp(tmp)
    fsync_dir(d)
    return final


def _raw_backup(cfg: NodeConfig, db: Path) -> Path:
    """Byte copies of an unreadable database (and its -wal), for the record."""
    d = cfg.home / BACKUPS_DIR
    d.mkdir(mode=0o700, exist_ok=True)
    final = _unique(d / f"chain-unreadable-{_utc_stamp()}.db")
    for suffix in ("", "-wal"):
        src = db.with_name(db.name + suffix)
        if src.exists():
            tmp = _tmp_for(final.with_name(final.name + suffix))
            shutil.copyfile(src, tmp)
            fsync_path(tmp)
            os.replace(tmp, final.with_name(final.name + suffix))
    fsync_dir(d)
    return final


@contextlib.contextmanager
def _os_errors(what: str) -> Iterator[None]:
    """File-system and SQLite failures become one-line errors naming the operation."""
    try:
        yield
    except OSError as exc:
        raise MaintenanceError(f"{what} failed: {exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}") from None
    except sqlite3.Error as exc:
        raise StorageError(f"{what} failed: {exc}") from None


# --- reading a database ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DbFacts:
    genesis_hash: str
    height: int
    tip_hash: str
    state_root: str
    chain_id: int | None
    schema: int | None


def _check_db(conn: sqlite3.Connection, what: str, genesis: genesis_mod.Genesis | None, chain_id: int | None = None) -> DbFacts:
    """Read a database's tip and check it is whole: tip block present, blocks 1..tip all there, state
    root equal to the tip header's (the genesis state's at height 0). With `genesis`, also that it belongs
    to it. Raises MaintenanceError naming the first problem."""
    try:
        meta = {k: orjson.loads(v) for k, v in conn.execute("SELECT key, value FROM meta")}
    except (sqlite3.Error, orjson.JSONDecodeError) as exc:
        raise MaintenanceError(f"{what} is not a node database: {exc}") from None
    gh, tip = meta.get("genesis_hash"), meta.get("tip")
    if not isinstance(gh, str) or not isinstance(tip, dict):
        raise MaintenanceError(f"{what} is not an initialized node database (no genesis hash or tip)")
    if genesis is not None and gh != genesis.hash.hex():
        raise MaintenanceError(
            f"{what} belongs to genesis {gh}, but this home's genesis is {genesis.hash.hex()} (chain {genesis.chain_id})"
        )
    height, tip_hash = int(tip["height"]), str(tip["hash"])
    top, count = conn.execute("SELECT MAX(height), COUNT(*) FROM blocks").fetchone()
    if height == 0:
        if count:
            raise MaintenanceError(f"{what} has {count} blocks above its tip 0")
        expected_root = ex.genesis_state(genesis).root().hex() if genesis is not None else None
    else:
        if top != height or count != height:
            raise MaintenanceError(f"{what} has {count} blocks up to {top}, but its tip is {height}")
        row = conn.execute("SELECT hash, data FROM blocks WHERE height=?", (height,)).fetchone()
        if bytes(row[0]).hex() != tip_hash:
            raise MaintenanceError(f"{what}: block {height} has hash {bytes(row[0]).hex()}, the tip says {tip_hash}")
        header = orjson.loads(row[1])["header"]
        expected_root, chain_id = str(header["state_root"]), int(header["chain_id"])
    state = State({k: bytes(v) for k, v in conn.execute("SELECT key, value FROM state")})
    root = state.root().hex()
    if expected_root is not None and root != expected_root:
        raise MaintenanceError(f"{what} is inconsistent: its state root {root} does not match block {height}'s {expected_root}")
    if height == 0 and genesis is not None:
        chain_id = genesis.chain_id
    schema = meta.get("schema")
    return DbFacts(gh, height, tip_hash, root, chain_id, schema if isinstance(schema, int) else None)


def parse_height(value: object, what: str = "height") -> int:
    """A block height from the CLI or a caller: a non-negative integer, refused clearly otherwise."""
    if isinstance(value, bool):
        raise MaintenanceError(f"{what} must be a block height (an integer >= 0), got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text, 10)
        except ValueError:
            raise MaintenanceError(f"{what} must be a block height (an integer >= 0), got {text[:40]!r}") from None
    if not isinstance(value, int):
        raise MaintenanceError(f"{what} must be a block height (an integer >= 0), got {value!r}")
    if value < 0:
        raise MaintenanceError(f"{what} {value} is negative: a block height is >= 0")
    return value


def _load_home(home: Path) -> tuple[NodeConfig, genesis_mod.Genesis]:
    cfg = config_mod.load(Path(home))
    return cfg, genesis_mod.load(cfg.path(cfg.genesis))


# --- rollback --------------------------------------------------------------------------------------


@dataclass
class RollbackPlan:
    """What a rollback will do, computed and checked before anything changes (shown for confirmation)."""

    home: str
    database: str
    from_height: int
    to_height: int
    earliest_height: int
    blocks: int
    actions: int
    clear_meta: list[str]
    notes: list[str]


@dataclass
class RollbackReport:
    home: str
    database: str
    from_height: int
    to_height: int
    removed_blocks: int
    removed_actions: int
    tip_hash: str
    state_root: str
    backup: str | None = None
    actions_file: str | None = None
    # How many of the removed actions were put back in the node's mempool journal (re-admitted at its start).
    requeued_actions: int = 0
    cleared_meta: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    noop: bool = False
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def rollback(
    home: Path,
    to_height: object,
    *,
    backup: bool = True,
    confirm: Callable[[RollbackPlan], bool] | None = None,
    progress: Progress | None = None,
) -> RollbackReport:
    """Revert blocks to_height+1..tip of the (stopped) node at `home`; see the module docstring."""
    say = progress or (lambda _phase: None)
    height = parse_height(to_height, "rollback height")
    cfg, genesis = _load_home(home)
    db = cfg.path(cfg.database)
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    with NodeLock(cfg.home, "rollback"), _os_errors(f"rollback of {cfg.home}"):
        _cleanup_temps(cfg)
        say("check")
        store = Store(db)
        try:
            stored_genesis = store.get_meta("genesis_hash")
            if stored_genesis != genesis.hash.hex():
                raise MaintenanceError(f"database {db} belongs to genesis {stored_genesis}, not {genesis.hash.hex()}")
            tip, tip_hash = store.tip()
            if height > tip:
                raise MaintenanceError(
                    f"cannot roll back to height {height}: it is above the tip {tip} of {cfg.home} (nothing to revert here)"
                )
            if height == tip:
                root = _root_at(store, genesis, tip)
                return RollbackReport(
                    str(cfg.home), str(db), tip, tip, 0, 0, tip_hash.hex(), root.hex(), noop=True,
                    notes=[f"already at height {tip}: nothing to roll back"], seconds=time.monotonic() - t0,
                )  # fmt: skip
            lowest = store.lowest_undo_height()
            earliest = tip if lowest is None else lowest - 1
            if height < earliest:
                raise MaintenanceError(
                    f"cannot roll back to height {height}: undo records are kept for the last {cfg.undo_depth} blocks, "
                    f"so the earliest reachable height is {earliest} (tip {tip}); restore a snapshot to go further back"
                )
            if store.block_count_above(height) != tip - height:
                raise MaintenanceError(f"database {db} lacks some of blocks {height + 1}..{tip}: it is inconsistent")
            restore, wires, hashes = _undo_plan(store, height, tip)
            target_hash = genesis.hash if height == 0 else store.block_hash(height)
            target_root = _root_at(store, genesis, height)
            assert target_hash is not None
            # Check the result before changing anything: the undo records must lead to block H's state root.
            state = State(store.load_state())
            if state.root_after(restore) != target_root:
                raise MaintenanceError(
                    f"the undo records of {db} do not lead to block {height}'s state root: the database is "
                    "inconsistent; nothing was changed (rebuild the node from a snapshot)"
                )
            del state
            clear = _signing_records_above(store, height)
            plan = RollbackPlan(
                str(cfg.home), str(db), tip, height, earliest, tip - height, len(wires), clear, _control_notes(store, height)
            )
            timings["check"] = time.monotonic() - t0
            if confirm is not None and not confirm(plan):
                raise MaintenanceError("rollback not confirmed: nothing was changed")
            report = RollbackReport(
                str(cfg.home), str(db), tip, height, tip - height, len(wires), target_hash.hex(), target_root.hex(),
                cleared_meta=clear, notes=plan.notes,
            )  # fmt: skip
            t = time.monotonic()
            if backup:
                say("backup")
                report.backup = str(_backup(cfg, store, tip))
                timings["backup"] = time.monotonic() - t
            say("actions")
            t = time.monotonic()
            actions_file = _unique(cfg.home / f"rollback-{height}-{_utc_stamp()}.actions.jsonl")
            _write_atomic(actions_file, b"".join(orjson.dumps(w) + b"\n" for w in wires))
            report.actions_file = str(actions_file)
            timings["actions_file"] = time.monotonic() - t
            say("commit")
            t = time.monotonic()
            store.rollback_to(height, target_hash, (tip, tip_hash), restore, hashes, clear)
            timings["commit"] = time.monotonic() - t
        finally:
            store.close()
        if wires:
            t = time.monotonic()
            _requeue(cfg, wires, report)
            timings["requeue"] = time.monotonic() - t
        say("verify")
        t = time.monotonic()
        _verify_opens(cfg, genesis, height, target_hash, target_root)
        timings["verify"] = time.monotonic() - t
        report.seconds = time.monotonic() - t0
        report.timings = {k: round(v, 4) for k, v in timings.items()}
        say("done")
        return report


def _requeue(cfg: NodeConfig, wires: list[Any], report: RollbackReport) -> None:
    """Put the removed blocks' actions back in the node's mempool journal: at its start the node re-admits those
    still valid and records why the others never will be (GET /v1/actions/{hash}). The blocks are gone already;
    a journal that cannot take them only costs a note (the actions file has them all)."""
    if cfg.mempool_durability == "off":
        report.notes.append("mempool.durability is off: the removed actions are only in the actions file")
        return
    path = cfg.path(cfg.mempool_journal)
    rows = []
    for w in wires:
        a = actions_mod.parse(w, verify=False)
        rows.append((a.hash, a.sender, a.nonce, orjson.dumps(w)))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        report.requeued_actions = mempool_store.append_offline(path, rows)
    except (OSError, sqlite3.Error) as exc:
        report.notes.append(f"the removed actions could not be put back in the mempool journal {path}: {exc}")


def _root_at(store: Store, genesis: genesis_mod.Genesis, height: int) -> bytes:
    if height == 0:
        return ex.genesis_state(genesis).root()
    data = store.block_data(height)
    if data is None:
        raise MaintenanceError(f"block {height} is missing from {store.path}")
    return bytes.fromhex(orjson.loads(data)["header"]["state_root"])


def _undo_plan(store: Store, height: int, tip: int) -> tuple[dict[str, bytes | None], list[Any], list[bytes]]:
    """The value of every key changed above `height` as it was at `height`, and the removed actions."""
    restore: dict[str, bytes | None] = {}
    for h in range(tip, height, -1):  # downwards: the lowest block's record of a key is the value at `height`
        rec = store.undo_record(h)
        if rec is None:
            raise MaintenanceError(f"the undo record of block {h} is missing: the earliest reachable height is {h}")
        restore.update(rec)
    wires: list[Any] = []
    hashes: list[bytes] = []
    start = height + 1
    while start <= tip:
        batch = store.blocks_data(start, min(256, tip - start + 1))
        for raw in batch:
            for w in orjson.loads(raw)["actions"]:
                try:
                    hashes.append(actions_mod.parse(w, verify=False).hash)
                except InvalidAction as exc:
                    raise MaintenanceError(f"block {start} of {store.path} holds an unreadable action: {exc}") from None
                wires.append(w)
            start += 1
    return restore, wires, hashes


def _signing_records_above(store: Store, height: int) -> list[str]:
    """Signing records for heights above `height`: they must go, or the node refuses to sign those again."""
    clear = []
    privval = store.get_meta("privval")
    if isinstance(privval, dict) and int(privval.get("h", 0)) > height:
        clear.append("privval")
    lock = store.get_meta("lock")
    if isinstance(lock, dict) and int(lock.get("height", 0)) > height:
        clear.append("lock")
    return clear


def _control_notes(store: Store, height: int) -> list[str]:
    c = Controls.from_json(store.get_meta("controls"))
    notes = []
    if c.halt_height is not None:
        notes.append(f"halt height {c.halt_height} is still scheduled (iotex-node admin halt-at --clear to remove it)")
    if c.paused:
        notes.append("the node is paused: resume it after the restart (iotex-node admin resume)")
    if c.standby:
        notes.append("the node is a standby: it will not sign until activated")
    return notes


def _verify_opens(cfg: NodeConfig, genesis: genesis_mod.Genesis, height: int, tip_hash: bytes, root: bytes) -> None:
    """Reopen the database as the node will (Chain checks the state against the tip header)."""
    store = Store(cfg.path(cfg.database))
    try:
        chain = Chain(genesis, store, undo_depth=cfg.undo_depth)
        if (chain.height, chain.tip_hash, chain.state.root()) != (height, tip_hash, root):
            raise MaintenanceError(
                f"after the change, {store.path} is at {chain.height} ({chain.tip_hash.hex()[:16]}, state root "
                f"{chain.state.root().hex()[:16]}), not at {height} ({tip_hash.hex()[:16]}, {root.hex()[:16]})"
            )
    finally:
        store.close()


# --- snapshot --------------------------------------------------------------------------------------


@dataclass
class SnapshotInfo:
    path: str
    sha256: str
    bytes: int
    height: int
    tip_hash: str
    state_root: str
    genesis_hash: str
    chain_id: int | None
    created: str
    online: bool
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def check_snapshot_out(out: object) -> Path:
    """Where a snapshot may be written: a new file in an existing directory."""
    if not isinstance(out, str | Path) or not str(out):
        raise MaintenanceError("the snapshot's output must be a file path")
    p = Path(out)
    if p.exists() or p.is_symlink():
        raise MaintenanceError(f"{p} exists: choose another output file or remove it")
    if not p.parent.is_dir():
        raise MaintenanceError(f"directory {p.parent} does not exist")
    return p


def snapshot(
    source: Store | Path, out: Path, *, chain_id: int | None = None, online: bool = False, progress: Progress | None = None
) -> SnapshotInfo:
    """Write a consistent copy of the database `source` (a Store or a database file) to `out`.

    Reads through a connection of its own, so it can run in a worker thread while the node commits blocks
    (online) or on a stopped node (the caller holds the node lock). The copy has no local records
    (LOCAL_META), is checked (tip, blocks, state root), written to a temporary file, fsynced and renamed;
    OUT.sha256 (sha256sum format) and OUT.manifest.json are written beside it first.
    """
    say = progress or (lambda _phase: None)
    db = source.path if isinstance(source, Store) else Path(source)
    out = check_snapshot_out(out)
    t0 = time.monotonic()
    if not db.is_file():
        raise StorageError(f"no database at {db}")
    tmp = _tmp_for(out)
    with _os_errors(f"snapshot to {out}"):
        try:
            say("copy")
            src = sqlite3.connect(db, isolation_level=None)
            try:
                # One backup step (pages=-1): one read transaction, so one point in time; in WAL mode the
                # node keeps committing meanwhile and its connection is left alone.
                copy_database(src, tmp, LOCAL_META)
            finally:
                src.close()
            say("check")
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                facts = _check_db(conn, f"snapshot of {db}", None, chain_id)
            finally:
                conn.close()
            fsync_path(tmp)
            say("sha256")
            digest = sha256_file(tmp)
            size = tmp.stat().st_size
            created = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
            manifest = {
                "kind": "iotex-node-snapshot",
                "format": SNAPSHOT_FORMAT,
                "file": out.name,
                "sha256": digest,
                "bytes": size,
                "chain_id": facts.chain_id,
                "genesis_hash": facts.genesis_hash,
                "height": facts.height,
                "tip_hash": facts.tip_hash,
                "state_root": facts.state_root,
                "schema": facts.schema,
                "created": created,
                "online": online,
            }
            _write_atomic(_sidecar(out, ".sha256"), f"{digest}  {out.name}\n".encode())
            _write_atomic(_sidecar(out, ".manifest.json"), json.dumps(manifest, indent=2).encode() + b"\n")
            os.replace(tmp, out)
            fsync_dir(out.parent)
        finally:
            _unlink_tmp(tmp)
    say("done")
    return SnapshotInfo(
        str(out), digest, size, facts.height, facts.tip_hash, facts.state_root, facts.genesis_hash, facts.chain_id,
        created, online, round(time.monotonic() - t0, 4),
    )  # fmt: skip


def _sidecar(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def snapshot_home(home: Path, out: Path, *, progress: Progress | None = None) -> SnapshotInfo:
    """Snapshot a stopped node's database; refused while the node runs (use the admin channel then)."""
    cfg, genesis = _load_home(home)
    out = check_snapshot_out(out)
    with NodeLock(cfg.home, "snapshot"):
        return snapshot(cfg.path(cfg.database), out, chain_id=genesis.chain_id, progress=progress)


# --- restore ---------------------------------------------------------------------------------------


@dataclass
class RestoreReport:
    home: str
    database: str
    snapshot: str
    sha256_checked: bool
    height: int
    tip_hash: str
    state_root: str
    previous_height: int | None
    backup: str | None
    kept_meta: list[str]
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _expected_sha256(snap: Path) -> str | None:
    side = _sidecar(snap, ".sha256")
    if not side.exists():
        return None
    text = side.read_text().split()
    digest = text[0].lower() if text else ""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise MaintenanceError(f"{side} does not hold a sha256")
    return digest


def restore(home: Path, snapshot_path: Path, *, force: bool = False, progress: Progress | None = None) -> RestoreReport:
    """Replace the (stopped) node's database with a checked snapshot; see the module docstring.

    `force` restores even when the current database is unreadable, so its signing records are lost: the
    delegate could then sign again a height it signed before the failure.
    """
    say = progress or (lambda _phase: None)
    cfg, genesis = _load_home(home)
    snap = Path(snapshot_path)
    if not snap.is_file():
        raise MaintenanceError(f"snapshot {snap} does not exist or is not a file")
    db = cfg.path(cfg.database)
    if snap.resolve() == db.resolve():
        raise MaintenanceError(f"{snap} is the database of {cfg.home} itself: restore from a snapshot or a backup")
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    warnings: list[str] = []
    with NodeLock(cfg.home, "restore"), _os_errors(f"restore of {cfg.home} from {snap}"):
        _cleanup_temps(cfg)
        say("sha256")
        expected = _expected_sha256(snap)
        if expected is not None:
            actual = sha256_file(snap)
            if actual != expected:
                raise MaintenanceError(
                    f"snapshot {snap} fails its checksum: sha256 {actual}, expected {expected} "
                    f"(from {_sidecar(snap, '.sha256').name}); nothing was changed"
                )
        timings["sha256"] = time.monotonic() - t0
        db.parent.mkdir(parents=True, exist_ok=True)
        tmp = _tmp_for(db)
        try:
            say("copy")
            t = time.monotonic()
            shutil.copyfile(snap, tmp)
            timings["copy"] = time.monotonic() - t
            say("check")
            t = time.monotonic()
            facts = _check_copy(tmp, snap, genesis)
            timings["check"] = time.monotonic() - t
            say("backup")
            t = time.monotonic()
            local, previous, backup_path = _retire_old(cfg, db, force, warnings)
            timings["backup"] = time.monotonic() - t
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany("DELETE FROM meta WHERE key=?", ((k,) for k in LOCAL_META))
                conn.executemany("INSERT INTO meta(key, value) VALUES(?, ?)", local.items())
                conn.execute("COMMIT")
            finally:
                conn.close()
            fsync_path(tmp)
            say("install")
            for suffix in ("-wal", "-shm"):  # the old database was checkpointed into its main file
                db.with_name(db.name + suffix).unlink(missing_ok=True)
            os.replace(tmp, db)
            fsync_dir(db.parent)
        finally:
            _unlink_tmp(tmp)
        say("verify")
        t = time.monotonic()
        _verify_opens(cfg, genesis, facts.height, bytes.fromhex(facts.tip_hash), bytes.fromhex(facts.state_root))
        timings["verify"] = time.monotonic() - t
        say("done")
        return RestoreReport(
            str(cfg.home), str(db), str(snap), expected is not None, facts.height, facts.tip_hash, facts.state_root,
            previous, None if backup_path is None else str(backup_path), sorted(local), warnings,
            round(time.monotonic() - t0, 4), {k: round(v, 4) for k, v in timings.items()},
        )  # fmt: skip


def _check_copy(tmp: Path, snap: Path, genesis: genesis_mod.Genesis) -> DbFacts:
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
    except sqlite3.Error as exc:
        raise MaintenanceError(f"snapshot {snap} cannot be opened: {exc}") from None
    try:
        try:
            conn.execute("PRAGMA journal_mode=DELETE")  # self-contained: no -wal beside the installed file
            problems = [r[0] for r in conn.execute("PRAGMA integrity_check")]
        except sqlite3.DatabaseError as exc:
            raise MaintenanceError(f"snapshot {snap} is not a readable database: {exc}; nothing was changed") from None
        if problems != ["ok"]:
            raise MaintenanceError(f"snapshot {snap} fails integrity_check: {'; '.join(problems[:3])}; nothing was changed")
        try:
            facts = _check_db(conn, f"snapshot {snap}", genesis)
        except sqlite3.DatabaseError as exc:
            raise MaintenanceError(f"snapshot {snap} cannot be read: {exc}; nothing was changed") from None
        if facts.schema != SCHEMA_VERSION:
            raise MaintenanceError(f"snapshot {snap} has database schema {facts.schema}; this node uses {SCHEMA_VERSION}")
        return facts
    finally:
        conn.close()


def _retire_old(cfg: NodeConfig, db: Path, force: bool, warnings: list[str]) -> tuple[dict[str, bytes], int | None, Path | None]:
    """Read the current database's local records, back it up, and checkpoint it so that its -wal can go.

    Returns (local meta to keep, its tip height, backup path)."""
    if not db.exists():
        return {}, None, None
    try:
        conn = sqlite3.connect(db, isolation_level=None)
        try:
            marks = ",".join("?" * len(LOCAL_META))
            local = {k: bytes(v) for k, v in conn.execute(f"SELECT key, value FROM meta WHERE key IN ({marks})", LOCAL_META)}  # noqa: S608 - placeholders only
            row = conn.execute("SELECT value FROM meta WHERE key='tip'").fetchone()
            previous = int(orjson.loads(row[0])["height"]) if row else None
            backup_path = _backup(cfg, conn, previous if previous is not None else 0)
            busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            if busy:
                raise MaintenanceError(f"database {db} is in use by another process: cannot checkpoint it")
        finally:
            conn.close()
        return local, previous, backup_path
    except (sqlite3.DatabaseError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        if not force:
            raise MaintenanceError(
                f"the current database {db} cannot be read ({exc}), so its signing records are unknown and the "
                "restored delegate could sign a height it already signed; nothing was changed. Pass --force to "
                "restore anyway, and keep the node paused until the network is past the heights it may have signed"
            ) from None
    warnings.append(f"the current database {db} was unreadable: its signing records are lost (restored with --force)")
    return {}, None, _raw_backup(cfg, db)


@dataclass
class CheckReport:
    """`iotex-node db check`: whether the database is whole, and what it holds."""

    home: str
    database: str
    ok: bool
    problems: list[str]
    height: int | None
    tip_hash: str | None
    state_root: str | None
    bytes: int
    quick: bool
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def check_database(home: Path, quick: bool = False) -> CheckReport:
    """Check a node's database, running or stopped (read-only): SQLite's integrity_check (or quick_check) of
    every page, then the node's own reading: the genesis it belongs to, every block up to the tip, the state
    root against the tip header's. Problems are reported, not raised; a missing home or file is refused."""
    from iotex_node.store import integrity_problems

    t0 = time.monotonic()
    cfg = config_mod.load(home)
    db = cfg.path(cfg.database)
    if not db.is_file():
        raise MaintenanceError(f"no database at {db}")
    genesis = genesis_mod.load(cfg.path(cfg.genesis))
    size = db.stat().st_size
    facts: DbFacts | None = None
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        problems = [f"cannot be opened: {exc}"]
    else:
        try:
            problems = integrity_problems(conn, quick)
            if not problems:
                try:
                    facts = _check_db(conn, f"database {db}", genesis)
                except MaintenanceError as exc:
                    problems = [str(exc)]
                except sqlite3.DatabaseError as exc:
                    problems = [f"unreadable: {exc}"]
        finally:
            conn.close()
    return CheckReport(
        str(cfg.home), str(db), not problems, problems[:20], facts.height if facts else None,
        facts.tip_hash if facts else None, facts.state_root if facts else None, size, quick,
        round(time.monotonic() - t0, 4),
    )  # fmt: skip


# --- standby (offline) -----------------------------------------------------------------------------


def set_standby(home: Path) -> dict[str, Any]:
    """Make the stopped node at `home` a standby: it starts following, not signing, until promoted.

    What a failed-over primary needs before it comes back: its key now signs elsewhere, and a primary that
    starts signs at once. Refused while the node runs (`iotex-node admin demote` does it then)."""
    from iotex_node.controls import Controls

    home = Path(home)
    cfg = config_mod.load(home)
    with NodeLock(home, "standby"):
        store = Store(cfg.path(cfg.database))
        try:
            controls = Controls.from_json(store.get_meta("controls"))
            was = controls.standby
            controls.standby = True
            store.set_meta("controls", controls.to_json())
        finally:
            store.close()
    return {"home": str(home), "standby": True, "was_standby": was}
