"""Commands on this machine, with the same results and errors as over SSH."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path

from iotex_ops.hosts.base import Host, HostError


class LocalHost(Host):
    def __init__(self, name: str = "localhost", *, cwd: str | Path | None = None, env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.cwd = Path(cwd) if cwd is not None else None
        self._env = dict(env) if env is not None else None

    def __repr__(self) -> str:
        # env may hold secrets: show only which variables are set
        env = sorted(self._env) if self._env is not None else None
        return f"LocalHost(name={self.name!r}, cwd={self.cwd!r}, env_keys={env!r})"

    def _execute(self, command: str, timeout: float) -> tuple[int | None, str, str, bool]:
        try:
            # own session: on timeout the whole process group goes, not just the shell
            proc = subprocess.Popen(  # noqa: S602 - running a shell command line is this method's purpose
                command,
                shell=True,
                cwd=self.cwd,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise HostError(self.name, f"cannot start command: {exc}") from exc
        try:
            out, err = proc.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            timed_out = True
        code = None if timed_out else proc.returncode
        return code, out.decode(errors="replace"), err.decode(errors="replace"), timed_out

    def put(self, local: str | Path, remote: str | Path) -> None:
        try:
            shutil.copyfile(local, remote)
        except OSError as exc:
            raise HostError(self.name, f"cannot copy {local} to {remote}: {exc}") from exc

    def get(self, remote: str | Path, local: str | Path) -> None:
        try:
            shutil.copyfile(remote, local)
        except OSError as exc:
            raise HostError(self.name, f"cannot copy {remote} to {local}: {exc}") from exc
