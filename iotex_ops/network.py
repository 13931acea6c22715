"""A delegate network as the toolkit reaches it: each delegate's host, node API, admin commands and service.

Built from an inventory (the same vars the playbooks use, with the roles' defaults), so that a runbook says
`d.admin("pause")` or `d.service("restart")` and the same code works on the lab's local hosts, on network
namespaces over SSH and on production hosts. Node commands run *on the host* with the release's own launcher
(`<releases_root>/current/bin/iotex-node`), because the admin channel is a Unix socket there.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iotex_ops import content
from iotex_ops import inventory as inv_mod
from iotex_ops.errors import OpsError
from iotex_ops.hosts import CommandResult, Host, LocalHost, SSHPool
from iotex_ops.inventory import HostSpec, Inventory
from iotex_ops.nodeapi import NodeApiError, NodeClient

DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts").expanduser()
SERVICE_ACTIONS = ("start", "stop", "restart", "kill")
# the service managers' states, in one vocabulary: running | starting | stopping | stopped | failed | unknown
_SUPERVISORD_STATES = {
    "RUNNING": "running",
    "STARTING": "starting",
    "BACKOFF": "starting",  # exited too soon; supervisord tries again (startretries)
    "STOPPING": "stopping",
    "STOPPED": "stopped",
    "EXITED": "stopped",
    "FATAL": "failed",  # gave up restarting it
}
_SYSTEMD_STATES = {
    "active": "running",
    "reloading": "running",
    "activating": "starting",  # also the wait before an automatic restart (Restart=on-failure)
    "deactivating": "stopping",
    "inactive": "stopped",
    "failed": "failed",
}


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


@dataclass(frozen=True)
class ServiceStatus:
    """The node's service as its manager sees it, and its process as the host's kernel sees it."""

    state: str  # running | starting | stopping | stopped | failed | unknown
    detail: str  # the manager's own words (supervisord's line; systemd's ActiveState/SubState)
    pid: int | None = None
    process: str | None = None  # ps STAT of pid ("S", "R", "T"...); None when there is no such process
    uptime_s: int | None = None  # seconds since the process started

    @property
    def alive(self) -> bool:
        return self.process is not None and not self.process.startswith(("Z", "X"))

    @property
    def frozen(self) -> bool:
        """Stopped by a signal (SIGSTOP, SIGTSTP) or a debugger: alive, but runs nothing until continued."""
        return self.process is not None and self.process.startswith(("T", "t"))

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "detail": self.detail, "pid": self.pid, "process": self.process, "uptime_s": self.uptime_s}


@dataclass(frozen=True)
class Standing:
    """How one delegate stands among its peers, as their node APIs say at one moment (read only)."""

    name: str
    chain: dict[str, Any] | None  # its /v1/chain; None when it does not answer
    peers: dict[str, int | None]  # each peer's finalized height (None: not answering)
    endorsed: int | None = None  # the newest recent block whose certificate holds its signature (above `since`)

    @property
    def answering(self) -> bool:
        return self.chain is not None

    @property
    def height(self) -> int | None:
        return int(self.chain["finalized_height"]) if self.chain else None

    @property
    def top(self) -> int | None:
        """The highest finalized height among the answering peers."""
        hs = [h for h in self.peers.values() if h is not None]
        return max(hs) if hs else None

    @property
    def lag(self) -> int | None:
        return None if self.height is None or self.top is None else max(0, self.top - self.height)

    @property
    def stopped_by_operator(self) -> str | None:
        """Why the node does not sign by an operator's (or the protocol's) decision: paused, standby, halted."""
        c = self.chain or {}
        if c.get("halted"):
            return f"halted ({c['halted']})"
        if c.get("standby"):
            return "a standby (not signing until activated)"
        if c.get("paused"):
            return "paused"
        return None

    def problems(self, max_lag: int, since: int | None = None) -> list[str]:
        """What keeps the delegate from being back: [] when it answers, is within `max_lag` blocks of its
        peers' top, has finalized a block above `since` and its signature is in a recent certificate."""
        if self.chain is None:
            return ["does not answer on its API"]
        out = []
        if self.top is None:
            out.append("no peer answers, so whether it caught up is unknown")
        elif self.lag is not None and self.lag > max_lag:
            out.append(f"at height {self.height}, {self.lag} blocks behind its peers ({self.top}; at most {max_lag} allowed)")
        if since is not None and (self.height or 0) <= since:
            out.append(f"finalized nothing above height {since} yet (at {self.height})")
        why = self.stopped_by_operator
        if why:
            out.append(f"it is {why}")
        elif not self.chain.get("participating"):
            syncing = "" if self.chain.get("synced") else ", still syncing"
            out.append(f"not taking part in consensus (participating=false{syncing})")
        elif self.endorsed is None:
            above = f" above {since}" if since is not None else ""
            out.append(f"its signature is in no recent certificate{above} (tip {self.height})")
        return out

    def back_but_stopped(self, max_lag: int, since: int | None = None) -> str | None:
        """The operator's reason when it is the only thing wrong (the node answers and is in step, but is paused,
        a standby or halted): a restart worked, and no waiting will make it sign. None otherwise."""
        why = self.stopped_by_operator
        return why if why and self.problems(max_lag, since) == [f"it is {why}"] else None

    def to_json(self) -> dict[str, Any]:
        c = self.chain or {}
        return {
            "answering": self.answering,
            "height": self.height,
            "top": self.top,
            "lag": self.lag,
            "participating": c.get("participating"),
            "paused": c.get("paused"),
            "halted": c.get("halted"),
            "endorsed": self.endorsed,
        }


@dataclass
class Delegate:
    """One delegate host and its node, with the paths the playbooks gave them."""

    name: str
    spec: HostSpec
    host: Host
    api_url: str  # its public API: the api_proxy's when the inventory puts one in front of the node
    home: str
    releases_root: str
    python: str
    service_manager: str
    service_name: str
    supervisor_dir: str
    supervisorctl: str
    vars: Mapping[str, Any] = field(repr=False, default_factory=dict)
    node_api_url: str = ""  # the node's own API (behind the proxy, if any); "" when it is api_url
    _api: NodeClient | None = field(default=None, init=False, repr=False, compare=False)

    def __repr__(self) -> str:
        return f"Delegate({self.name!r}, api={self.api_url!r}, host={self.host!r})"

    @property
    def api(self) -> NodeClient:
        """The client of this delegate's node API (typed records; errors name the delegate)."""
        c = self._api
        if c is None or c.url != self.api_url.rstrip("/"):
            c = self._api = NodeClient(self.api_url, name=self.name, timeout=3.0)
        return c

    @property
    def node_bin(self) -> str:
        return f"{self.releases_root}/current/bin/iotex-node"

    # -- the node's HTTP API (read from the controller) --

    def get(self, path: str, timeout: float = 3.0) -> Any:
        return self.api.get_json(path, timeout=timeout)

    def post(self, path: str, body: Any, timeout: float = 10.0) -> Any:
        return self.api.post_json(path, body, timeout=timeout)

    def chain(self, timeout: float = 3.0) -> dict[str, Any]:
        """Its /v1/chain document, checked (`d.api.chain()` is the typed ChainInfo)."""
        return self.api.chain(timeout=timeout).to_json()

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

    def _supervisorctl(self, *args: str) -> str:
        conf = shlex.quote(f"{self.supervisor_dir}/supervisord.conf")
        return f"{shlex.quote(self.supervisorctl)} -c {conf} " + " ".join(shlex.quote(a) for a in args)

    def service(self, action: str, timeout: float = 60.0) -> CommandResult:
        """start | stop | restart | kill the node with the host's service manager.

        kill sends SIGKILL at once: the way to stop a frozen (SIGSTOPped) node, which would ignore SIGTERM
        until continued, so that `stop` would wait out the whole stop timeout. The service manager may then
        start it again by itself (supervisord's autorestart=unexpected, systemd's Restart=on-failure)."""
        if action not in SERVICE_ACTIONS:
            raise OpsError(f"unknown service action {action!r}; one of {', '.join(SERVICE_ACTIONS)}")
        if self.service_manager == "supervisord":
            args = ("signal", "KILL", self.service_name) if action == "kill" else (action, self.service_name)
            res = self.run(self._supervisorctl(*args), timeout=timeout, check=False)
            # supervisorctl exits 0 on some failures: its output says ERROR
            if not res.ok or "ERROR" in res.stdout:
                # as systemctl does: stopping a stopped service or starting a running one is no failure
                if action in ("stop", "kill") and "not running" in res.stdout:
                    return res
                if action == "start" and "already started" in res.stdout:
                    return res
                raise OpsError(f"{self.name}: supervisorctl {' '.join(args)} failed: {res.tail(3)}")
            return res
        if action == "kill":
            res = self.run(f"systemctl kill -s KILL {shlex.quote(self.service_name)}", timeout=timeout, check=False)
            if not res.ok and self.service_status().alive:
                raise OpsError(f"{self.name}: systemctl kill -s KILL {self.service_name} failed: {res.tail(3)}")
            return res
        return self.run(f"systemctl {action} {shlex.quote(self.service_name)}", timeout=timeout)

    def service_status(self, timeout: float = 10.0) -> ServiceStatus:
        """The service's state and its main process (pid, ps STAT, uptime); changes nothing."""
        pid: int | None = None
        if self.service_manager == "supervisord":
            res = self.run(self._supervisorctl("status", self.service_name), timeout=timeout, check=False)
            line = next((ln for ln in res.stdout.splitlines() if ln.split()[:1] == [self.service_name]), "")
            words = line.split()
            detail = " ".join(words[1:]) if line else (res.tail(2) or f"supervisorctl exited {res.exit_code}")
            state = _SUPERVISORD_STATES.get(words[1], "unknown") if len(words) > 1 else "unknown"
            m = re.search(r"\bpid (\d+)", line)
            pid = int(m.group(1)) if m else None
        else:
            cmd = f"systemctl show {shlex.quote(self.service_name)} -p ActiveState -p SubState -p MainPID"
            res = self.run(cmd, timeout=timeout, check=False)
            props = dict(ln.split("=", 1) for ln in res.stdout.splitlines() if "=" in ln)
            active = props.get("ActiveState", "")
            state = _SYSTEMD_STATES.get(active, "unknown")
            detail = f"{active}/{props.get('SubState', '')}" if active else (res.tail(2) or f"systemctl exited {res.exit_code}")
            main = props.get("MainPID", "0")
            pid = int(main) if main.isdigit() and int(main) > 0 else None
        if pid is None:
            return ServiceStatus(state, detail)
        ps = self.run(f"ps -o stat=,etimes= -p {pid}", timeout=timeout, check=False)
        fields = ps.stdout.split()
        if not ps.ok or len(fields) < 2:
            return ServiceStatus(state, detail, pid)
        return ServiceStatus(state, detail, pid, fields[0], int(fields[1]) if fields[1].isdigit() else None)

    def log_tail(self, lines: int = 15, timeout: float = 10.0) -> str:
        """The last lines the node's service logged (for an on-call person reading why it does not start)."""
        if self.service_manager == "supervisord":
            # supervisorctl tail counts bytes, not lines
            res = self.run(self._supervisorctl("tail", f"-{lines * 300}", self.service_name), timeout=timeout, check=False)
        else:
            cmd = f"journalctl -u {shlex.quote(self.service_name)} -n {lines} --no-pager -o cat"
            res = self.run(cmd, timeout=timeout, check=False)
        return "\n".join(res.stdout.rstrip("\n").splitlines()[-lines:])


def network_id(inventory: Inventory, delegates: Sequence[HostSpec] | None = None) -> str:
    """A network's stable name (`Network.id`), from its inventory alone: `iotex_network` if set, else a digest
    of the delegates' API addresses (for what keys state by network without connecting: locks, schedules)."""
    for v in inventory.raw_vars.values():
        if v.get("iotex_network"):
            return str(v["iotex_network"])
    specs = inventory.delegates if delegates is None else delegates
    key = ",".join(sorted(f"{h.ansible_host}:{h.node_api_port}" for h in specs))
    return "net-" + hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass
class Network:
    """The delegates of one inventory, plus what the toolkit needs around them (Prometheus, releases)."""

    inventory: Inventory
    delegates: list[Delegate]
    pool: SSHPool = field(repr=False)
    # hot standbys (inventory group `standbys`): each holds a delegate's key; not delegates of their own
    standbys: list[Delegate] = field(default_factory=list)

    @property
    def id(self) -> str:
        """A stable name for locks: `iotex_network` if the inventory sets it, else a digest of the delegates'
        API addresses, so that two inventory paths for one network share a lock."""
        return network_id(self.inventory, [d.spec for d in self.delegates])

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

    def standby_of(self, name: str) -> Delegate | None:
        """The hot standby of delegate `name` (its host's `node_standby_of`), if the inventory has one."""
        return next((s for s in self.standbys if s.vars.get("node_standby_of") == name), None)

    def chains(self, delegates: Iterable[Delegate] | None = None, timeout: float = 2.0) -> dict[str, dict[str, Any] | None]:
        """Every (given) delegate's /v1/chain at once; None where the node does not answer within `timeout`."""
        ds = list(self.delegates if delegates is None else delegates)
        if not ds:
            return {}
        with ThreadPoolExecutor(max_workers=min(16, len(ds))) as pool:
            return dict(zip([d.name for d in ds], pool.map(lambda d: d.try_chain(timeout), ds), strict=True))

    def peers_of(self, name: str) -> list[Delegate]:
        return [d for d in self.delegates if d.name != name]

    def standing(self, name: str, since: int | None = None, timeout: float = 1.0, window: int = 5) -> Standing:
        """Delegate `name` among its peers: its chain, theirs, and whether it endorsed one of its last
        `window` blocks (above `since`). A short `timeout`: a frozen node accepts connections but never answers."""
        d = self.delegate(name)
        cs = self.chains([d, *self.peers_of(name)], timeout)
        c = cs.pop(name)
        peers = {n: (int(pc["finalized_height"]) if pc else None) for n, pc in cs.items()}
        endorsed = None
        if c is not None and c.get("participating"):
            tip = int(c["finalized_height"])
            low = max(1, tip - window + 1, (since + 1) if since is not None else 1)
            try:
                recent = d.api.blocks(low, tip, timeout=timeout) if low <= tip else []
            except NodeApiError:
                recent = []
            endorsed = next((b.height for b in reversed(recent) if c.get("address") in b.voters), None)
        return Standing(name, c, peers, endorsed)

    def select(self, pattern: str | None) -> list[Delegate]:
        names = {h.name for h in self.inventory.limit(pattern)} if pattern else {d.name for d in self.delegates}
        return [d for d in self.delegates if d.name in names]

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _delegate(spec: HostSpec, hv: Mapping[str, Any], pool: SSHPool, defaults: Mapping[str, Any]) -> Delegate:
    # the roles' defaults (playbooks/roles/iotex and node: iotex_ops.content) for vars the inventory leaves out
    rv = content.RoleVars({"inventory_hostname": spec.name, **hv}, defaults)
    python = str(rv["iotex_python"])
    api_host = str(hv.get("node_advertise_host", spec.ansible_host))
    node_api_url = f"http://{api_host}:{spec.node_api_port or rv['node_api_port']}"
    api_url = node_api_url
    if _truthy(hv.get("api_proxy_enabled", False)):
        # the rate-limiting proxy in front of the public API (playbooks/roles/api_proxy)
        proxy_host = str(hv.get("api_proxy_listen_host") or api_host)
        api_url = f"http://{proxy_host}:{int(hv.get('api_proxy_port') or defaults['api_proxy_port'])}"
    # on the host, beside its Python (the role's own default is the controller's: the same host in the lab)
    supervisorctl = hv.get("node_supervisorctl_bin") or str(Path(python).parent / "supervisorctl")
    return Delegate(
        name=spec.name,
        spec=spec,
        host=host_for(spec, hv, pool),
        api_url=api_url,
        home=str(rv["iotex_node_home"]),
        releases_root=str(rv["iotex_releases_root"]),
        python=python,
        service_manager=str(hv.get("node_service_manager") or defaults["node_service_manager"]),
        service_name=str(rv["node_service_name"]),
        supervisor_dir=str(rv["node_supervisor_dir"]),
        supervisorctl=str(supervisorctl),
        vars=hv,
        node_api_url="" if api_url == node_api_url else node_api_url,
    )


def _truthy(v: Any) -> bool:
    return v is True or str(v).strip().lower() in ("true", "yes", "1", "on")


def load(inventory_path: str | Path, known_hosts: Path | None = None) -> Network:
    """The network an inventory describes; its problems are refused here, before any host is touched."""
    inv = inv_mod.load(inventory_path)
    problems = inv_mod.check(inv)
    if problems:
        listed = "; ".join(str(p) for p in problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else "")
        raise inv_mod.InventoryError(f"inventory {inventory_path} has {len(problems)} problem(s): {listed}")
    pool = SSHPool(known_hosts or DEFAULT_KNOWN_HOSTS)
    defaults = content.role_defaults()
    delegates = [_delegate(spec, inv.raw_vars[spec.name], pool, defaults) for spec in inv.delegates]
    standbys = [_delegate(spec, inv.raw_vars[spec.name], pool, defaults) for spec in inv.standbys]
    return Network(inv, delegates, pool, standbys)
