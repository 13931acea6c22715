"""The unit tier's guard (tests/unit_tier.py), from inside a unit test: what it refuses, what it lets be."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading

import pytest

from tests.unit_tier import GUARD, UnitTierViolation


def test_a_unit_test_may_not_start_a_process_a_server_or_use_the_network() -> None:
    with pytest.raises(UnitTierViolation, match=r"started a process \(subprocess.Popen"):
        subprocess.run(["true"], check=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # a bind alone (how a free port is found) starts nothing
        with pytest.raises(UnitTierViolation, match="started a server"):
            s.listen()
    with pytest.raises(UnitTierViolation, match=r"connected to 192\.0\.2\.1:9 \(the network\)"):
        socket.create_connection(("192.0.2.1", 9), timeout=1)
    with pytest.raises(UnitTierViolation, match=r"looked up 'example\.org' \(the network\)"):
        socket.getaddrinfo("example.org", 80)
    socket.getaddrinfo("localhost", 80)  # this machine is not the network

    # swallowed, in a thread: still recorded, so the test would fail
    def swallow() -> None:
        with contextlib.suppress(Exception):  # what code under test might do
            subprocess.run(["true"], check=False)

    t = threading.Thread(target=swallow)
    t.start()
    t.join()
    assert len(GUARD.violations) == 5 and "started a process" in GUARD.violations[-1]
    GUARD.violations.clear()  # these were on purpose


@pytest.mark.slow
def test_a_slow_test_may() -> None:
    assert subprocess.run(["true"], check=False).returncode == 0
    assert GUARD.test is None and GUARD.violations == []
