"""Who may run on a network at once: flocks under `<locks>/`, each file holding who has it.

A drill takes its network's lock exclusively: nothing else runs on the network meanwhile. A remediation
is scoped to one host: it takes the network's lock *shared* (so it waits for, and blocks, a drill) and its
host's lock exclusively (one remediation per host at a time; other hosts may be remediated meanwhile).

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
    """Another run holds this network's (or this host's) lock."""


def _describe(h: dict[str, Any]) -> str:
    return (
        f"run {h.get('run_id', '?')} ({h.get('runbook', '?')}, pid {h.get('pid', '?')} on {h.get('machine', '?')}, "
        f"user {h.get('user', '?')}, since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(h.get('since', 0)))})"
    )


class _Flock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self.recorded = False  # this process wrote itself in as the holder (so it clears that on release)
        self.previous: dict[str, Any] | None = None  # a stale holder this lock replaced

    def holder(self) -> dict[str, Any] | None:
        try:
            doc = json.loads(self.path.read_text() or "null")
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def take(self, shared: bool, wait_s: float) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + wait_s
        try:
            while True:
                try:
                    fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        os.close(fd)
                        return False
                    time.sleep(0.2)
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        self._fd = fd
        return True

    def record(self, run_id: str, runbook: str) -> None:
        """Write the holder (exclusive locks only: shared holders would overwrite each other)."""
        assert self._fd is not None
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
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, json.dumps(me).encode(), 0)
        os.fsync(self._fd)
        self.recorded = True

    def release(self, clear: bool) -> None:
        if self._fd is None:
            return
        if clear:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
        self.recorded = False


class NetworkLock:
    """The lock a run holds: the whole network (host=None), or one host within a shared network."""

    def __init__(self, locks_dir: Path, network: str, host: str | None = None) -> None:
        self.locks_dir = locks_dir
        self.network = network
        self.host = host
        self.path = locks_dir / f"{network}.lock"
        self._net = _Flock(self.path)
        self._host = _Flock(self._host_path(host)) if host else None
        self.previous: dict[str, Any] | None = None

    def _host_path(self, host: str) -> Path:
        return self.locks_dir / f"{self.network}.host.{host}.lock"

    def holder(self) -> dict[str, Any] | None:
        return self._net.holder()

    def free(self) -> bool:
        """Whether a run could take the network's lock shared now (no drill holds it): a probe that takes
        nothing (the lock is taken and given back at once)."""
        probe = _Flock(self.path)
        if not probe.take(shared=True, wait_s=0):
            return False
        probe.release(clear=False)
        return True

    def host_holders(self) -> list[dict[str, Any]]:
        """Holders of host locks on this network (remediations running now)."""
        out = []
        for p in sorted(self.locks_dir.glob(f"{self.network}.host.*.lock")):
            h = _Flock(p).holder()
            if h:
                out.append(h)
        return out

    def acquire(self, run_id: str, runbook: str, wait_s: float = 0.0) -> None:
        try:
            self._acquire(run_id, runbook, wait_s)
        except BaseException:
            self.release()  # whatever was taken before the failure (a no-op for what was not)
            raise

    def _acquire(self, run_id: str, runbook: str, wait_s: float) -> None:
        if self._host is None:
            if not self._net.take(shared=False, wait_s=wait_s):
                h = self._net.holder()
                who = _describe(h) if h else "; ".join(_describe(x) for x in self.host_holders()) or "another run"
                raise NetworkLocked(f"network {self.network} is locked by {who}; wait for it to end, or stop it")
            self._net.record(run_id, runbook)
            self.previous = self._net.previous
            return
        if not self._net.take(shared=True, wait_s=wait_s):
            h = self._net.holder() or {}
            raise NetworkLocked(f"network {self.network} is locked by {_describe(h)}; wait for it to end, or stop it")
        if not self._host.take(shared=False, wait_s=wait_s):
            h = self._host.holder() or {}
            raise NetworkLocked(f"host {self.host} of network {self.network} is locked by {_describe(h)}")
        self._host.record(run_id, runbook)
        self.previous = self._host.previous

    def release(self) -> None:
        if self._host is not None:
            self._host.release(clear=self._host.recorded)
            self._net.release(clear=False)
        else:
            self._net.release(clear=self._net.recorded)
