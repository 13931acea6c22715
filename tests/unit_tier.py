"""Keeps the `slow` marker honest: a test that is not marked `slow` (the unit tier, `make test-fast`) fails if
it starts a process, starts a server (listens on a socket, TCP or Unix), or reaches beyond this machine.

Everything such a test starts is attributed to it, also what a module- or session-scoped fixture starts
while being set up for it, and what a thread of its starts (the violation is recorded, then raised where
it happened). Mark such a test `slow` (it stays in `make test`), or give it an in-process fake
(`iotex_ops.testing`). Loaded by tests/conftest.py; `python -X importtime`-cheap: one audit hook and
one wrapper around `socket.socket.listen`, both idle outside a unit test.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
from collections.abc import Generator
from typing import Any

import pytest

# audit events that start a process (https://docs.python.org/3/library/audit_events.html)
PROCESS_EVENTS = frozenset(
    {"subprocess.Popen", "os.system", "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec", "pty.spawn"}
)
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", ""})


class UnitTierViolation(RuntimeError):
    """A unit test (not marked slow) started a process or a server, or used the network."""


class _Guard:
    def __init__(self) -> None:
        self.test: str | None = None  # the unit test running now, if any
        self.violations: list[str] = []
        self._lock = threading.Lock()

    def violation(self, what: str) -> None:
        test = self.test
        if test is None:
            return
        with self._lock:
            self.violations.append(what)
        raise UnitTierViolation(
            f"{test} is not marked slow but {what}: mark it @pytest.mark.slow (make test runs it), "
            "or use an in-process fake (iotex_ops.testing)"
        )


GUARD = _Guard()


def _is_local(host: object) -> bool:
    if host is None:
        return True
    name = host.decode() if isinstance(host, bytes) else str(host)
    if name.lower() in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(name.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if GUARD.test is None:
        return
    if event in PROCESS_EVENTS:
        what = args[0] if args else ""
        GUARD.violation(f"started a process ({event}: {str(what)[:120]})")
    elif event == "socket.connect":
        sock, address = args[0], args[1]
        if getattr(sock, "family", None) in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
            GUARD.violation(f"connected to {address[0]}:{address[1]} (the network)")
    elif event == "socket.getaddrinfo" and not _is_local(args[0]):
        GUARD.violation(f"looked up {args[0]!r} (the network)")


_real_listen = socket.socket.listen


def _listen(self: socket.socket, *args: Any) -> None:
    if GUARD.test is not None:
        where = self.getsockname()
        self.close()  # what the refused server opened is not left to the garbage collector (a ResourceWarning)
        GUARD.violation(f"started a server (listens on {where!r})")
    _real_listen(self, *args)


def install() -> None:
    sys.addaudithook(_audit)  # cannot be removed: it does nothing while GUARD.test is None
    socket.socket.listen = _listen  # type: ignore[method-assign]


def _is_unit(item: pytest.Item) -> bool:
    return item.get_closest_marker("slow") is None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    GUARD.test = item.nodeid if _is_unit(item) else None
    GUARD.violations = []
    try:
        yield
    finally:
        GUARD.test = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """A violation fails the test even when the code under test swallowed the exception (or a thread raised it)."""
    outcome = yield
    report = outcome.get_result()
    seen, GUARD.violations = GUARD.violations, []
    if seen and report.passed:
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} is not marked slow but: {'; '.join(dict.fromkeys(seen))}\n"
            "mark it @pytest.mark.slow (make test runs it), or use an in-process fake (iotex_ops.testing)"
        )
