"""What every host gives: `run` a command, `put` and `get` a file, `close`; one result type, errors that carry data.

The algorithm (timing, building the result, raising on a non-zero exit) lives in `Host.run`; a transport
only implements `_execute`, in the manner of invoke's `Runner` with its `Local` and `Remote`.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from iotex_ops.errors import OpsError

TAIL_LINES = 10


def _tail(text: str, n: int) -> str:
    lines = text.rstrip("\n").splitlines()
    return "\n".join(lines[-n:]) if n > 0 else ""


@dataclass(frozen=True)
class CommandResult:
    """What a command did on one host; the same type from a local and an SSH host.

    `exit_code` is None when the command did not finish (timed out or the connection dropped)."""

    host: str
    command: str
    exit_code: int | None
    stdout: str
    stderr: str
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def tail(self, n: int = TAIL_LINES, stream: str = "both") -> str:
        """The last n lines of stdout, stderr, or of each ("both": stdout's, then stderr's)."""
        if stream == "stdout":
            return _tail(self.stdout, n)
        if stream == "stderr":
            return _tail(self.stderr, n)
        return "\n".join(t for t in (_tail(self.stdout, n), _tail(self.stderr, n)) if t)


class HostError(OpsError):
    """Something went wrong on one host; carries the host and, when a command ran, its result."""

    def __init__(self, host: str, message: str, result: CommandResult | None = None) -> None:
        super().__init__(host, message)
        self.host = host
        self.message = message
        self.result = result

    def __str__(self) -> str:
        text = f"{self.host}: {self.message}"
        r = self.result
        if r is None:
            return text
        parts = [text, f"  command: {r.command}", f"  exit code: {r.exit_code if r.exit_code is not None else 'none'}"]
        for stream in ("stdout", "stderr"):
            tail = r.tail(TAIL_LINES, stream)
            if tail:
                parts.append(f"  {stream} (last {TAIL_LINES} lines):")
                parts.extend("    " + line for line in tail.splitlines())
        return "\n".join(parts)

    def __repr__(self) -> str:
        code = self.result.exit_code if self.result else None
        return f"{type(self).__name__}(host={self.host!r}, message={self.message!r}, exit_code={code!r})"


class CommandFailed(HostError):
    """The command ran and exited non-zero (invoke's UnexpectedExit)."""

    def __init__(self, result: CommandResult) -> None:
        super().__init__(result.host, f"command exited {result.exit_code}", result)


class CommandTimeout(HostError):
    """The command did not finish in time; `result` holds the output read so far."""

    def __init__(self, result: CommandResult, timeout: float) -> None:
        super().__init__(result.host, f"command timed out after {timeout:g} s", result)
        self.timeout = timeout


class HostUnreachable(HostError):
    """No connection: refused, no route, connect timeout, or the connection dropped."""


class AuthenticationFailed(HostError):
    """The host refused our key or password."""


class HostKeyRejected(HostError):
    """The host's key is not in known_hosts (unknown) or differs from the one there (changed)."""

    def __init__(self, host: str, fingerprint: str, reason: str, expected: str | None = None) -> None:
        msg = f"host key {fingerprint} refused: {reason}"
        if expected:
            msg += f" (known_hosts has {expected})"
        super().__init__(host, msg)
        self.fingerprint = fingerprint
        self.reason = reason
        self.expected = expected


class Host(ABC):
    """A machine that runs shell commands."""

    name: str

    def run(self, command: str, timeout: float = 10.0, *, check: bool = True) -> CommandResult:
        """Run `command` through the host's shell; raise CommandFailed on a non-zero exit when `check`.

        Raises CommandTimeout after `timeout` seconds, and HostError subclasses for transport failures."""
        started = time.monotonic()
        exit_code, out, err, timed_out = self._execute(command, timeout)
        result = CommandResult(self.name, command, exit_code, out, err, time.monotonic() - started)
        if timed_out:
            raise CommandTimeout(result, timeout)
        if check and not result.ok:
            raise CommandFailed(result)
        return result

    @abstractmethod
    def _execute(self, command: str, timeout: float) -> tuple[int | None, str, str, bool]:
        """Run the command: (exit code or None, stdout, stderr, timed out)."""

    @abstractmethod
    def put(self, local: str | Path, remote: str | Path) -> None:
        """Copy a local file to `remote` on the host."""

    @abstractmethod
    def get(self, remote: str | Path, local: str | Path) -> None:
        """Copy the file `remote` on the host to `local` on this machine."""

    def close(self) -> None:  # noqa: B027 - hosts without a connection have nothing to close
        """Release connections; the host can still be used (it reconnects)."""

    def __enter__(self) -> Host:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
