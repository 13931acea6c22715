"""Fan-out of one quick command to 16 and 50 SSH hosts: iotex-ops beside Ansible, OpenSSH and fabric.

Needs root (the hosts are network namespaces with one sshd each, see iotex_ops/lab/netns.py).
    .venv/bin/python bench/exec_fanout.py [--hosts 16,50]
Every contender runs `hostname` on every host, from cold (no open connection; for Ansible a fresh
ControlPath directory, so no ControlMaster to reuse), all hosts at once, and must succeed on all.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from iotex_ops.hosts import SSHHost, run_on
from iotex_ops.lab.netns import NetnsHosts

BIN = Path(sys.executable).parent


def timed(args: list[str], env: dict[str, str] | None = None, stdin: str | None = None) -> float:
    started = time.monotonic()
    proc = subprocess.run(args, env=env, input=stdin, capture_output=True, text=True, timeout=600, check=False)
    took = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"{args[0]} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return took


def fabric_threading_group(lab: NetnsHosts, n: int) -> float:
    import paramiko
    from fabric import Connection, ThreadingGroup

    started = time.monotonic()
    conns = []
    for h in lab.hosts[:n]:
        c = Connection(h.address, user="root", connect_kwargs={"key_filename": str(lab.client_key), "look_for_keys": False})
        # fabric installs AutoAddPolicy: replace it, or any host key is accepted
        c.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        c.client.load_host_keys(str(lab.known_hosts))
        conns.append(c)
    group = ThreadingGroup.from_connections(conns)
    group.run("hostname", hide=True)
    took = time.monotonic() - started
    group.close()
    return took


def bench(lab: NetnsHosts, n: int, work: Path) -> dict[str, float]:
    sub = lab.hosts[:n]
    inv_data = lab.ansible_inventory()
    hosts = inv_data["all"]["children"]["lab"]["hosts"]
    for name in list(hosts):
        if name not in {h.name for h in sub}:
            del hosts[name]
    inv = work / f"hosts{n}.yml"
    inv.write_text(yaml.safe_dump(inv_data))
    t: dict[str, float] = {}

    cli = [str(BIN / "python"), "-c", "from iotex_ops.cli.hosts import exec_cmd; exec_cmd()"]
    t["iotex-ops exec (CLI process)"] = timed([*cli, "-i", str(inv), "--concurrency", str(n), "--json", "hostname"])

    ssh_hosts = [SSHHost(h.name, h.address, known_hosts=lab.known_hosts, key_file=lab.client_key) for h in sub]
    started = time.monotonic()
    res = run_on(ssh_hosts, "hostname", concurrency=n)
    t["library run_on, cold"] = time.monotonic() - started
    assert res.ok and len(res.succeeded) == n, res.failed
    warm = []
    for _ in range(5):
        started = time.monotonic()
        assert run_on(ssh_hosts, "hostname", concurrency=n).ok
        warm.append(time.monotonic() - started)
    t["library run_on, warm (median of 5)"] = sorted(warm)[2]
    for h in ssh_hosts:
        h.close()

    t["fabric ThreadingGroup, cold"] = fabric_threading_group(lab, n)

    for module in ("shell", "raw"):
        cp = Path(tempfile.mkdtemp(prefix="acp", dir="/tmp"))  # short: the ControlPath socket name must fit 108 bytes
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(work),
            "LC_ALL": "C.UTF-8",
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(cp),
            "ANSIBLE_HOST_KEY_CHECKING": "True",
            "ANSIBLE_PIPELINING": "True",
            "ANSIBLE_LOCAL_TEMP": str(work / "ansible-tmp"),
        }
        args = [str(BIN / "ansible"), "-i", str(inv), "lab", "-f", str(n), "-m", module, "-a", "hostname"]
        t[f"ansible -m {module}, cold"] = timed(args, env)
        subprocess.run(["ssh", "-O", "exit", "-o", f"ControlPath={cp}/%C", "x"], capture_output=True, check=False, timeout=10)

    xargs = [
        "xargs", "-P", str(n), "-I{}", "ssh", "-i", str(lab.client_key), "-o", f"UserKnownHostsFile={lab.known_hosts}",
        "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "root@{}", "hostname",
    ]  # fmt: skip
    t["OpenSSH, xargs -P"] = timed(xargs, stdin="\n".join(h.address for h in sub) + "\n")
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", default="16,50")
    ap.add_argument("--prefix", default="ioxb")
    ns = ap.parse_args()
    sizes = [int(x) for x in ns.hosts.split(",")]
    with tempfile.TemporaryDirectory(prefix="exec-fanout-") as tmp:
        work = Path(tmp)
        for n in sizes:
            # creation time measured per size, on its own lab
            lab = NetnsHosts.create(n, work / f"lab{n}", prefix=ns.prefix)
            try:
                print(f"\n== {n} hosts (netns lab created in {lab.creation_s:.2f} s) ==")
                t = bench(lab, n, work)
            finally:
                lab.destroy()
            base = t["library run_on, cold"]
            for name, s in t.items():
                print(f"  {name:<38} {s:8.3f} s   {s / base:7.1f}x library cold")
            shell, raw = t["ansible -m shell, cold"], t["ansible -m raw, cold"]
            print(f"  ansible -m shell / iotex-ops CLI: {shell / t['iotex-ops exec (CLI process)']:.1f}x;"
                  f" ansible -m raw / iotex-ops CLI: {raw / t['iotex-ops exec (CLI process)']:.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
