"""Processes the lab starts to outlive the command that started them, and stops by the pid they recorded."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from iotex_ops.processes import alive

__all__ = ["alive", "kill_pidfile", "spawn"]


def spawn(argv: list[str], pidfile: Path, logfile: Path, env: Mapping[str, str] | None = None) -> int:
    """Start `argv` in the background, detached (a shell starts it and exits: it is nobody's child here)."""
    script = f'"$0" "$@" >>"{logfile}" 2>&1 </dev/null & echo $! >"{pidfile}"'
    subprocess.run(["sh", "-c", script, *argv], check=True, start_new_session=True, timeout=10, env=env)
    return int(pidfile.read_text().strip())


def kill_pidfile(path: Path, names: tuple[str, ...], timeout: float = 15.0, sig: int = signal.SIGTERM) -> int | None:
    """Stop the process whose pid `path` records, if it is still one of ours (its command names match)."""
    try:
        pid = int(path.read_text().strip())
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, ValueError):
        return None
    if not any(n in cmd for n in names):
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and alive(pid):
            time.sleep(0.05)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    return pid
