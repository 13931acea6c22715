"""Host access on this machine: results, errors a person on call can read, and fan-out that loses nothing.

The local host runs a shell (those tests are marked slow); fan-out is checked on fake hosts (iotex_ops.testing)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from iotex_ops.errors import OpsError
from iotex_ops.hosts import CommandFailed, CommandResult, CommandTimeout, HostError, LocalHost, SSHHost, run_on
from iotex_ops.hosts.group import GroupError
from iotex_ops.testing import FakeHost, Reply


@pytest.mark.slow  # runs a shell
def test_local_run_gives_result_with_output_and_timing(tmp_path: Path) -> None:
    r = LocalHost("here", cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "GREETING": "hi"}).run("echo $GREETING; pwd; echo oops >&2")
    assert isinstance(r, CommandResult)
    assert (r.host, r.exit_code, r.ok) == ("here", 0, True)
    assert r.stdout == f"hi\n{tmp_path}\n" and r.stderr == "oops\n"
    assert 0 < r.duration_s < 5
    assert r.tail(1, "stdout") == str(tmp_path) and r.tail(5) == f"hi\n{tmp_path}\noops"


@pytest.mark.slow  # runs a shell
def test_non_zero_exit_raises_with_host_command_code_and_tail() -> None:
    host = LocalHost("box1")
    with pytest.raises(CommandFailed) as exc:
        host.run("for i in $(seq 1 30); do echo line$i; done; echo broken >&2; exit 3")
    err = exc.value
    assert isinstance(err, HostError) and isinstance(err, OpsError)
    assert err.host == "box1" and err.result is not None and err.result.exit_code == 3
    text = str(err)
    assert "box1: command exited 3" in text and "exit code: 3" in text and "seq 1 30" in text
    assert "line30" in text and "line21" in text and "line20" not in text and "broken" in text
    assert host.run("exit 4", check=False).exit_code == 4


@pytest.mark.slow  # runs a shell
def test_timeout_kills_the_command_and_keeps_partial_output() -> None:
    started = time.monotonic()
    with pytest.raises(CommandTimeout) as exc:
        LocalHost().run("echo started; sleep 30 & wait", timeout=0.5)
    assert time.monotonic() - started < 5
    assert exc.value.result is not None and exc.value.result.exit_code is None
    assert "started" in exc.value.result.stdout and "timed out after 0.5 s" in str(exc.value)


def test_put_copies_a_file(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("payload")
    LocalHost().put(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "b").read_text() == "payload"
    with pytest.raises(HostError, match="cannot copy"):
        LocalHost().put(tmp_path / "missing", tmp_path / "c")


def test_fan_out_reports_each_host_and_keeps_the_others_results() -> None:
    def on(i: int) -> FakeHost:
        return FakeHost(f"h{i}", {"work": Reply(7, f"out{i}\n", f"bad{i}\n") if i == 3 else Reply(0, f"out{i}\n")})

    hosts = [on(i) for i in range(6)]
    seen: list[str] = []
    res = run_on(hosts, "work", concurrency=3, on_done=lambda h, _: seen.append(h.name))
    assert list(res) == [f"h{i}" for i in range(6)] and sorted(seen) == list(res)
    assert all(h.commands == ["work"] for h in hosts)
    assert not res.ok and list(res.failed) == ["h3"]
    failure = res.failed["h3"]
    assert isinstance(failure, CommandFailed) and failure.result is not None
    assert failure.result.stdout == "out3\n" and failure.result.stderr == "bad3\n"
    assert {h: r.stdout for h, r in res.succeeded.items()} == {f"h{i}": f"out{i}\n" for i in (0, 1, 2, 4, 5)}
    with pytest.raises(GroupError) as exc:
        res.raise_on_failure()
    assert "1 host(s) failed" in str(exc.value) and "bad3" in str(exc.value)


def test_fan_out_runs_hosts_concurrently() -> None:
    together = threading.Barrier(8, timeout=30)  # breaks unless all eight commands run at the same time

    def meet(command: str) -> Reply:
        together.wait()
        return Reply()

    assert run_on([FakeHost(f"h{i}", meet) for i in range(8)], "meet", concurrency=8).ok


def test_fan_out_keeps_unexpected_exceptions_per_host() -> None:
    class Broken(FakeHost):
        def _execute(self, command: str, timeout: float) -> tuple[int | None, str, str, bool]:
            raise RuntimeError("bug in a transport")

    res = run_on([FakeHost("fine"), Broken("broken")], "true")
    assert list(res.succeeded) == ["fine"] and isinstance(res.failed["broken"], RuntimeError)


def test_reprs_show_no_secrets(tmp_path: Path) -> None:
    local = LocalHost("h", env={"API_TOKEN": "tok-very-secret"})
    ssh = SSHHost("s", "10.0.0.9", known_hosts=tmp_path / "kh", password="pw-very-secret", key_file=tmp_path / "id")
    text = repr(local) + repr(ssh) + str(ssh.target) + repr(ssh.target)
    assert "API_TOKEN" in text and "tok-very-secret" not in text and "pw-very-secret" not in text
