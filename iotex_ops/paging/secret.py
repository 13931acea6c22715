"""The routing key: loaded by reference (a file or an environment variable), shown as *** everywhere.

A routing key lets whoever holds it page the on-call delegate and resolve their incidents, so it is kept
out of logs, exception text, queue rows, reports and `--json` output: only `reveal()` returns it, and only
the HTTP client calls that.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import NoReturn

from iotex_ops.paging.errors import RoutingKeyError

log = logging.getLogger(__name__)

ENV_VAR = "PAGERDUTY_ROUTING_KEY"
MASK = "***"


class RoutingKey:
    """A routing key whose printable forms are `***`; `origin` (a file path or `$VAR`) is safe to print."""

    __slots__ = ("__value", "origin")

    def __init__(self, value: str, origin: str = "given") -> None:
        value = value.strip() if isinstance(value, str) else value
        if not isinstance(value, str) or not value:
            raise RoutingKeyError(f"routing key from {origin} is empty")
        if any(c.isspace() or not c.isprintable() for c in value):
            raise RoutingKeyError(f"routing key from {origin} contains whitespace or control characters")
        self.__value = value
        self.origin = origin

    def reveal(self) -> str:
        """The key itself: for the request body only."""
        return self.__value

    def __repr__(self) -> str:
        return f"RoutingKey({MASK}, origin={self.origin!r})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RoutingKey) and other.__value == self.__value

    def __hash__(self) -> int:
        return hash(self.__value)

    def __reduce__(self) -> NoReturn:
        # pickling would write the key wherever the pickle goes (a queue, a cache, a report)
        raise TypeError("a RoutingKey is not picklable")

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> RoutingKey:
        """Read a key file. Refused when other users can read or write it (like ssh with a private key);
        allowed with a warning when its group can read it (0640 root:service is how a key is often shared
        with a service account)."""
        p = Path(path).expanduser()
        try:
            st = p.stat()
        except FileNotFoundError:
            raise RoutingKeyError(f"routing key file {p} does not exist") from None
        except OSError as exc:
            raise RoutingKeyError(f"routing key file {p}: {exc.strerror}") from None
        if not stat.S_ISREG(st.st_mode):
            raise RoutingKeyError(f"routing key file {p} is not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o007:
            raise RoutingKeyError(f"routing key file {p} is accessible by other users (mode {mode:04o}); run: chmod 600 {p}")
        if mode & 0o070:
            log.warning("routing key file %s is accessible by its group (mode %04o)", p, mode)
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RoutingKeyError(f"routing key file {p} could not be read: {type(exc).__name__}") from None
        return cls(text, origin=str(p))

    @classmethod
    def from_env(cls, name: str = ENV_VAR) -> RoutingKey:
        value = os.environ.get(name)
        if value is None:
            raise RoutingKeyError(f"environment variable {name} is not set")
        return cls(value, origin=f"${name}")

    @classmethod
    def load(cls, file: str | os.PathLike[str] | None = None, env: str | None = ENV_VAR) -> RoutingKey:
        """From `file` when given, else from the environment variable `env`."""
        if file is not None:
            return cls.from_file(file)
        if env is None:
            raise RoutingKeyError("no routing key: give a routing key file")
        if env not in os.environ:
            raise RoutingKeyError(f"no routing key: give a routing key file, or set the environment variable {env}")
        return cls.from_env(env)


def write_key_file(path: Path, value: str) -> None:
    """Create a key file readable by its owner only (created 0600 from the start, never chmod-ed after)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(value + "\n")
