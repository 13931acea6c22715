"""One run per network at a time: an flock on `<state>/locks/<network>.lock` holding who has it.

The kernel releases an flock when its process dies, so a lock left by a crashed or killed run is stale by
construction: the next run takes it and says whose it was. A live holder is named in the refusal.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from iotex_ops.runbook.model import RunbookError


class NetworkLocked(RunbookError):
    """Another run holds this network's lock."""


class NetworkLock:
    def __init__(self, locks_dir: Path, network: str) -> None:
        self.path = locks_dir / f"{network}.lock"
        self.network = network
        self._fd: int | None = None
        self.previous: dict[str, Any] | None = None  # a stale holder this lock replaced

    def holder(self) -> dict[str, Any] | None:
        try:
            doc = json.loads(self.path.read_text() or "null")
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def acquire(self, run_id: str, runbook: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            h = self.holder() or {}
            raise NetworkLocked(
                f"network {self.network} is locked by run {h.get('run_id', '?')} ({h.get('runbook', '?')}, "
                f"pid {h.get('pid', '?')} on {h.get('machine', '?')}, user {h.get('user', '?')}, "
                f"since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(h.get('since', 0)))}); "
                "wait for it to end, or stop it"
            ) from None
        old = self.holder()
        if old and old.get("pid") != os.getpid():
            self.previous = old  # a holder that died without releasing (its own run, when resuming it)
        me = {
            "run_id": run_id,
            "runbook": runbook,
            "pid": os.getpid(),
            "machine": socket.gethostname(),
            "user": os.environ.get("USER", str(os.getuid())),
            "since": time.time(),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
