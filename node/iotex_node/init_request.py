"""A request, left in a node home, to create the node's database from its genesis at the next start.

A node refuses to start without its database (exit 3: a lost database is restored, never silently replaced
by a new chain). The installer that writes a new home (the playbooks' iotex_home module) used to create the
database with `iotex-node init` on a staging home, a process of its own on every new host. It now leaves
this request instead, and the node's first start creates the database in the process it starts anyway:

    <home>/init.request    {"genesis_sha256": "<sha256 of the home's genesis.json>"}

The request is bound to the genesis it was made for: a start whose genesis.json has other bytes refuses it
(exit 3, naming both digests) rather than create a chain from a file nobody asked for. A database that
already exists wins: the request is dropped and the database opened as it is. The request is consumed only
after the database is created and its directory synced; the start checks the keystore and its password
first, so a home whose secrets are wrong never gets a database (what `iotex-node init` checked before).

The playbooks' module looks for this file (iotex_node/init_request.py) in the release it starts, and
falls back to `iotex-node init` for a release built before it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from iotex_node.errors import StorageError

FILE = "init.request"
_MAX_BYTES = 4096

log = logging.getLogger("iotex_node")


def read(home: Path) -> str | None:
    """The genesis sha256 a request in `home` asks for, None when there is no request."""
    path = Path(home) / FILE
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageError(f"database request {path} is unreadable: {exc}") from None
    try:
        doc = json.loads(raw) if len(raw) <= _MAX_BYTES else None
    except ValueError:
        doc = None
    want = doc.get("genesis_sha256") if isinstance(doc, dict) else None
    if not isinstance(want, str) or len(want) != 64 or any(c not in "0123456789abcdef" for c in want):
        raise StorageError(f'database request {path} is malformed: it must be {{"genesis_sha256": "<64 hex digits>"}}')
    return want


def apply(home: Path, database: Path, genesis_file: Path, initialize: Callable[[Path], None]) -> bool:
    """Before the database is opened: create it with `initialize(database)` when it is absent and `home` holds a
    request for this genesis; drop a request that an existing database makes moot. True when it created it."""
    want = read(home)
    if want is None:
        return False
    request = Path(home) / FILE
    if database.exists():
        log.info("database %s exists; dropping the request to create it", database)
        request.unlink(missing_ok=True)
        return False
    have = hashlib.sha256(Path(genesis_file).read_bytes()).hexdigest()
    if have != want:
        raise StorageError(
            f"database request {request} is for a genesis with sha256 {want}, but {genesis_file} has sha256 {have}: "
            "not creating a chain from a genesis nobody asked for (write the home again, or remove the request)"
        )
    initialize(database)
    fd = os.open(database.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    request.unlink()
    log.info("created database %s from genesis %s (requested at install)", database, want[:16])
    return True
