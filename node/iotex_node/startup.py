"""Starting a node process: the config, the delegate key, the imports, and how long each took.

A delegate that restarts (a compatible hotfix restarts every delegate in turn) should be endorsing again
within about one block interval, so the start-up path does its expensive parts side by side:

- the keystore's scrypt derivation (about 0.05-0.1 s at the testnet and production costs on a slow CPU)
  runs in a thread while the main thread imports the node's modules: hashlib.scrypt releases the GIL, so
  on two cores the key is ready by the time the imports are done. Nothing about the keystore changes: the
  same file, the same scrypt cost, no cached or derived key written anywhere;
- the HTTP API (aiohttp is the largest import) is imported in a thread after the node has joined the
  network, while the event loop handshakes with peers and asks them for the blocks it missed (node.py).

Each part is timed from the moment the process was created (so the interpreter's own start-up counts):
logged in one line once the node is up, and exported as iotex_node_startup_seconds{phase}.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from iotex_node.config import NodeConfig
    from iotex_node.crypto.keys import PrivateKey

log = logging.getLogger("iotex_node")


def process_age() -> float:
    """Seconds since this process was created (fork, or exec of a launcher that execs Python), from
    /proc; 0.0 where that cannot be read. Resolution: one clock tick (10 ms)."""
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        # The command name (field 2) may hold spaces and parentheses: the fields after it follow the last ')'.
        start_ticks = int(stat[stat.rindex(b")") + 2 :].split()[19])
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0


class Phases:
    """Named moments of the start-up, in seconds since the process was created (or since this object was,
    for a node that is not a process of its own)."""

    def __init__(self, since_process_start: bool = True) -> None:
        self._t0 = time.monotonic() - (process_age() if since_process_start else 0.0)
        self.marks: dict[str, float] = {}

    def now(self) -> float:
        return time.monotonic() - self._t0

    def mark(self, name: str) -> float:
        """Record that `name` is done now; returns the time since the process was created."""
        t = self.marks[name] = round(self.now(), 4)
        return t

    def once(self, name: str) -> float | None:
        """Mark `name` the first time only; the time on that first call, None on later ones."""
        if name in self.marks:
            return None
        return self.mark(name)

    def line(self) -> str:
        """`interpreter 0.06 s, config 0.07 s, ...`: each moment since the process was created."""
        return ", ".join(f"{k} {v:.3f} s" for k, v in self.marks.items())


def load_key(cfg: NodeConfig) -> PrivateKey:
    """The delegate key from the keystore; the password from $IOTEX_KEYSTORE_PASSWORD, else the password file."""
    from iotex_node.config import read_secret_file
    from iotex_node.crypto import keystore

    password = os.environ.get("IOTEX_KEYSTORE_PASSWORD")
    if password is None:
        password = read_secret_file(cfg.path(cfg.password_file), "keystore password")
    return keystore.read(cfg.path(cfg.keystore), password)


class KeyLoader:
    """`load_key` in a thread: the scrypt derivation overlaps the imports. `result()` re-raises its error."""

    def __init__(self, cfg: NodeConfig) -> None:
        self._cfg = cfg
        self._key: PrivateKey | None = None
        self._error: BaseException | None = None
        self.seconds = 0.0  # how long the derivation itself took
        self._thread = threading.Thread(target=self._run, name="keystore", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        t = time.monotonic()
        try:
            self._key = load_key(self._cfg)
        except BaseException as exc:  # handed to the main thread, which reports it as the node's error
            self._error = exc
        self.seconds = time.monotonic() - t

    def result(self) -> PrivateKey:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._key is not None
        return self._key


def exit_now(code: int) -> NoReturn:
    """End the process with `code` without the interpreter's teardown of every module (about 40 ms here,
    a part of every restart). Only once the node has stopped: its database closed, its pid file removed, its
    lock released; what is left to do is flushing the log and the standard streams, done here."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def run(home: Path) -> int:
    """Run a node until SIGTERM/SIGINT; returns the process exit code."""
    phases = Phases()
    phases.mark("interpreter")  # the launcher, Python itself, the CLI
    from iotex_node import config as config_mod

    cfg = config_mod.load(home)
    phases.mark("config")
    keys = KeyLoader(cfg)  # from here the key derivation runs beside the imports below

    import asyncio

    from iotex_node import genesis as genesis_mod
    from iotex_node import node as node_mod
    from iotex_node.config import PID_FILE
    from iotex_node.maintenance import NodeLock

    phases.mark("imports")
    # Held for the node's whole life (the kernel drops it if we die): a second node on this home, and the
    # offline maintenance commands (rollback, restore), refuse while it is held.
    lock = NodeLock(cfg.home, "node").acquire()
    try:
        logging.basicConfig(
            level=getattr(logging, cfg.log_level.upper(), logging.INFO),
            format=f"%(asctime)s %(levelname)s [{cfg.name}] %(name)s: %(message)s",
        )
        genesis = genesis_mod.load(cfg.path(cfg.genesis))
        phases.mark("genesis")
        key = keys.result()
        phases.mark("keystore")
        # A new home's first start creates its database, when its installer asked for it (after the keystore
        # and its password are known good); a home without a database nor a request is refused below.
        from iotex_node import init_request

        database = cfg.path(cfg.database)
        if init_request.apply(cfg.home, database, cfg.path(cfg.genesis), lambda db: node_mod.Chain.initialize(genesis, db)):
            phases.mark("database created")
        node = node_mod.Node(cfg, key, genesis, phases=phases)
        phases.mark("database")
        pidfile = cfg.home / PID_FILE
        pidfile.write_text(f"{os.getpid()}\n")
        log.info("keystore: scrypt took %.3f s beside the imports", keys.seconds)
        try:
            asyncio.run(node.run_until_signalled())
        finally:
            pidfile.unlink(missing_ok=True)
        return 1 if node.fatal else 0
    finally:
        lock.release()
