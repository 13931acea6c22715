"""Real SSH hosts in network namespaces: host keys verified, failures reported per host, no secret leaks."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from iotex_ops.cli.hosts import exec_cmd
from iotex_ops.hosts import (
    AuthenticationFailed,
    CommandFailed,
    CommandResult,
    CommandTimeout,
    HostKeyRejected,
    HostUnreachable,
    LocalHost,
    SSHHost,
    SSHPool,
    run_on,
)
from iotex_ops.lab.netns import NetnsHost, NetnsHosts

pytestmark = [
    pytest.mark.slow,
    pytest.mark.network,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces, veth pairs and per-namespace sshd need root"),
    pytest.mark.timeout(120),
]
SUBNET = "10.248.0.0/16"  # not the benchmark's default, so both can run at once


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsHosts]:
    hosts = NetnsHosts.create(4, tmp_path_factory.mktemp("netns"), prefix=f"iot{os.getpid() % 10000}", subnet=SUBNET)
    try:
        yield hosts
    finally:
        hosts.destroy()


def ssh(lab: NetnsHosts, h: NetnsHost, known_hosts: Path | None = None, **kw: object) -> SSHHost:
    return SSHHost(h.name, h.address, known_hosts=known_hosts or lab.known_hosts, key_file=lab.client_key, **kw)  # type: ignore[arg-type]


def test_local_and_ssh_give_the_same_result_type(lab: NetnsHosts) -> None:
    h = lab.hosts[0]
    with ssh(lab, h) as remote:
        r_ssh = remote.run("hostname; echo err >&2; echo $HOME")
        r_local = LocalHost("here").run("hostname; echo err >&2")
    assert type(r_ssh) is type(r_local) is CommandResult
    assert (r_ssh.host, r_ssh.exit_code, r_ssh.stdout, r_ssh.stderr) == (h.name, 0, f"{h.name}\n/root\n", "err\n")
    with ssh(lab, h) as remote, pytest.raises(CommandFailed) as exc:
        remote.run("echo about to fail; exit 5")
    assert exc.value.result is not None and exc.value.result.exit_code == 5 and "about to fail" in str(exc.value)


def test_a_second_command_reuses_the_connection(lab: NetnsHosts) -> None:
    with SSHPool(lab.known_hosts, key_file=lab.client_key) as pool:
        h = lab.hosts[1]
        host = pool.get(h.name, h.address)
        assert pool.get(h.name, h.address) is host
        host.run("true")
        transport = host._client.get_transport() if host._client else None
        started = time.monotonic()
        host.run("true")
        assert host._client is not None and host._client.get_transport() is transport
        assert time.monotonic() - started < 0.5


def test_fan_out_reports_the_failing_host_with_output_and_keeps_the_others(lab: NetnsHosts) -> None:
    bad = lab.hosts[2].name
    hosts = [ssh(lab, h) for h in lab]
    res = run_on(hosts, f'hostname; if [ "$(hostname)" = {bad} ]; then echo disk full >&2; exit 9; fi', timeout=10)
    assert list(res.failed) == [bad]
    err = res.failed[bad]
    assert isinstance(err, CommandFailed) and err.result is not None and err.result.stderr == "disk full\n"
    assert {n: r.stdout for n, r in res.succeeded.items()} == {h.name: f"{h.name}\n" for h in lab if h.name != bad}
    for h in hosts:
        h.close()


def test_unreachable_hosts_are_reported_per_host(lab: NetnsHosts) -> None:
    down = lab.hosts[3]
    nowhere = SSHHost("nowhere", str(lab.subnet[200]), known_hosts=lab.known_hosts, key_file=lab.client_key, connect_timeout=1)
    lab.stop_sshd(3)
    try:
        hosts = [*(ssh(lab, h, connect_timeout=1) for h in lab), nowhere]
        started = time.monotonic()
        res = run_on(hosts, "echo up", timeout=3)
        assert time.monotonic() - started < 5
        assert sorted(res.failed) == sorted([down.name, "nowhere"])
        assert all(isinstance(e, HostUnreachable) for e in res.failed.values())
        assert down.address in str(res.failed[down.name]) and "cannot connect" in str(res.failed["nowhere"])
        assert len(res.succeeded) == 3 and all(r.stdout == "up\n" for r in res.succeeded.values())
    finally:
        lab.start_sshd(3)
    assert ssh(lab, down).run("echo back").stdout == "back\n"


def test_unknown_host_key_is_refused_with_its_fingerprint(lab: NetnsHosts, tmp_path: Path) -> None:
    h = lab.hosts[0]
    partial = tmp_path / "known_hosts"
    partial.write_text(
        "".join(line for line in lab.known_hosts.read_text().splitlines(True) if not line.startswith(h.address + " "))
    )
    keygen = subprocess.run(
        ["ssh-keygen", "-lf", str(h.host_key.with_suffix(".pub"))], capture_output=True, text=True, check=True
    )
    expected_fp = keygen.stdout.split()[1]
    with pytest.raises(HostKeyRejected) as exc:
        ssh(lab, h, partial).run("true")
    assert exc.value.host == h.name and expected_fp in exc.value.fingerprint and "not in known_hosts" in str(exc.value)
    with pytest.raises(HostKeyRejected, match="does not exist"):
        ssh(lab, h, tmp_path / "absent").run("true")


def test_changed_host_key_is_refused_until_known_hosts_trusts_it(lab: NetnsHosts, tmp_path: Path) -> None:
    old = tmp_path / "known_hosts.old"
    shutil.copy(lab.known_hosts, old)
    lab.regenerate_host_key(1)
    lab.rewrite_known_hosts()
    h = lab.hosts[1]
    res = run_on([ssh(lab, x, old) for x in lab], "true")
    assert list(res.failed) == [h.name]
    err = res.failed[h.name]
    assert isinstance(err, HostKeyRejected) and "CHANGED" in str(err) and err.expected and err.expected != err.fingerprint
    assert h.name in str(err)
    assert ssh(lab, h).run("hostname").stdout == f"{h.name}\n"


def test_timeout_and_put_over_ssh(lab: NetnsHosts, tmp_path: Path) -> None:
    with ssh(lab, lab.hosts[0]) as host:
        with pytest.raises(CommandTimeout) as exc:
            host.run("echo started; sleep 20", timeout=0.5)
        assert exc.value.result is not None and exc.value.result.stdout == "started\n"
        (tmp_path / "f").write_text("payload")
        host.put(tmp_path / "f", "/root/f")
        assert host.run("cat /root/f").stdout == "payload"


def test_no_secret_in_any_repr_str_or_log(lab: NetnsHosts, caplog: pytest.LogCaptureFixture) -> None:
    key_text = lab.client_key.read_text()
    secret_lines = [line for line in key_text.splitlines() if line and not line.startswith("-----")]
    caplog.set_level(logging.DEBUG)
    outputs: list[str] = [repr(lab), repr(lab.hosts)]
    pw = SSHHost("pw", lab.hosts[0].address, known_hosts=lab.known_hosts, user="nobody", password="hunter2-very-secret")
    with pytest.raises(AuthenticationFailed) as auth:
        pw.run("true")
    hosts = [ssh(lab, h) for h in lab]
    res = run_on([*hosts, pw], "echo hi; exit 1")
    outputs += [repr(pw), str(auth.value), repr(auth.value), repr(res), *map(repr, hosts)]
    outputs += [f"{e!s} {e!r}" for e in res.failed.values()]
    outputs.append(caplog.text)
    blob = "\n".join(outputs)
    assert "hunter2-very-secret" not in blob
    assert not [s for s in secret_lines if s in blob]
    assert "paramiko" in caplog.text  # the logs were captured, so the search above meant something
    for h in hosts:
        h.close()


def test_cli_exec_json_and_table_with_a_failing_host(lab: NetnsHosts, tmp_path: Path) -> None:
    inv = lab.write_inventory(tmp_path / "hosts.yml")
    bad = lab.hosts[0].name
    cmd = f'hostname; [ "$(hostname)" != {bad} ] || exit 4'
    res = CliRunner().invoke(exec_cmd, ["-i", str(inv), "--json", cmd])
    assert res.exit_code == 1, res.output
    rows = {r["host"]: r for r in json.loads(res.output)["hosts"]}
    assert sorted(rows) == sorted(h.name for h in lab)
    assert rows[bad]["exit_code"] == 4 and rows[bad]["error"].startswith("CommandFailed")
    assert all(rows[h.name]["stdout"] == f"{h.name}\n" and rows[h.name]["error"] is None for h in lab.hosts[1:])
    ok = CliRunner().invoke(exec_cmd, ["-i", str(inv), "--limit", f"lab:!{bad}", "hostname"])
    assert ok.exit_code == 0, ok.output
    assert "3 host(s), 3 ok, 0 failed" in ok.output and lab.hosts[1].name in ok.output


def test_destroy_removes_everything_and_is_idempotent(tmp_path: Path) -> None:
    prefix = f"iod{os.getpid() % 10000}"
    small = NetnsHosts.create(2, tmp_path, prefix=prefix, subnet="10.249.0.0/16")
    pids = [int(h.pidfile.read_text()) for h in small]
    kept_open = SSHHost(small.hosts[0].name, small.hosts[0].address, known_hosts=small.known_hosts, key_file=small.client_key)
    kept_open.run("true")  # a live session must not keep the namespace alive
    small.destroy()
    small.destroy()
    kept_open.close()
    assert not [p for p in pids if Path(f"/proc/{p}").exists() and "Z" not in Path(f"/proc/{p}/stat").read_text().split()[2]]
    assert prefix not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert prefix not in subprocess.run(["ip", "link", "show"], capture_output=True, text=True, check=True).stdout
