"""Keeps the `slow` marker honest: a test that is not marked `slow` (the unit tier, `make test-fast`) fails if
it starts a process, starts a server (listens on a socket, TCP or Unix), or reaches beyond this machine.

What such a test starts is attributed to it, also what a module- or session-scoped fixture starts while
being set up for it, and what a thread of its starts: the violation is recorded (so the test fails even
if the code under test swallows the error) and raised where it happened. The teardown of the last test
of a module is not watched: it also tears down what slow tests of the module set up (a lab). Fix a
violation by marking the test `slow` (it stays in `make test`) or by giving it an in-process fake
(`iotex_ops.testing`). Loaded by tests/conftest.py: one audit hook and one wrapper of
`socket.socket.listen`, both idle outside a unit test.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import sys
import threading
from collections.abc import Generator, Iterator
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


def _is_address(host: object) -> bool:
    try:
        ipaddress.ip_address((host.decode() if isinstance(host, bytes) else str(host)).split("%", 1)[0])
    except ValueError:
        return False
    return True


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if GUARD.test is None:
        return
    if event in PROCESS_EVENTS:
        what = args[0] if args else ""
        GUARD.violation(f"started a process ({event}: {str(what)[:120]})")
    elif event == "socket.connect":
        sock, address = args[0], args[1]
        if getattr(sock, "family", None) in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
            sock.close()  # refused: not left to the garbage collector (a ResourceWarning)
            GUARD.violation(f"connected to {address[0]}:{address[1]} (the network)")
    elif event == "socket.getaddrinfo" and not _is_local(args[0]) and not _is_address(args[0]):
        GUARD.violation(f"looked up {args[0]!r} (the network)")  # an address is no lookup: connect decides


_real_listen = socket.socket.listen


def _listen(self: socket.socket, *args: Any) -> None:
    if GUARD.test is not None:
        where = self.getsockname()
        self.close()  # what the refused server opened is not left to the garbage collector (a ResourceWarning)
        GUARD.violation(f"started a server (listens on {where!r})")
    _real_listen(self, *args)


def install() -> None:
    sys.addaudithook(_audit)  # cannot be removed: it does nothing while GUARD.test is None
    socket.socket.listen = _listen  # type: ignore[method-assign,assignment]


def _is_unit(item: pytest.Item) -> bool:
    return item.get_closest_marker("slow") is None


@contextlib.contextmanager
def _guarding(item: pytest.Item, active: bool) -> Iterator[None]:
    GUARD.test = item.nodeid if active and _is_unit(item) else None
    try:
        yield
    finally:
        GUARD.test = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    with _guarding(item, True):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    with _guarding(item, True):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    # The last test of a module also tears down the module's and maybe the session's fixtures, which a slow
    # test may have set up (a lab, stopped or restarted then): only the test's own fixtures are its doing.
    same_module = nextitem is not None and nextitem.module is item.module  # type: ignore[attr-defined]
    with _guarding(item, same_module):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """A violation fails the test even when the code under test swallowed the exception (or a thread raised it)."""
    outcome = yield
    report = outcome.get_result()
    seen, GUARD.violations = GUARD.violations, []  # this phase's
    if seen and report.passed:
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} is not marked slow but: {'; '.join(dict.fromkeys(seen))}\n"
            "mark it @pytest.mark.slow (make test runs it), or use an in-process fake (iotex_ops.testing)"
        )
