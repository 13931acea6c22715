"""The lab: a whole delegate network on this machine, built with the same playbooks as real hosts.

`up` generates keys and genesis, builds a release artifact of the node from this source tree, writes an
Ansible inventory of the lab's hosts, runs playbooks/site.yml through ansible-runner (release install,
config, supervisord service, monitoring configs), starts the real Prometheus and Alertmanager on
127.0.0.1, and records everything it made in `<root>/lab.json`, which `status` and `down` read.

Hosts:
- `local` (no root): each delegate host is a directory under the lab root, reached with Ansible's local
  connection; its node runs under its own supervisord (unix socket in the host directory).
- `netns` (root): each delegate host is a network namespace with its own address and sshd, reached over
  real SSH (host keys checked against the lab's known_hosts); its node runs inside the namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from iotex_ops.alerting.settings import LAB_VARS
from iotex_ops.errors import LabError, OpsError
from iotex_ops.lab import ops_services
from iotex_ops.lab.daemons import alive, kill_pidfile
from iotex_ops.monitoring import MonitoringStack, Target, stop_from_pidfiles
from iotex_ops.nodeapi import NodeClient
from iotex_ops.runbook.store import default_state_dir

STATE_FILE = "lab.json"
# from the start of node.yml (the install included) until every node has finalized a block
FIRST_BLOCK_TIMEOUT_S = 180.0
# the netns lab's defaults; $IOTEX_OPS_NETNS_PREFIX and $IOTEX_OPS_NETNS_SUBNET override them (`netns_prefix`,
# `netns_subnet`), so that two netns labs (a test run's and a developer's) live side by side
NETNS_SUBNET = "10.247.0.0/16"
NETNS_PREFIX = "ioxlab"
NETNS_P2P_PORT, NETNS_API_PORT = 4689, 14014
# The netns lab's delegates serve their public API through the api_proxy role's nginx on this port (the node's
# own API stays on NETNS_API_PORT of the host's address, for Prometheus and whoever needs the node itself).
NETNS_PROXY_PORT = 14080
# Behind the proxy the node sees one client, the proxy: the per-client limits are the proxy's; the node's
# per-client ones are raised to what the proxy lets through (its global ones stay).
# The lab's proxy limits each other client (the flood drill's attackers, from the bridge's extra addresses)
# tighter than the role's defaults, on the scale of a lab flood on a 2-core machine.
LAB_PROXY_LIMITS = {"api_proxy_rate_per_client": 10, "api_proxy_burst_per_client": 20, "api_proxy_connections_per_client": 16}
PROXIED_NODE_VARS = {
    "node_rate_limit_per_second": 2000.0,
    "node_rate_limit_burst": 4000,
    "node_api_max_connections_per_client": 256,
}
MAX_ROOT_CHARS = 60
# The releases a lab has for its drills: the one it starts on (protocol 1 only), a compatible hotfix (same
# protocols), and a non-compatible one that also runs protocol 2.
DRILL_RELEASES = {"base": ("0.1.0", (1,)), "compatible": ("0.1.1", (1,)), "incompatible": ("0.2.0", (1, 2))}
LOAD_ACCOUNTS = 20
# Alert thresholds on a lab's clock (1 s blocks, 1 s scrape): the drills pause the chain for a few seconds and
# restart nodes one by one, which must not look like an incident.
LAB_ALERT_THRESHOLDS: dict[str, Any] = dict(LAB_VARS)


# The lab's drill schedules (inventory/drills.yml; docs/schedules.md): written disabled, so that `iotex-ops schedule
# list|check|next` and `inventory check` have something to show on a lab and nothing runs by itself.
LAB_DRILLS = """\
# The lab's drill schedules (docs/schedules.md), written by `iotex-ops lab up`. Disabled, so nothing runs by
# itself; `iotex-ops schedule list|check|next` show them, `enabled: true` makes one due.
defaults:
  timezone: UTC
  start_deadline: 1m
  chain_blackout_blocks: 20   # 20 s at the lab's 1 s blocks
schedules:
  - name: lab-first-aid
    drill: first-aid
    params: {hold_s: 3, blocks: 5}
    cron: "0 4 * * *"
    timeout: 5m
    enabled: false
  - name: lab-hotfix-compatible
    drill: hotfix-compatible
    params: {version: %(compatible)s}
    cron: "30 4 * * *"
    timeout: 10m
    enabled: false
"""


def lab_drills() -> str:
    """The lab's drills.yml, naming the lab's own compatible hotfix release."""
    return LAB_DRILLS % {"compatible": DRILL_RELEASES["compatible"][0]}


# The lab's update policy (docs/releases.md): the stable channel of the lab's own channel directory, signed by
# the lab's publisher key; patches roll by themselves, minors wait for approval, protocol changes for a height.
LAB_RELEASES = """\
# The lab's update policy (docs/releases.md), written by `iotex-ops lab up`. `iotex-ops release publish
# ARTIFACT --to %(channel)s --kind patch --key %(key)s` publishes; `iotex-ops release watch --once` rolls.
channel: stable
source: %(channel)s
trusted_keys:
  - %(public)s
timezone: UTC
automatic: [patch]
approval: [minor]
scheduled: [protocol]
"""


def lab_release_channel(root: Path, inventory_dir: Path) -> tuple[Path, Path]:
    """The lab's channel directory, publisher key (new, 0600) and inventory/releases.yml; microseconds of work."""
    from iotex_node.signed_release import PrivateKey

    channel = root / "channel"
    channel.mkdir(exist_ok=True)
    keys = root / "keys"
    keys.mkdir(mode=0o700, exist_ok=True)
    key_file = keys / "publisher.key"
    if key_file.exists():
        key = PrivateKey.load(key_file)
    else:
        key = PrivateKey.generate()
        key.save(key_file)
    doc = LAB_RELEASES % {"channel": channel, "key": key_file, "public": key.public.text()}
    (inventory_dir / "releases.yml").write_text(doc)
    return channel, key_file


def default_root() -> Path:
    return Path(os.environ.get("IOTEX_OPS_LAB_DIR", "~/.local/state/iotex-ops/lab")).expanduser()


@dataclass
class LabNode:
    name: str
    host: str  # address other hosts and the controller reach it on
    api_url: str
    home: str
    host_dir: str
    standby_of: str = ""  # a hot standby's delegate (the host whose key it holds); "" for a delegate


@dataclass
class LabState:
    mode: str
    root: str
    delegates: int
    block_interval_ms: int
    inventory: str
    nodes: list[LabNode]
    prometheus_url: str
    alertmanager_url: str
    monitoring_dir: str
    created: float
    netns: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    releases: dict[str, str] = field(default_factory=dict)  # role (base, compatible, incompatible) -> version
    release_dir: str = ""
    accounts_file: str = ""
    alertd_url: str = ""  # the remediation service (`iotex-ops alertd`) Alertmanager posts to
    alertd_state_dir: str = ""
    pager_dir: str = ""  # the PagerDuty-compatible receiver's directory (receiver.json, incidents)
    # False: `up(chain=False)` left the delegates for the bootstrap drill to install and start, and alertd for
    # `complete` to start once they run (the rehearsal); True once the chain runs and alertd watches it.
    chain_started: bool = True
    alertd_port: int = 0  # where alertd listens (the inventory's monitoring_alertd_url), once it is started
    # the drill scheduler's state and runs: the operator's state dir when the lab came up (`drill history` there)
    scheduler_state_dir: str = ""
    # hot standbys (`lab up --standby node3`, `add_standby`): each holds its delegate's key, signs nothing until
    # promoted (the failover drill); inventory group `standbys`, not among `nodes` (the delegates)
    standbys: list[LabNode] = field(default_factory=list)
    # the lab's release channel (a directory: docs/releases.md) and the publisher key that signs into it (0600);
    # inventory/releases.yml trusts that key and follows the stable channel
    channel_dir: str = ""
    publisher_key: str = ""
    dashboard_port: int = 0  # `iotex-ops dashboard` on 127.0.0.1 (started with alertd and the scheduler)
    dashboard_url: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> LabState:
        nodes = [LabNode(**n) for n in doc.pop("nodes")]
        standbys = [LabNode(**n) for n in doc.pop("standbys", [])]
        return cls(nodes=nodes, standbys=standbys, **doc)

    def endpoints(self) -> list[Any]:
        from iotex_ops.status import Endpoint

        return [Endpoint(n.name, n.host, n.api_url) for n in self.nodes]

    def node_pid(self, name: str) -> int | None:
        node = next((n for n in [*self.nodes, *self.standbys] if n.name == name), None)
        if node is None:
            return None
        try:
            pid = int((Path(node.home) / "node.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if alive(pid) else None


def funded_accounts_file(given: str, inventory: Path) -> Path | None:
    """The funded accounts a drill's load signs with: `given` (`-e accounts_file=PATH`) when set, else those of
    the lab whose inventory `inventory` is (it lives under the lab's root), else None."""
    if given:
        return Path(given)
    for p in Path(inventory).resolve().parents:
        if (p / "lab.json").is_file():
            st = load_state(p)
            return Path(st.accounts_file) if st and st.accounts_file else None
    return None


def load_state(root: Path | None = None) -> LabState | None:
    path = (root or default_root()) / STATE_FILE
    try:
        return LabState.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise LabError(f"lab state {path} is unreadable ({exc}); remove {path.parent} by hand") from None


def _answering(url: str) -> bool:
    return NodeClient(url).alive(timeout=1.0)


def _monitoring_alive(state: LabState) -> bool:
    for name in ("prometheus", "alertmanager"):
        try:
            if alive(int((Path(state.monitoring_dir) / f"{name}.pid").read_text().strip())):
                return True
        except (OSError, ValueError):
            continue
    return False


def is_up(state: LabState) -> bool:
    if any(state.node_pid(n.name) is not None or _answering(n.api_url) for n in state.nodes):
        return True
    # a lab brought up for a bootstrap drill has no node yet, only its monitoring
    return not state.chain_started and _monitoring_alive(state)


# --- releases --------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where built releases are kept across labs: $IOTEX_OPS_CACHE_DIR, else $XDG_CACHE_HOME/iotex-ops."""
    given = os.environ.get("IOTEX_OPS_CACHE_DIR")
    if given:
        return Path(given).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "iotex-ops"


def release_key(version: str, protocols: tuple[int, ...]) -> str:
    """What a built release depends on: the node's sources (their digest, as its manifest records it), its
    version and its protocols. The same key is the same artifact, so it is built once."""
    from iotex_node import artifact

    files = {rel: p.read_bytes() for rel, p in artifact.package_files(artifact.package_dir())}
    return f"{artifact.source_digest(files)[:24]}-{version}-p{'.'.join(map(str, protocols))}"


def build_releases(dist: Path, releases: dict[str, tuple[str, tuple[int, ...]]], cache: Path | None = None) -> dict[str, bool]:
    """Each release into `dist` (the artifact, its .sha256 and .manifest.json), built once per source: from the
    cache when a release of the same sources, version and protocols was built before (by any lab, test or
    bench on this machine), else built into the cache first. Returns version -> whether it was built now."""
    from iotex_node import artifact

    cache = (cache or cache_dir()) / "releases"
    cache.mkdir(parents=True, exist_ok=True)
    built: dict[str, bool] = {}
    for version, protocols in releases.values():
        entry = cache / release_key(version, protocols)
        name = artifact.artifact_name(version)
        built[version] = False
        if not (entry / name).is_file():
            # build beside the entry and rename it in: a concurrent lab sees the whole entry or none of it
            tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=cache))
            try:
                artifact.build(version, protocols, tmp)
                try:
                    tmp.rename(entry)
                    built[version] = True
                except OSError:
                    if not (entry / name).is_file():
                        raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        for f in sorted(entry.iterdir()):
            dst = dist / f.name
            try:
                os.link(f, dst)  # read-only files: one copy on disk, whatever the number of labs
            except OSError:
                shutil.copy2(f, dst)
    return built


# --- up --------------------------------------------------------------------------------------------


def _module_python() -> str:
    system = Path("/usr/bin/python3")
    return str(system) if os.access(system, os.X_OK) else sys.executable


def host_interpreter(host_dir: Path) -> Path:
    """A local host's own path to the modules' Python (a symlink in its directory to _module_python()).

    Mitogen keeps one interpreter per connection, keyed by the interpreter's path: local hosts that share
    one path share one interpreter, which runs their modules one at a time. A path per host gives each its
    own, so the delegates' modules run side by side as they do on real hosts (docs/performance.md)."""
    link = host_dir / "python3"
    target = _module_python()
    if not (link.is_symlink() and os.readlink(link) == target):
        host_dir.mkdir(parents=True, exist_ok=True)
        tmp = host_dir / ".python3.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target)
        tmp.replace(link)
    return link


def netns_prefix() -> str:
    """The netns lab's name prefix (namespaces, links, bridge): $IOTEX_OPS_NETNS_PREFIX, else "ioxlab"."""
    prefix = os.environ.get("IOTEX_OPS_NETNS_PREFIX", "").strip() or NETNS_PREFIX
    if not prefix.isalnum() or len(prefix) > 10:
        raise LabError(f"IOTEX_OPS_NETNS_PREFIX={prefix!r}: letters and digits only, at most 10 (interface names)")
    return prefix


def netns_subnet() -> str:
    """The netns lab's private subnet: $IOTEX_OPS_NETNS_SUBNET, else 10.247.0.0/16."""
    import ipaddress

    subnet = os.environ.get("IOTEX_OPS_NETNS_SUBNET", "").strip() or NETNS_SUBNET
    try:
        net = ipaddress.IPv4Network(subnet)
    except ValueError as exc:
        raise LabError(f"IOTEX_OPS_NETNS_SUBNET={subnet!r} is not an IPv4 network ({exc})") from None
    if not net.is_private or net.prefixlen > 24:
        raise LabError(f"IOTEX_OPS_NETNS_SUBNET={subnet!r}: a private IPv4 network of /24 or larger, e.g. 10.246.0.0/16")
    return str(net)


def public_api_url(hv: dict[str, Any]) -> str:
    """A lab delegate's public API: the proxy's when the inventory puts one in front of it, else the node's."""
    port = hv["api_proxy_port"] if hv.get("api_proxy_enabled") else hv["node_api_port"]
    return f"http://{hv['ansible_host']}:{port}"


def _inventory(
    mode: str,
    root: Path,
    testnet: Path,
    dist: Path,
    version: str,
    manifest: dict[str, Any],
    netns_hosts: Any,
    monitoring_dir: Path,
    alertmanager: str,
    prometheus_url: str = "",
    ops: dict[str, Any] | None = None,
) -> dict[str, Any]:
    delegates: dict[str, dict[str, Any]] = {}
    for i, node in enumerate(manifest["nodes"]):
        name = node["name"]
        host_dir = root / "hosts" / name
        src = testnet / name
        if mode == "local":
            address, p2p, api = "127.0.0.1", int(node["p2p"].rsplit(":", 1)[1]), int(node["api"].rsplit(":", 1)[1])
            conn: dict[str, Any] = {
                "ansible_connection": "local",
                "ansible_user": os.environ.get("USER", "root"),
                "ansible_port": 22,
                "ansible_python_interpreter": str(host_dir / "python3"),  # its own (host_interpreter)
            }
        else:
            h = netns_hosts.hosts[i]
            address, p2p, api = h.address, NETNS_P2P_PORT, NETNS_API_PORT
            conn = {
                "ansible_port": h.port,
                "ansible_user": h.user,
                # the rate-limiting proxy in front of the public API (playbooks/roles/api_proxy), already installed
                "api_proxy_enabled": True,
                "api_proxy_install": False,
                "api_proxy_port": NETNS_PROXY_PORT,
                **PROXIED_NODE_VARS,
                **LAB_PROXY_LIMITS,
                # the controller's own address (the drills' tooling, alertd, the honest load) is not limited
                "api_proxy_exempt_clients": [netns_hosts.gateway],
            }
        delegates[name] = {
            "ansible_host": address,
            **conn,
            "delegate_name": name,
            "node_p2p_port": p2p,
            "node_api_port": api,
            "node_key_file": str(src / "keystore.json"),
            "node_data_dir": str(host_dir / "node"),
            "node_service_manager": "supervisord",
            "node_autorestart": "false",  # alertd, not supervisord, brings a crashed lab node back
            "iotex_gameday_opt_in": True,  # every lab delegate may be a game day's victim (docs/gameday.md)
            "iotex_host_dir": str(host_dir),
            "iotex_releases_root": str(host_dir / "opt" / "iotex"),
            "iotex_node_home": str(host_dir / "node"),
            "iotex_log_dir": str(host_dir / "log"),
            "node_keystore_src": str(src / "keystore.json"),
            "node_password_file_src": str(src / "keystore.pass"),
            "node_key_src": str(src / "node_key.json"),
            "node_admin_token_src": str(src / "admin.token"),
        }
    all_vars: dict[str, Any] = {
        # Ansible's modules run with the system's Python when there is one (it starts faster than a venv's,
        # which pays for every module on every host); the node runs with this toolkit's Python.
        "ansible_python_interpreter": _module_python(),
        "iotex_python": sys.executable,
        "node_genesis_src": str(testnet / "genesis.json"),
        "node_release_dir": str(dist),
        "node_release_version": version,
        "iotex_prometheus_url": prometheus_url,
        # every process running on this lab (drills, alertd) shares these locks, whatever its state dir
        "iotex_ops_lock_dir": str(root / "locks"),
        "iotex_network": "lab",  # readable page keys and lock names: iotex-ops/lab/DelegateDown/node2
    }
    if mode == "netns":
        common = f"-o UserKnownHostsFile={netns_hosts.known_hosts} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes"
        all_vars.update({"ansible_ssh_private_key_file": str(netns_hosts.client_key), "ansible_ssh_common_args": common})
        # the flood drill's attackers connect from these (the bridge's extra addresses), not the controller's own
        all_vars["iotex_flood_sources"] = list(netns_hosts.client_addresses)
    return {
        "all": {
            "vars": all_vars,
            "children": {
                "delegates": {"hosts": delegates},
                "monitoring": {
                    "hosts": {
                        "controller": {
                            "ansible_connection": "local",
                            "ansible_python_interpreter": str(root / "hosts" / "controller" / "python3"),
                            "iotex_host_dir": str(root / "hosts" / "controller"),
                            "monitoring_dir": str(monitoring_dir),
                            "monitoring_alertmanager": alertmanager,
                            **(ops or {}),
                        }
                    }
                },
            },
        }
    }


def up(
    delegates: int = 4,
    hosts: str = "local",
    block_interval_ms: int = 1000,
    root: Path | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    say: Callable[[str], None] = lambda s: None,
    chain: bool = True,
    standby: str | None = None,
) -> LabState:
    """Bring the lab up. `standby` (a delegate's name): a hot standby of it is installed beside the delegates,
    by the same playbook run (docs/failover.md). chain=False (the rehearsal, whose first drill bootstraps a new
    chain): everything but the chain: no delegate installed or started (the bootstrap drill's node.yml does
    it, on keys and a genesis of its own), Prometheus and Alertmanager up, alertd left for `complete` once the nodes run."""
    from iotex_node import release
    from iotex_node.testnet import TestnetSpec, free_ports, generate
    from iotex_ops.ansible import run_playbook

    if hosts not in ("local", "netns"):
        raise LabError(f"--hosts must be local or netns, not {hosts!r}")
    if not 1 <= delegates <= 50:
        raise LabError("a lab has 1 to 50 delegates")
    if standby is not None and not chain:
        raise LabError("a lab standby needs a running chain (lab up without --standby, then add_standby)")
    prefix, subnet = (netns_prefix(), netns_subnet()) if hosts == "netns" else ("", "")  # refused before anything starts
    root = (root or default_root()).resolve()
    if len(str(root)) > MAX_ROOT_CHARS:
        # supervisord's unix socket lives at <root>/hosts/<name>/supervisor/supervisor.sock, and a unix socket
        # path is at most 107 bytes
        raise LabError(f"lab directory {root} is too long ({len(str(root))} > {MAX_ROOT_CHARS} characters) for unix sockets")
    existing = load_state(root)
    if existing is not None:
        if is_up(existing):
            raise LabError(
                f"the lab at {root} is already up ({existing.delegates} delegates, {existing.mode} hosts): "
                "`iotex-ops lab status` shows it, `iotex-ops lab down` removes it"
            )
        say("a previous lab left files behind; removing them first")
        down(root)
    if hosts == "netns" and os.geteuid() != 0:
        raise LabError("--hosts netns needs root (network namespaces and sshd); use --hosts local")
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    root.mkdir(parents=True, exist_ok=True)
    netns_hosts = None
    netns_started: Future[Any] | None = None
    state: LabState | None = None
    # Beside what follows them: the namespace hosts, the releases (from the cache) and the receiver's start
    background = ThreadPoolExecutor(max_workers=3, thread_name_prefix="lab-up")
    try:
        if hosts == "netns":
            from iotex_ops.lab.netns import NetnsHosts

            # a standby gets a namespace host of its own, after the delegates'
            n_hosts = delegates + (1 if standby is not None else 0)
            say(f"creating {n_hosts} network-namespace hosts with sshd (prefix {prefix}, subnet {subnet})")
            netns_started = background.submit(NetnsHosts.create, n_hosts, root / "netns", prefix=prefix, subnet=subnet)
        prom_port, am_port, alertd_port, pager_port, dashboard_port = free_ports(5)
        say("starting the PagerDuty-compatible receiver (HTTPS, the lab's own CA), meanwhile keys, genesis, releases")
        token, _ = ops_services.prepare_alertd(root)
        # The receiver starts (a process of its own) while this one makes the keys, genesis and releases and
        # node.yml runs: the inventory names its files before it has made them, and monitoring.yml, which
        # reads them, runs after node.yml (receiver_ready() before it).
        receiver_started = background.submit(ops_services.start_receiver, root, pager_port)
        receiver = ops_services.receiver_info(root, pager_port)

        def receiver_ready() -> None:
            got = receiver_started.result()
            if any(got.get(k) != v for k, v in receiver.items()):
                raise LabError(f"the lab's receiver serves at {got.get('url')}, not at {receiver['url']}")

        dist = root / "dist"
        dist.mkdir(exist_ok=True)

        def releases() -> tuple[dict[str, bool], float]:
            t_rel = time.monotonic()
            return build_releases(dist, DRILL_RELEASES), round(time.monotonic() - t_rel, 3)

        releases_built = background.submit(releases)
        testnet = root / "testnet"
        generate(TestnetSpec(delegates=delegates, out=testnet, block_interval_ms=block_interval_ms, accounts=LOAD_ACCOUNTS))
        manifest = json.loads((testnet / "testnet.json").read_text())
        current = release.current()
        built, timings["releases_s"] = releases_built.result()
        if netns_started is not None:
            netns_hosts = netns_started.result()
            timings["hosts_s"] = round(time.monotonic() - t0, 3)
        versions = ", ".join(v for v, _ in DRILL_RELEASES.values())
        how = "built now" if any(built.values()) else "built before from these sources (cache)"
        say(f"node releases {versions} from this source ({current.version}): {how}")
        base = DRILL_RELEASES["base"][0]
        monitoring_dir = root / "hosts" / "controller" / "monitoring"
        monitoring_dir.mkdir(parents=True, exist_ok=True)
        ops = {
            "monitoring_alertd_url": f"http://127.0.0.1:{alertd_port}",
            "monitoring_alertd_token_file": str(token),
            "monitoring_pagerduty_url": receiver["url"],
            "monitoring_pagerduty_routing_key_file": receiver["routing_key_file"],
            "monitoring_pagerduty_ca_file": receiver["ca_file"],
            **LAB_ALERT_THRESHOLDS,
        }
        inv_doc = _inventory(
            hosts, root, testnet, dist, base, manifest, netns_hosts, monitoring_dir, f"127.0.0.1:{am_port}",
            prometheus_url=f"http://127.0.0.1:{prom_port}", ops=ops,
        )  # fmt: skip
        standbys: list[LabNode] = []
        if standby is not None:
            spare = netns_hosts.hosts[delegates] if netns_hosts is not None else None
            standbys.append(_add_standby_vars(inv_doc, root, testnet, standby, spare))
        inventory = root / "inventory" / "hosts.yml"
        inventory.parent.mkdir(exist_ok=True)
        inventory.write_text(yaml.safe_dump(inv_doc, sort_keys=False))
        (inventory.parent / "drills.yml").write_text(lab_drills())
        channel_dir, publisher_key = lab_release_channel(root, inventory.parent)
        _link_repo_inventory(inventory.parent)
        nodes = [
            LabNode(
                name,
                hv["ansible_host"],
                public_api_url(hv),
                hv["iotex_node_home"],
                hv["iotex_host_dir"],
            )
            for name, hv in inv_doc["all"]["children"]["delegates"]["hosts"].items()
        ]
        for n in [*nodes, *standbys]:  # a local host is its directory, there before anything is installed on it
            Path(n.host_dir).mkdir(parents=True, exist_ok=True)
            if hosts == "local":
                host_interpreter(Path(n.host_dir))
        host_interpreter(root / "hosts" / "controller")
        state = LabState(
            mode=hosts,
            root=str(root),
            delegates=delegates,
            block_interval_ms=block_interval_ms,
            inventory=str(inventory),
            nodes=nodes,
            prometheus_url=f"http://127.0.0.1:{prom_port}",
            alertmanager_url=f"http://127.0.0.1:{am_port}",
            monitoring_dir=str(monitoring_dir),
            created=time.time(),
            netns=_netns_record(root, netns_hosts),
            releases={role: v for role, (v, _) in DRILL_RELEASES.items()},
            release_dir=str(dist),
            accounts_file=str(testnet / "accounts.secret.json"),
            alertd_state_dir=str(root / "alertd" / "state"),
            pager_dir=str(root / "pager"),
            chain_started=False,
            alertd_port=alertd_port,
            standbys=standbys,
            channel_dir=str(channel_dir),
            publisher_key=str(publisher_key),
            dashboard_port=dashboard_port,
        )
        _save(state)  # from here on `down` can find and remove everything
        t_play = time.monotonic()
        timings["prep_s"] = round(t_play - t0, 3)
        stack = _stack(state)

        def start_dashboard() -> None:
            # waited for only at the end (`complete`), when it has long been serving
            state_dir = default_state_dir().resolve()
            ops_services.start_dashboard(root, inventory, dashboard_port, state_dir, Path(state.alertd_state_dir))

        if chain:
            # The chain first: node.yml alone on the machine's CPUs, then site.yml's other part (the monitoring
            # configs, on the controller) and the dashboard while the first block is made. Run beside node.yml,
            # they took the CPU its hosts' start needed: the nodes ran 2 s later (docs/performance.md).
            # The first block is watched for on the nodes' own APIs from the start of node.yml: the chain runs
            # once they do, while node.yml still puts the netns lab's proxy in front of them.
            stop_watching = threading.Event()

            def first_block() -> None:
                if _wait_first_block(_node_api_urls(inv_doc), FIRST_BLOCK_TIMEOUT_S, root / "hosts", stop_watching):
                    timings["up_to_first_block_s"] = round(time.monotonic() - t0, 3)

            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="first-block")
            try:
                made = pool.submit(first_block)
                say("installing and starting the nodes (playbooks/node.yml)")
                run_playbook("node.yml", inventory, runs_dir=root / "runs", on_event=on_event, extravars=_node_hosts(state))
                timings["nodes_s"] = round(time.monotonic() - t_play, 3)
                say("the nodes run; rendering the monitoring configs (playbooks/monitoring.yml) while they make the first block")
                start_dashboard()
                receiver_ready()
                run_playbook("monitoring.yml", inventory, runs_dir=root / "runs", on_event=on_event)
                timings["playbook_s"] = round(time.monotonic() - t_play, 3)
                state.timings = timings
                _save(state)
                # Prometheus, Alertmanager and alertd start on nodes that run: nothing alerts on one not there yet
                complete(state, say)
                made.result()
            finally:
                stop_watching.set()
                pool.shutdown(wait=True)
            _save(state)
        else:
            start_dashboard()
            say("rendering the monitoring configs (playbooks/monitoring.yml); the bootstrap drill installs the nodes")
            receiver_ready()
            run_playbook("monitoring.yml", inventory, runs_dir=root / "runs", on_event=on_event)
            timings["playbook_s"] = round(time.monotonic() - t_play, 3)
            state.timings = timings
            _save(state)
            # Alertmanager only (a drill's maintenance window silences through it); Prometheus starts with alertd
            # once the bootstrap drill has made the chain (`complete`): until then every node would be down and
            # page, and no alertd would answer
            say("starting Alertmanager")
            stack.start(rendered=True, daemon=True, only=("alertmanager",))
        return state
    except BaseException:
        # Stop what was started, keep the files (logs, run artifacts) to read; `lab down` removes them.
        if state is not None:
            with contextlib.suppress(Exception):
                down(root, keep_files=True)
        else:
            if netns_hosts is None and netns_started is not None:
                with contextlib.suppress(Exception):  # created meanwhile: removed with the rest
                    netns_hosts = netns_started.result()
            if netns_hosts is not None:
                netns_hosts.destroy()
        with contextlib.suppress(Exception):
            ops_services.stop(root)
        say(f"lab up failed: processes stopped; files kept in {root} (`iotex-ops lab down` removes them)")
        raise
    finally:
        background.shutdown(wait=False)  # done by now, or failed: its receiver is stopped above


def _stack(state: LabState) -> MonitoringStack:
    prom_port = int(state.prometheus_url.rsplit(":", 1)[1])
    am_port = int(state.alertmanager_url.rsplit(":", 1)[1])
    targets = [Target(n.name, n.api_url.removeprefix("http://")) for n in state.nodes]
    return MonitoringStack(Path(state.monitoring_dir), targets, prom_port, am_port)


def complete(state: LabState, say: Callable[[str], None] = lambda s: None) -> LabState:
    """Once the delegates run: wait until Prometheus scrapes them all, then start alertd, which Alertmanager
    posts to (`up` does it itself; after `up(chain=False)` the rehearsal calls it after its bootstrap drill)."""
    if state.chain_started:
        return state
    root = Path(state.root)
    stack = _stack(state)
    say("starting Prometheus, Alertmanager and alertd (Alertmanager's webhook -> pages and remediation runbooks)")
    receiver = json.loads((Path(state.pager_dir) / "receiver.json").read_text())
    scheduler_state_dir = default_state_dir().resolve()
    # alertd starts beside Prometheus, so that its own down alert never fires on a lab coming up
    with ThreadPoolExecutor(max_workers=1) as pool:
        monitoring = pool.submit(stack.start, rendered=True, daemon=True)
        url = ops_services.start_alertd(root, Path(state.inventory), state.alertd_port, receiver, state.alertmanager_url)
        monitoring.result()
    _wait_prometheus_sees(stack, len(state.nodes), timeout=30)
    state.alertd_url = url
    say("starting the drill scheduler (inventory/drills.yml: its schedules are disabled, nothing runs by itself)")
    state.scheduler_state_dir = str(scheduler_state_dir)
    ops_services.start_scheduler(root, Path(state.inventory), Path(state.scheduler_state_dir), Path(state.alertd_state_dir))
    if state.dashboard_port:
        t_dash = time.monotonic()
        state.dashboard_url = ops_services.wait_dashboard(root)
        state.timings["dashboard_wait_s"] = round(time.monotonic() - t_dash, 3)  # ~0: it was ready long before
    state.chain_started = True
    _save(state)
    return state


def _repo_lab_link() -> Path:
    from iotex_ops import content

    # beside the playbooks in use: a checkout's inventories/ (an installed package has none: no link)
    return content.playbooks_dir().parent / "inventories" / "lab"


def _link_repo_inventory(inventory_dir: Path) -> None:
    """In a source checkout, inventories/lab points at the running lab's inventory, so that
    `ansible-playbook -i inventories/lab playbooks/site.yml` works as it does for real hosts."""
    link = _repo_lab_link()
    if not link.parent.is_dir() or (link.exists() and not link.is_symlink()):
        return
    tmp = link.with_name(".lab.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(inventory_dir)
    os.replace(tmp, link)


def _netns_record(root: Path, netns_hosts: Any) -> dict[str, Any] | None:
    if netns_hosts is None:
        return None
    hosts = [asdict(h) | {"dir": str(h.dir)} for h in netns_hosts.hosts]
    return {"workdir": str(root / "netns"), "prefix": netns_hosts.prefix, "subnet": str(netns_hosts.subnet), "hosts": hosts}


def _save(state: LabState) -> None:
    path = Path(state.root) / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=2))
    os.replace(tmp, path)


def _node_api_urls(inv_doc: dict[str, Any]) -> list[str]:
    """The delegates' own APIs (not a proxy in front of them): where the nodes are asked for the first block."""
    hosts = inv_doc["all"]["children"]["delegates"]["hosts"]
    return [f"http://{hv['ansible_host']}:{hv['node_api_port']}" for hv in hosts.values()]


def _wait_first_block(urls: list[str], timeout: float, logs: Path, stop: threading.Event | None = None) -> bool:
    """True once every node at `urls` has finalized a block; False if `stop` is set first; LabError at `timeout`."""
    stop = stop or threading.Event()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        heights = []
        for url in urls:
            c = NodeClient(url).try_chain(timeout=1.0)
            heights.append(c.finalized_height if c else 0)
        if heights and min(heights) >= 1:
            return True
        if stop.wait(0.1):
            return False
    raise LabError(f"no block finalized on every node within {timeout:.0f}s of their install's start; node logs are under {logs}")


def _wait_prometheus_sees(stack: MonitoringStack, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OpsError):
            if sum(stack.targets_up().values()) == n:
                return
        time.sleep(0.2)
    raise LabError(f"Prometheus at {stack.prometheus_url} does not see all {n} nodes up after {timeout:.0f}s")


# --- down ------------------------------------------------------------------------------------------


def _stop_host(n: LabNode) -> tuple[int | None, int | None]:
    sup = None
    for pidfile in Path(n.host_dir).rglob("supervisord.pid"):
        sup = kill_pidfile(pidfile, ("supervisord",)) or sup
    node = kill_pidfile(Path(n.home) / "node.pid", ("iotex_node", "iotex-node"))
    return sup, node


def down(root: Path | None = None, keep_files: bool = False) -> list[str]:
    """Remove everything the lab made: processes, namespaces, links, files. Safe to run twice."""
    root = (root or default_root()).resolve()
    state = load_state(root)
    removed: list[str] = []
    removed += ops_services.stop(root)  # first: alertd would restart the nodes being stopped
    if state is not None:
        # Every host's supervisord stops its node; all at once, as each takes a few seconds.
        machines = [*state.nodes, *state.standbys]
        with ThreadPoolExecutor(max_workers=max(1, min(32, len(machines)))) as pool:
            done = list(pool.map(_stop_host, machines))
        for n, (sup, node) in zip(machines, done, strict=True):
            if sup is not None:
                removed.append(f"supervisord {sup} of {n.name}")
            if node is not None:
                removed.append(f"node {node} of {n.name}")
        for pid in stop_from_pidfiles(Path(state.monitoring_dir)):
            removed.append(f"monitoring process {pid}")
        if state.netns:
            from iotex_ops.lab.netns import NetnsHost, NetnsHosts

            hosts = [NetnsHost(**(h | {"dir": Path(h["dir"])})) for h in state.netns["hosts"]]
            NetnsHosts(Path(state.netns["workdir"]), state.netns["prefix"], state.netns["subnet"], hosts).destroy()
            removed.append(f"{len(hosts)} network namespaces")
    link = _repo_lab_link()
    if link.is_symlink() and str(Path(os.readlink(link))).startswith(str(root)):
        link.unlink()
    if root.exists() and not keep_files:
        shutil.rmtree(root, ignore_errors=True)
        removed.append(f"files under {root}")
    return removed


# --- hot standbys ----------------------------------------------------------------------------------

STANDBYS_GROUP = "standbys"
# How long a lab standby refuses a promotion after hearing its key sign elsewhere (3 blocks at the lab's 1 s):
# the node's default (30 s) is for hosts far apart; the drill promotes with --force once the primary is out.
LAB_STANDBY_GUARD_S = 3.0


def standby_name(delegate: str) -> str:
    return f"{delegate}-standby"


def _node_hosts(state: LabState) -> dict[str, object] | None:
    """node.yml's hosts when the lab has standbys: the delegates and them, in one play."""
    return {"iotex_nodes_hosts": f"delegates:{STANDBYS_GROUP}"} if state.standbys else None


def _add_standby_vars(inv_doc: dict[str, Any], root: Path, testnet: Path, delegate: str, netns_host: Any = None) -> LabNode:
    """Add a hot standby of `delegate` to a lab's inventory document (group `standbys`): the same delegate key,
    a P2P identity (node key) of its own, `node_role: standby`; on the local lab ports of its own, on the netns
    lab (`netns_host`, a NetnsHost) an address of its own with the delegates' ports."""
    from iotex_node.sdk import PrivateKey
    from iotex_node.testnet import free_ports

    children = inv_doc["all"]["children"]
    dv = children["delegates"]["hosts"].get(delegate)
    if dv is None:
        raise LabError(f"no delegate {delegate!r} in the lab; delegates: {', '.join(children['delegates']['hosts'])}")
    name = standby_name(delegate)
    group = children.setdefault(STANDBYS_GROUP, {"hosts": {}})
    if name in (group.get("hosts") or {}):
        raise LabError(f"the lab already has {name}")
    src = testnet / name
    src.mkdir(parents=True, exist_ok=True)
    key = PrivateKey()
    node_key = src / "node_key.json"
    fd = os.open(node_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps({"address": key.address, "secret": key.secret().hex()}))
    host_dir = root / "hosts" / name
    hv = dict(dv)
    if netns_host is None:
        p2p, api = free_ports(2)
        hv["ansible_python_interpreter"] = str(host_dir / "python3")  # its own (host_interpreter)
    else:  # the namespace host's address, reached over SSH like the delegates (their ports, proxy and limits)
        p2p, api = NETNS_P2P_PORT, NETNS_API_PORT
        hv.update({"ansible_host": netns_host.address, "ansible_port": netns_host.port, "ansible_user": netns_host.user})
    hv.update(
        {
            "delegate_name": name,
            "node_p2p_port": p2p,
            "node_api_port": api,
            "node_data_dir": str(host_dir / "node"),
            "iotex_host_dir": str(host_dir),
            "iotex_releases_root": str(host_dir / "opt" / "iotex"),
            "iotex_node_home": str(host_dir / "node"),
            "iotex_log_dir": str(host_dir / "log"),
            "node_key_src": str(node_key),
            "node_admin_token_src": "",  # generated on the host
            "node_role": "standby",
            "node_standby_of": delegate,
            "node_standby_guard_seconds": LAB_STANDBY_GUARD_S,
        }
    )
    group.setdefault("hosts", {})[name] = hv
    return LabNode(name, hv["ansible_host"], public_api_url(hv), hv["iotex_node_home"], hv["iotex_host_dir"], delegate)


def add_standby(
    delegate: str,
    root: Path | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    say: Callable[[str], None] = lambda s: None,
) -> LabNode:
    """Add a hot standby of `delegate` to the running (local) lab: inventory, then node.yml on that host only."""
    from iotex_ops.ansible import run_playbook

    root = (root or default_root()).resolve()
    state = load_state(root)
    if state is None or not is_up(state):
        raise LabError(f"no running lab at {root}: `iotex-ops lab up --standby {delegate}` builds one with it")
    if state.mode != "local":
        raise LabError(
            "adding a standby to a running netns lab is not supported (it needs a namespace host of its own): "
            f"`iotex-ops lab up --hosts netns --standby {delegate}` builds a lab with it"
        )
    inventory = Path(state.inventory)
    inv_doc = yaml.safe_load(inventory.read_text())
    node = _add_standby_vars(inv_doc, root, Path(state.root) / "testnet", delegate)
    Path(node.host_dir).mkdir(parents=True, exist_ok=True)
    host_interpreter(Path(node.host_dir))
    tmp = inventory.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(inv_doc, sort_keys=False))
    os.replace(tmp, inventory)
    state.standbys.append(node)
    _save(state)
    say(f"installing {node.name}, a hot standby of {delegate} (playbooks/node.yml, node_role: standby)")
    run_playbook("node.yml", inventory, runs_dir=root / "runs", on_event=on_event, extravars=_node_hosts(state), limit=node.name)
    return node


def remove_standby(name: str, root: Path | None = None) -> None:
    """Stop a lab standby's node and remove it from the lab (inventory, state, its host directory)."""
    root = (root or default_root()).resolve()
    state = load_state(root)
    if state is None:
        raise LabError(f"no lab at {root}")
    node = next((n for n in state.standbys if n.name == name), None)
    if node is None:
        raise LabError(f"the lab has no standby {name!r}")
    _stop_host(node)
    inventory = Path(state.inventory)
    inv_doc = yaml.safe_load(inventory.read_text())
    group = inv_doc["all"]["children"].get(STANDBYS_GROUP) or {}
    (group.get("hosts") or {}).pop(name, None)
    if not group.get("hosts"):
        inv_doc["all"]["children"].pop(STANDBYS_GROUP, None)
    tmp = inventory.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(inv_doc, sort_keys=False))
    os.replace(tmp, inventory)
    state.standbys = [n for n in state.standbys if n.name != name]
    _save(state)
    shutil.rmtree(node.host_dir, ignore_errors=True)
