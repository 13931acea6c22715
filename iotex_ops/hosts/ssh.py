"""Commands over SSH (paramiko), with host keys always checked against a known_hosts file.

fabric 3's Connection installs paramiko's AutoAddPolicy and loads no known_hosts, which accepts any host
key. This module drives paramiko's SSHClient itself, with a policy that refuses unknown keys and the
given known_hosts loaded on every connection; a changed key is refused by paramiko before any policy.
It also skips invoke's Runner (three threads and a polling sleep per command): one channel per command,
read with select() until it closes, on a connection that stays open for the next command.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import select
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import paramiko

from iotex_ops.hosts.base import AuthenticationFailed, Host, HostError, HostKeyRejected, HostUnreachable

_READ = 65536


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's form: SHA256:<base64 of the key blob's digest, unpadded>."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class _RefuseUnknown(paramiko.MissingHostKeyPolicy):
    def __init__(self, host: str) -> None:
        self.host = host

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise HostKeyRejected(self.host, f"{key.get_name()} {fingerprint(key)}", f"{hostname} is not in known_hosts")


@functools.lru_cache(maxsize=32)
def _load_key(path: str, mtime_ns: int) -> paramiko.PKey:
    # parsed once per file version: 50 hosts share one key object instead of parsing it 50 times
    return paramiko.PKey.from_path(path)


@dataclass(frozen=True)
class SSHTarget:
    """Where and how to log in; secrets stay out of repr."""

    address: str
    port: int = 22
    user: str = "root"
    key_file: Path | None = None
    password: str | None = field(default=None, repr=False)


class SSHHost(Host):
    """One SSH host; the connection opens on first use and stays open for the next command."""

    def __init__(
        self,
        name: str,
        address: str,
        *,
        known_hosts: str | Path,
        port: int = 22,
        user: str = "root",
        key_file: str | Path | None = None,
        password: str | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        self.name = name
        self.target = SSHTarget(address, port, user, Path(key_file) if key_file else None, password)
        self.known_hosts = Path(known_hosts)
        self.connect_timeout = connect_timeout
        self._client: paramiko.SSHClient | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        t = self.target
        where = f"{t.user}@{t.address}:{t.port}"
        return f"SSHHost(name={self.name!r}, {where}, key_file={t.key_file!r}, known_hosts={self.known_hosts!r})"

    @property
    def connected(self) -> bool:
        c = self._client
        transport = c.get_transport() if c else None
        return bool(transport and transport.is_active())

    def _connect(self) -> paramiko.SSHClient:
        with self._lock:
            if self._client is not None and self.connected:
                return self._client
            self._drop()
            t = self.target
            client = paramiko.SSHClient()
            if not self.known_hosts.is_file():
                raise HostKeyRejected(self.name, "?", f"known_hosts file {self.known_hosts} does not exist")
            # loaded on every connection, so a key removed or replaced in the file takes effect at once
            client.load_host_keys(str(self.known_hosts))
            client.set_missing_host_key_policy(_RefuseUnknown(self.name))
            pkey = None
            if t.key_file is not None:
                try:
                    pkey = _load_key(str(t.key_file), t.key_file.stat().st_mtime_ns)
                except (OSError, paramiko.SSHException) as exc:
                    raise AuthenticationFailed(self.name, f"cannot load key file {t.key_file}: {type(exc).__name__}") from None
            try:
                client.connect(
                    t.address,
                    t.port,
                    username=t.user,
                    pkey=pkey,
                    password=t.password,
                    timeout=self.connect_timeout,
                    banner_timeout=self.connect_timeout,
                    auth_timeout=self.connect_timeout,
                    channel_timeout=self.connect_timeout,
                    allow_agent=False,
                    look_for_keys=False,
                )
            except HostKeyRejected:
                client.close()
                raise
            except paramiko.BadHostKeyException as exc:
                client.close()
                raise HostKeyRejected(
                    self.name,
                    f"{exc.key.get_name()} {fingerprint(exc.key)}",
                    f"the key of {t.address} CHANGED since known_hosts was written",
                    expected=f"{exc.expected_key.get_name()} {fingerprint(exc.expected_key)}",
                ) from None
            except paramiko.AuthenticationException as exc:
                client.close()
                raise AuthenticationFailed(self.name, f"{t.user}@{t.address}:{t.port} refused login: {exc}") from None
            except (OSError, EOFError, paramiko.SSHException) as exc:
                client.close()
                raise HostUnreachable(self.name, f"cannot connect to {t.address}:{t.port}: {exc or type(exc).__name__}") from None
            self._client = client
            return client

    def connect(self) -> None:
        self._connect()

    def _execute(self, command: str, timeout: float) -> tuple[int | None, str, str, bool]:
        deadline = time.monotonic() + timeout
        client = self._connect()
        transport = client.get_transport()
        if transport is None:
            raise HostUnreachable(self.name, "connection closed")
        try:
            chan = transport.open_session(timeout=max(0.1, deadline - time.monotonic()))
        except (OSError, EOFError, paramiko.SSHException) as exc:
            self.close()
            raise HostUnreachable(self.name, f"cannot open a session: {exc or type(exc).__name__}") from None
        out: list[bytes] = []
        err: list[bytes] = []
        try:
            chan.exec_command(command)
            chan.shutdown_write()
            fd = chan.fileno()
            while True:
                while chan.recv_ready():
                    out.append(chan.recv(_READ))
                while chan.recv_stderr_ready():
                    err.append(chan.recv_stderr(_READ))
                if chan.exit_status_ready() and chan.eof_received and not chan.recv_ready() and not chan.recv_stderr_ready():
                    break
                if chan.closed:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None, _text(out), _text(err), True
                select.select([fd], [], [], min(remaining, 1.0))
            if not chan.exit_status_ready():
                raise HostUnreachable(self.name, "connection dropped before the command exited")
            return chan.recv_exit_status(), _text(out), _text(err), False
        except (OSError, EOFError, paramiko.SSHException) as exc:
            self.close()
            raise HostUnreachable(self.name, f"connection lost: {exc or type(exc).__name__}") from None
        finally:
            chan.close()

    def put(self, local: str | Path, remote: str | Path) -> None:
        client = self._connect()
        try:
            with client.open_sftp() as sftp:
                sftp.put(str(local), str(remote))
        except (OSError, paramiko.SSHException) as exc:
            raise HostError(self.name, f"cannot copy {local} to {remote}: {exc}") from None

    def get(self, remote: str | Path, local: str | Path) -> None:
        client = self._connect()
        try:
            with client.open_sftp() as sftp:
                sftp.get(str(remote), str(local))
        except (OSError, paramiko.SSHException) as exc:
            raise HostError(self.name, f"cannot copy {remote} to {local}: {exc}") from None

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def close(self) -> None:
        with self._lock:
            self._drop()


def _text(chunks: list[bytes]) -> str:
    return b"".join(chunks).decode(errors="replace")


class SSHPool:
    """SSH hosts keyed by (user, address, port): a second command to a host reuses its open connection."""

    def __init__(self, known_hosts: str | Path, *, key_file: str | Path | None = None, connect_timeout: float = 5.0) -> None:
        self.known_hosts = Path(known_hosts)
        self.key_file = Path(key_file) if key_file else None
        self.connect_timeout = connect_timeout
        self._hosts: dict[tuple[str, str, int], SSHHost] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SSHPool(hosts={len(self._hosts)}, known_hosts={self.known_hosts!r})"

    def get(
        self,
        name: str,
        address: str,
        *,
        port: int = 22,
        user: str = "root",
        key_file: str | Path | None = None,
        known_hosts: str | Path | None = None,
    ) -> SSHHost:
        key = (user, address, port)
        with self._lock:
            host = self._hosts.get(key)
            if host is None:
                host = SSHHost(
                    name,
                    address,
                    port=port,
                    user=user,
                    key_file=key_file or self.key_file,
                    known_hosts=known_hosts or self.known_hosts,
                    connect_timeout=self.connect_timeout,
                )
                self._hosts[key] = host
            return host

    def hosts(self) -> Iterable[SSHHost]:
        return list(self._hosts.values())

    def close(self) -> None:
        with self._lock:
            hosts, self._hosts = list(self._hosts.values()), {}
        for h in hosts:
            h.close()

    def __enter__(self) -> SSHPool:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
