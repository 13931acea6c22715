"""SSH hosts in Linux network namespaces: real sshd servers for tests and benchmarks (root only).

Each host is a network namespace with one end of a veth pair, the other end on a private bridge in the
root namespace that carries the controller's address. The subnet is a 10.x /16 with no route on this
machine, nothing forwards it (the bridge has no uplink), so traffic stays between the controller and the
namespaces made here.

Each namespace runs its own sshd inside `unshare --mount --uts`: a private tmpfs on /run (sshd's
privilege-separation directory and nothing shared with the machine's own sshd), its own hostname, and an
empty home bind-mounted over /root, because root's shell start-up files would otherwise run on every
command. Host keys are ed25519, login is by one client key only, and `known_hosts` lists every host, so
clients can (and must) verify host keys.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from iotex_ops.errors import LabError

DEFAULT_SUBNET = "10.247.0.0/16"  # a /16 of 10.x that cloud and container networks rarely use
SSHD = "/usr/sbin/sshd"
CLIENT_ADDRESSES = 8  # the bridge's extra client addresses (NetnsHosts.client_addresses)
_CMD_TIMEOUT = 20.0  # no single `ip`/`sshd` start takes more than this unless the machine is wedged


@dataclass(frozen=True)
class NetnsHost:
    """One namespace host: what SSHHost and an Ansible inventory need to reach it."""

    name: str
    address: str
    port: int
    user: str
    netns: str
    dir: Path

    @property
    def pidfile(self) -> Path:
        return self.dir / "sshd.pid"

    @property
    def host_key(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"


def _run(args: Sequence[str], *, input: str | None = None, check: bool = True, timeout: float = _CMD_TIMEOUT) -> str:
    try:
        proc = subprocess.run(args, input=input, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{' '.join(args)}: no answer in {timeout:.0f} s") from exc
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(args)}: exit {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return proc.stdout


def _ed25519_pair(comment: str) -> tuple[bytes, bytes]:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public + b" " + comment.encode() + b"\n"


def _write_private(path: Path, data: bytes) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child of ours still answers kill(0); it is gone for our purposes
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


def _kill_and_wait(pids: Sequence[int], timeout: float = 5.0) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.02)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _under_root_needed() -> list[str]:
    """Top-level directories under /root holding this Python (and so the venv's interpreter)."""
    out = []
    for p in {os.path.realpath(sys.executable), os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)}:
        parts = Path(p).parts
        if len(parts) > 2 and parts[:2] == ("/", "root"):
            out.append(parts[2])
    return sorted(set(out))


def _sshd_config(host: NetnsHost, authorized_keys: Path) -> str:
    return f"""\
# sshd of lab host {host.name} (network namespace {host.netns})
ListenAddress {host.address}
Port {host.port}
HostKey {host.host_key}
PidFile {host.pidfile}
AuthorizedKeysFile {authorized_keys}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
# keys live under a temp dir whose modes sshd's StrictModes would refuse
StrictModes no
# PAM would start a session per login: slow, and it reads the machine's own limits and env
UsePAM no
UseDNS no
PrintMotd no
PrintLastLog no
# fan-out benchmarks open many connections at once
MaxStartups 500:30:1000
MaxSessions 200
LogLevel ERROR
AcceptEnv LANG LC_*
Subsystem sftp internal-sftp
"""


class NetnsHosts:
    """n SSH hosts on a private bridge; `destroy()` removes everything `create()` made."""

    def __init__(self, workdir: Path, prefix: str, subnet: str, hosts: list[NetnsHost]) -> None:
        self.workdir = workdir
        self.prefix = prefix
        self.subnet = ipaddress.ip_network(subnet)
        self.hosts = hosts
        self.bridge = f"{prefix}br"
        self.client_key = workdir / "client_ed25519"
        self.known_hosts = workdir / "known_hosts"
        self.authorized_keys = workdir / "authorized_keys"
        self.creation_s = 0.0

    def __repr__(self) -> str:
        return f"NetnsHosts(prefix={self.prefix!r}, subnet={self.subnet}, hosts={len(self.hosts)})"

    def __enter__(self) -> NetnsHosts:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.destroy()

    def __iter__(self) -> Iterator[NetnsHost]:
        return iter(self.hosts)

    def __len__(self) -> int:
        return len(self.hosts)

    @classmethod
    def create(
        cls,
        n: int,
        workdir: Path,
        *,
        prefix: str = "ioxlab",
        subnet: str = DEFAULT_SUBNET,
        timeout: float = 60.0,
    ) -> NetnsHosts:
        """Make n namespaces with an sshd each; on any failure, remove what was made and raise LabError."""
        if os.geteuid() != 0:
            raise LabError("network-namespace hosts need root (ip netns, veth, bridge, unshare)")
        net = ipaddress.ip_network(subnet)
        if not 1 <= n <= net.num_addresses - 3 - CLIENT_ADDRESSES:
            raise LabError(f"{n} hosts do not fit in {subnet}")
        # interface names are at most 15 bytes: prefix + "br" and prefix + index + "h"
        if not prefix.isalnum() or len(prefix) + len(str(n)) + 1 > 15:
            raise LabError(f"prefix {prefix!r} must be alphanumeric and short enough for interface names")
        started = time.monotonic()
        workdir = workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        hosts = [
            NetnsHost(
                name=f"{prefix}{i}",
                address=str(net[i + 2]),
                port=22,
                user="root",
                netns=f"{prefix}{i}",
                dir=workdir / f"{prefix}{i}",
            )
            for i in range(n)
        ]
        self = cls(workdir, prefix, subnet, hosts)
        self._refuse_clash()
        try:
            self._make_network()
            self._make_keys()
            self._start_all(deadline=started + timeout)
        except BaseException:
            self.destroy()
            raise
        self.creation_s = time.monotonic() - started
        return self

    # -- network -------------------------------------------------------------------------------------

    def _refuse_clash(self) -> None:
        existing = json.loads(_run(["ip", "-j", "link", "show"]) or "[]")
        if any(link.get("ifname") == self.bridge for link in existing):
            raise LabError(f"bridge {self.bridge} exists already: another lab uses prefix {self.prefix!r} (or a stale one)")
        for route in json.loads(_run(["ip", "-j", "route", "show"]) or "[]"):
            dst = route.get("dst", "")
            if dst == "default":
                continue
            with contextlib.suppress(ValueError):
                if ipaddress.ip_network(dst, strict=False).overlaps(self.subnet):
                    raise LabError(f"subnet {self.subnet} clashes with route {dst} via {route.get('dev')}")

    @property
    def gateway(self) -> str:
        """The controller's own address on the bridge."""
        return str(self.subnet[1])

    @property
    def client_addresses(self) -> tuple[str, ...]:
        """Extra controller addresses on the bridge (the top of the subnet): clients other than the controller's
        own address, as the flood drill's attackers are to a proxy or node limiting per client address."""
        top = self.subnet.num_addresses - 2
        return tuple(str(self.subnet[top - i]) for i in range(CLIENT_ADDRESSES))

    def _make_network(self) -> None:
        gw = f"{self.gateway}/{self.subnet.prefixlen}"
        lines = [f"link add {self.bridge} type bridge", f"addr add {gw} dev {self.bridge}", f"link set {self.bridge} up"]
        lines += [f"addr add {a}/32 dev {self.bridge}" for a in self.client_addresses]
        for i, h in enumerate(self.hosts):
            veth = f"{self.prefix}{i}h"
            lines += [
                f"netns add {h.netns}",
                f"link add {veth} type veth peer name {veth}n",
                f"link set {veth} master {self.bridge} up",
                f"link set {veth}n netns {h.netns}",
            ]
        _run(["ip", "-batch", "-"], input="\n".join(lines) + "\n", timeout=_CMD_TIMEOUT + len(self.hosts))
        procs = []
        for i, h in enumerate(self.hosts):
            batch = (
                f"link set lo up\nlink set {self.prefix}{i}hn name eth0\n"
                f"addr add {h.address}/{self.subnet.prefixlen} dev eth0\nlink set eth0 up\n"
            )
            p = subprocess.Popen(["ip", "-n", h.netns, "-batch", "-"], stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            procs.append((h, p, batch))
        for h, p, batch in procs:
            try:
                _, err = p.communicate(batch, timeout=_CMD_TIMEOUT)
            except subprocess.TimeoutExpired as exc:
                p.kill()
                raise LabError(f"configuring namespace {h.netns} took over {_CMD_TIMEOUT:.0f} s") from exc
            if p.returncode != 0:
                raise LabError(f"configuring namespace {h.netns}: {err.strip()}")

    def _make_keys(self) -> None:
        private, public = _ed25519_pair("iotex-ops-lab-client")
        _write_private(self.client_key, private)
        self.client_key.with_suffix(".pub").write_bytes(public)
        self.authorized_keys.write_bytes(public)
        known = []
        for h in self.hosts:
            h.dir.mkdir(parents=True, exist_ok=True)
            (h.dir / "home").mkdir(exist_ok=True)
            known.append(self._write_host_key(h))
        self.known_hosts.write_text("".join(known))

    def _write_host_key(self, h: NetnsHost) -> str:
        private, public = _ed25519_pair(h.name)
        _write_private(h.host_key, private)
        h.host_key.with_suffix(".pub").write_bytes(public)
        (h.dir / "sshd_config").write_text(_sshd_config(h, self.authorized_keys))
        key_type, key_b64 = public.decode().split()[:2]
        hostpat = h.address if h.port == 22 else f"[{h.address}]:{h.port}"
        return f"{hostpat} {key_type} {key_b64}\n"

    # -- sshd ----------------------------------------------------------------------------------------

    def _launch(self, h: NetnsHost) -> subprocess.Popen[bytes]:
        h.pidfile.unlink(missing_ok=True)
        # The empty home hides root's start-up files, but it must not hide what lives under /root that
        # commands need: the Python the lab (and Ansible) run with may be a pyenv under /root.
        keep = ""
        for top in _under_root_needed():
            keep += f"mkdir -p '{h.dir}/home/{top}'; mount --bind '/root/{top}' '{h.dir}/home/{top}'; "
        script = (
            "set -e; mount -t tmpfs -o mode=0755 lab-run /run; mkdir -m 0755 /run/sshd; "
            f"{keep}mount --rbind '{h.dir}/home' /root; hostname '{h.name}'; "
            f"exec {SSHD} -f '{h.dir}/sshd_config' -E '{h.dir}/sshd.log'"
        )
        # sshd forks into the background once it listens; the namespaces live as long as it does
        return subprocess.Popen(
            ["ip", "netns", "exec", h.netns, "unshare", "--mount", "--uts", "--propagation", "private", "sh", "-c", script],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def _wait_started(self, launched: list[tuple[NetnsHost, subprocess.Popen[bytes]]], deadline: float) -> None:
        for h, p in launched:
            try:
                _, err = p.communicate(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired as exc:
                p.kill()
                raise LabError(f"sshd of {h.name} did not start in time") from exc
            if p.returncode != 0:
                raise LabError(f"sshd of {h.name} failed: exit {p.returncode}: {err.decode(errors='replace').strip()}")
        for h, _ in launched:
            # the daemon writes its pidfile right after forking; it listens already by then
            while not (h.pidfile.exists() and h.pidfile.read_text().strip()):
                if time.monotonic() > deadline:
                    raise LabError(f"sshd of {h.name} wrote no pidfile {h.pidfile}")
                time.sleep(0.005)

    def _start_all(self, deadline: float) -> None:
        self._wait_started([(h, self._launch(h)) for h in self.hosts], deadline)

    def start_sshd(self, index: int, timeout: float = 10.0) -> None:
        h = self.hosts[index]
        self._wait_started([(h, self._launch(h))], time.monotonic() + timeout)

    def stop_sshd(self, index: int) -> None:
        """Stop one host's sshd (its listener and every open session): the host becomes unreachable."""
        h = self.hosts[index]
        pids = self._netns_pids(h.netns)
        pid = self._pid(h)
        _kill_and_wait(([pid] if pid else []) + pids)
        h.pidfile.unlink(missing_ok=True)

    def regenerate_host_key(self, index: int) -> None:
        """Give one host a new host key and restart its sshd; known_hosts keeps the old key (a changed key)
        until `rewrite_known_hosts()`."""
        self.stop_sshd(index)
        self._write_host_key(self.hosts[index])
        self.start_sshd(index)

    def rewrite_known_hosts(self) -> None:
        """Write known_hosts from the hosts' current keys (after `regenerate_host_key`, to trust the new one)."""
        lines = []
        for h in self.hosts:
            key_type, key_b64 = h.host_key.with_suffix(".pub").read_text().split()[:2]
            lines.append(f"{h.address if h.port == 22 else f'[{h.address}]:{h.port}'} {key_type} {key_b64}\n")
        self.known_hosts.write_text("".join(lines))

    @staticmethod
    def _pid(h: NetnsHost) -> int | None:
        try:
            return int(h.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    @staticmethod
    def _netns_pids(netns: str) -> list[int]:
        out = _run(["ip", "netns", "pids", netns], check=False)
        return [int(x) for x in out.split() if x.isdigit()]

    # -- teardown ------------------------------------------------------------------------------------

    def destroy(self) -> None:
        """Kill every sshd (by pidfile, then anything left in the namespaces), delete links and namespaces.

        Idempotent, and safe after a partial `create()`."""
        pids: list[int] = []
        for h in self.hosts:
            pid = self._pid(h)
            if pid:
                pids.append(pid)
        _kill_and_wait(pids)
        # sessions that outlive the listener (a client still connected) keep a namespace busy
        existing = set(_run(["ip", "netns", "list"], check=False).split())
        leftovers = [p for h in self.hosts if h.netns in existing for p in self._netns_pids(h.netns)]
        _kill_and_wait(leftovers)
        lines = [f"link del {self.prefix}{i}h" for i in range(len(self.hosts))]
        lines += [f"netns del {h.netns}" for h in self.hosts if h.netns in existing]
        lines.append(f"link del {self.bridge}")
        # -force: keep going past links that are already gone
        _run(["ip", "-force", "-batch", "-"], input="\n".join(lines) + "\n", check=False)
        for h in self.hosts:
            h.pidfile.unlink(missing_ok=True)

    # -- for Ansible and the toolkit -----------------------------------------------------------------

    def ansible_inventory(self, python: str = "/usr/bin/python3") -> dict[str, Any]:
        common = f"-o UserKnownHostsFile={self.known_hosts} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes"
        return {
            "all": {
                "children": {
                    "lab": {
                        "hosts": {
                            h.name: {"ansible_host": h.address, "ansible_port": h.port, "ansible_user": h.user}
                            for h in self.hosts
                        },
                        "vars": {
                            "ansible_ssh_private_key_file": str(self.client_key),
                            "ansible_ssh_common_args": common,
                            "ansible_python_interpreter": python,
                        },
                    }
                }
            }
        }

    def write_inventory(self, path: Path) -> Path:
        path.write_text(yaml.safe_dump(self.ansible_inventory(), sort_keys=False))
        return path
