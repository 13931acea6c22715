"""A delegate network as the toolkit reaches it: each delegate's host, node API, admin commands and service.

Built from an inventory (the same vars the playbooks use, with the roles' defaults), so that a runbook says
`d.admin("pause")` or `d.service("restart")` and the same code works on the lab's local hosts, on network
namespaces over SSH and on production hosts. Node commands run *on the host* with the release's own launcher
(`<releases_root>/current/bin/iotex-node`), because the admin channel is a Unix socket there.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iotex_ops import inventory as inv_mod
from iotex_ops.errors import OpsError
from iotex_ops.hosts import CommandResult, Host, LocalHost, SSHPool
from iotex_ops.inventory import HostSpec, Inventory

DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts").expanduser()


class NodeApiError(OpsError):
    """A node's HTTP API did not answer, or answered with an error."""


def ssh_options(spec: HostSpec) -> tuple[str | None, str | None]:
    """The key file and known_hosts an Ansible inventory gives a host (the same files ssh would use)."""
    key = spec.extra.get("ansible_ssh_private_key_file") or spec.extra.get("ansible_private_key_file")
    known = None
    args = shlex.split(" ".join(str(spec.extra.get(k, "")) for k in ("ansible_ssh_common_args", "ansible_ssh_extra_args")))
    for i, a in enumerate(args):
        opt = a[2:] if a.startswith("-o") and len(a) > 2 else (args[i + 1] if a == "-o" and i + 1 < len(args) else "")
        if opt.lower().startswith("userknownhostsfile="):
            known = opt.split("=", 1)[1].split()[0]
    return (str(key) if key else None), known


def host_for(
    spec: HostSpec, hv: Mapping[str, Any], pool: SSHPool, *, identity: Path | None = None, known_hosts: Path | None = None
) -> Host:
    """The Host to run commands on: local for Ansible's local connection (the lab), SSH otherwise."""
    if hv.get("ansible_connection") == "local":
        return LocalHost(spec.name, cwd=hv.get("iotex_host_dir"))
    key, known = ssh_options(spec)
    return pool.get(
        spec.name,
        spec.ansible_host,
        port=spec.ansible_port,
        user=spec.ansible_user,
        key_file=identity or key,
        known_hosts=known_hosts or known,
    )


def http_json(url: str, body: Any = None, timeout: float = 5.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - URLs from the operator's inventory
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("error", {}).get("message", "")
        except (ValueError, AttributeError, OSError):
            detail = ""
        raise NodeApiError(f"{url}: HTTP {exc.code} {detail}".rstrip()) from None
    except (OSError, urllib.error.URLError, ValueError) as exc:
        raise NodeApiError(f"{url}: {getattr(exc, 'reason', exc)}") from None


@dataclass
class Delegate:
    """One delegate host and its node, with the paths the playbooks gave them."""

    name: str
    spec: HostSpec
    host: Host
    api_url: str
    home: str
    releases_root: str
    python: str
    service_manager: str
    service_name: str
    supervisor_dir: str
    supervisorctl: str
    vars: Mapping[str, Any] = field(repr=False, default_factory=dict)

    def __repr__(self) -> str:
        return f"Delegate({self.name!r}, api={self.api_url!r}, host={self.host!r})"

    @property
    def node_bin(self) -> str:
        return f"{self.releases_root}/current/bin/iotex-node"

    # -- the node's HTTP API (read from the controller) --

    def get(self, path: str, timeout: float = 3.0) -> Any:
        return http_json(self.api_url + path, timeout=timeout)

    def post(self, path: str, body: Any, timeout: float = 10.0) -> Any:
        return http_json(self.api_url + path, body, timeout=timeout)

    def chain(self, timeout: float = 3.0) -> dict[str, Any]:
        doc = self.get("/v1/chain", timeout=timeout)
        if not isinstance(doc, dict):
            raise NodeApiError(f"{self.api_url}/v1/chain: not a JSON object")
        return doc

    def try_chain(self, timeout: float = 2.0) -> dict[str, Any] | None:
        try:
            return self.chain(timeout)
        except NodeApiError:
            return None

    # -- commands on the host --

    def run(self, command: str, timeout: float = 30.0, *, check: bool = True) -> CommandResult:
        return self.host.run(command, timeout=timeout, check=check)

    def node_cli(self, args: list[str], timeout: float = 30.0, *, check: bool = True) -> CommandResult:
        """`iotex-node ARGS` on the host with the active release's launcher."""
        env = f"IOTEX_PYTHON={shlex.quote(self.python)} LC_ALL=C.UTF-8"
        cmd = f"{env} {shlex.quote(self.node_bin)} " + " ".join(shlex.quote(a) for a in args)
        return self.run(cmd, timeout=timeout, check=check)

    def admin(self, *args: str, timeout: float = 15.0) -> dict[str, Any]:
        """An admin command over the node's local channel (pause, resume, halt-at N, status...), as JSON."""
        res = self.node_cli(["admin", *args, "--home", self.home, "--json"], timeout=timeout)
        try:
            doc = json.loads(res.stdout)
        except ValueError:
            raise OpsError(f"{self.name}: `iotex-node admin {' '.join(args)}` printed no JSON: {res.tail(3)!r}") from None
        return doc if isinstance(doc, dict) else {"result": doc}

    def service(self, action: str, timeout: float = 60.0) -> CommandResult:
        """start | stop | restart the node with the host's service manager."""
        if action not in ("start", "stop", "restart"):
            raise OpsError(f"unknown service action {action!r}")
        if self.service_manager == "supervisord":
            conf = shlex.quote(f"{self.supervisor_dir}/supervisord.conf")
            cmd = f"{shlex.quote(self.supervisorctl)} -c {conf} {action} {shlex.quote(self.service_name)}"
            res = self.run(cmd, timeout=timeout, check=False)
            # supervisorctl exits 0 on some failures: its output says ERROR
            if not res.ok or "ERROR" in res.stdout:
                if action == "stop" and "not running" in res.stdout:
                    return res
                raise OpsError(f"{self.name}: supervisorctl {action} {self.service_name} failed: {res.tail(3)}")
            return res
        return self.run(f"systemctl {action} {shlex.quote(self.service_name)}", timeout=timeout)


@dataclass
class Network:
    """The delegates of one inventory, plus what the toolkit needs around them (Prometheus, releases)."""

    inventory: Inventory
    delegates: list[Delegate]
    pool: SSHPool = field(repr=False)

    @property
    def id(self) -> str:
        """A stable name for locks: `iotex_network` if the inventory sets it, else a digest of the delegates'
        API addresses, so that two inventory paths for one network share a lock."""
        for v in self.inventory.raw_vars.values():
            if v.get("iotex_network"):
                return str(v["iotex_network"])
        key = ",".join(sorted(f"{d.spec.ansible_host}:{d.spec.node_api_port}" for d in self.delegates))
        return "net-" + hashlib.sha256(key.encode()).hexdigest()[:16]

    def var(self, name: str, default: Any = None) -> Any:
        """A var as the delegates share it (the first delegate's value)."""
        return self.delegates[0].vars.get(name, default) if self.delegates else default

    @property
    def prometheus_url(self) -> str | None:
        url = self.var("iotex_prometheus_url")
        return str(url).rstrip("/") if url else None

    @property
    def release_dir(self) -> Path | None:
        d = self.var("node_release_dir")
        return Path(str(d)).expanduser() if d else None

    def delegate(self, name: str) -> Delegate:
        for d in self.delegates:
            if d.name == name:
                return d
        raise OpsError(f"no delegate {name!r}; delegates: {', '.join(d.name for d in self.delegates)}")

    def select(self, pattern: str | None) -> list[Delegate]:
        names = {h.name for h in self.inventory.limit(pattern)} if pattern else {d.name for d in self.delegates}
        return [d for d in self.delegates if d.name in names]

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _delegate(spec: HostSpec, hv: Mapping[str, Any], pool: SSHPool) -> Delegate:
    # the roles' defaults (playbooks/roles/iotex_common, node_service), for vars the inventory leaves out
    host_dir = str(hv.get("iotex_host_dir", "/var/lib/iotex"))
    python = str(hv.get("iotex_python", hv.get("ansible_python_interpreter", "/usr/bin/python3")))
    api_host = str(hv.get("node_advertise_host", spec.ansible_host))
    supervisorctl = hv.get("supervisorctl_bin") or str(Path(python).parent / "supervisorctl")
    return Delegate(
        name=spec.name,
        spec=spec,
        host=host_for(spec, hv, pool),
        api_url=f"http://{api_host}:{spec.node_api_port or 14014}",
        home=str(hv.get("iotex_node_home", f"{host_dir}/node")),
        releases_root=str(hv.get("iotex_releases_root", "/opt/iotex")),
        python=python,
        service_manager=str(hv.get("service_manager") or "systemd"),
        service_name=str(hv.get("node_service_name", "iotex-node")),
        supervisor_dir=str(hv.get("supervisor_dir", f"{host_dir}/supervisor")),
        supervisorctl=str(supervisorctl),
        vars=hv,
    )


def load(inventory_path: str | Path, known_hosts: Path | None = None) -> Network:
    """The network an inventory describes; its problems are refused here, before any host is touched."""
    inv = inv_mod.load(inventory_path)
    problems = inv_mod.check(inv)
    if problems:
        listed = "; ".join(str(p) for p in problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else "")
        raise inv_mod.InventoryError(f"inventory {inventory_path} has {len(problems)} problem(s): {listed}")
    pool = SSHPool(known_hosts or DEFAULT_KNOWN_HOSTS)
    delegates = [_delegate(spec, inv.raw_vars[spec.name], pool) for spec in inv.delegates]
    return Network(inv, delegates, pool)
