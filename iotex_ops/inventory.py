"""Ansible YAML inventories of delegate hosts, loaded into immutable data and checked before any host is touched.

The files are plain Ansible (`ansible-inventory -i DIR --list` reads them): `hosts.yml` with groups,
children and inline vars, beside `group_vars/<group>.yml` and `host_vars/<host>.yml`. Variables merge as
Ansible merges them: group_vars/all, then each group (parents before children), inline group vars, inline
host vars, host_vars. Relative `node_key_file` paths are taken relative to the inventory directory.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from iotex_ops import content
from iotex_ops.errors import OpsError

DELEGATES = "delegates"
# hot standbys: a host holding a delegate's key (node_standby_of names the delegate's host), signing nothing
# until promoted (docs/failover.md); not a delegate of its own
STANDBYS = "standbys"
SERVICE_MANAGERS = ("systemd", "supervisord")
# every var a delegate host must have
REQUIRED = (
    "ansible_host",
    "ansible_user",
    "ansible_port",
    "node_p2p_port",
    "node_api_port",
    "delegate_name",
    "node_key_file",
    "node_data_dir",
    "node_service_manager",
)
# non-Ansible vars this toolkit and its playbooks understand; anything else is a typo until prefixed x_
_TOOLKIT_VARS = {
    "node_version",
    "node_release_dir",
    "node_metrics_port",
    "node_admin_socket",
    "node_extra_args",
    "iotex_network",  # a name for the network (run locks); default: a digest of the delegates' addresses
    "iotex_prometheus_url",  # the Prometheus that scrapes the delegates, for runbook verifications
    "iotex_alertmanager_url",  # the Alertmanager drills silence their expected alerts in (else monitoring_alertmanager)
    "node_supervisorctl_bin",
    "iotex_ops_lock_dir",  # where runs on this network take their locks (shared by every process running on it)
    "iotex_flood_sources",  # addresses the flood drill's attackers connect from (the netns lab's extra client addresses)
    "iotex_gameday_opt_in",  # true: a game day's fault drills may pick this delegate as their victim (iotex_ops/faults)
}

# Variables renamed when the roles took ansible-lint's role prefix (issue 13): an inventory that still sets
# the old name is told the new one, rather than that the name is unknown.
_ALERTS = (
    "delegate_down_for", "chain_stalled_for", "lag_blocks", "lag_for", "missed_slots", "missed_slots_window", "peers_min",
    "peers_for", "paused_for", "version_skew_for", "mempool_max", "mempool_for", "disk_free_ratio", "disk_for",
    "alertd_down_for", "group_wait", "group_interval", "repeat_interval", "watchdog_repeat", "docs_url",
)  # fmt: skip
_NODE = ("service_manager", "supervisor_dir", "supervisord_bin", "supervisorctl_bin", "systemd_unit_dir")
_MONITORING = ("alertd_url", "alertd_token_file", "pagerduty_url", "pagerduty_routing_key_file", "pagerduty_ca_file")
RENAMED: dict[str, str] = {
    **{old: f"node_{old}" for old in _NODE},
    **{old: f"monitoring_{old}" for old in _MONITORING},
    **{f"alert_{a}": f"monitoring_alert_{a}" for a in _ALERTS},
}


def known_vars() -> frozenset[str]:
    """Every variable an inventory may set: the required ones, the toolkit's, and every variable the roles
    define a default for (the playbooks in use are the source of truth: iotex_ops.content)."""
    return frozenset(REQUIRED) | _TOOLKIT_VARS | frozenset(content.role_defaults())


def __getattr__(name: str) -> Any:
    if name == "KNOWN":  # read when asked, so that importing this module reads no file
        return known_vars()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_PORTS = ("ansible_port", "node_p2p_port", "node_api_port")


class InventoryError(OpsError):
    """The inventory cannot be read or a --limit pattern selects nothing."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the inventory, with where it is."""

    message: str
    host: str | None = None
    file: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        who = f"{self.host}: " if self.host else ""
        return f"{where}{who}{self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {"message": self.message, "host": self.host, "file": self.file, "line": self.line}


@dataclass(frozen=True)
class HostSpec:
    """One delegate host as the inventory declares it; `extra` holds every other var (ansible_*, x_*, typos)."""

    name: str
    ansible_host: str
    ansible_user: str
    ansible_port: int
    node_p2p_port: int | None
    node_api_port: int | None
    delegate_name: str | None
    node_key_file: Path | None
    node_data_dir: str | None
    service_manager: str | None
    groups: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __repr__(self) -> str:
        # extra may hold ansible_password or ansible_become_password: list names only
        return (
            f"HostSpec(name={self.name!r}, {self.ansible_user}@{self.ansible_host}:{self.ansible_port}, "
            f"delegate={self.delegate_name!r}, p2p={self.node_p2p_port}, api={self.node_api_port}, "
            f"service_manager={self.service_manager!r}, extra_keys={sorted(self.extra)!r})"
        )


@dataclass(frozen=True)
class Inventory:
    path: Path
    hosts: tuple[HostSpec, ...]
    groups: Mapping[str, tuple[str, ...]]  # group -> host names, children included
    raw_vars: Mapping[str, Mapping[str, Any]]  # host -> merged vars as written
    load_problems: tuple[Problem, ...] = ()

    def __repr__(self) -> str:
        return f"Inventory(path={str(self.path)!r}, hosts={[h.name for h in self.hosts]!r}, groups={sorted(self.groups)!r})"

    def host(self, name: str) -> HostSpec:
        for h in self.hosts:
            if h.name == name:
                return h
        raise InventoryError(f"no host {name!r} in {self.path}; hosts: {[h.name for h in self.hosts]}")

    @property
    def delegates(self) -> tuple[HostSpec, ...]:
        names = set(self.groups.get(DELEGATES, ()))
        return tuple(h for h in self.hosts if h.name in names)

    @property
    def standbys(self) -> tuple[HostSpec, ...]:
        names = set(self.groups.get(STANDBYS, ()))
        return tuple(h for h in self.hosts if h.name in names)

    def standby_of(self, delegate: str) -> HostSpec | None:
        """The hot standby of delegate host `delegate`, if the inventory has one."""
        return next((h for h in self.standbys if h.extra.get("node_standby_of") == delegate), None)

    def limit(self, pattern: str | None) -> tuple[HostSpec, ...]:
        """Hosts selected by an Ansible --limit pattern, in inventory order.

        Parts separated by ',' or ':' are host names, group names or globs ('del*', '~regex');
        '&part' intersects, '!part' excludes, 'all' or '*' is every host. A part that selects nothing is an error."""
        if not pattern:
            return self.hosts
        parts = [p.strip() for p in re.split(r"[,:]", pattern) if p.strip()]
        chosen: set[str] = set()
        intersect: list[set[str]] = []
        exclude: set[str] = set()
        for part in parts:
            if part.startswith("!"):
                exclude |= self._match(part[1:])
            elif part.startswith("&"):
                intersect.append(self._match(part[1:]))
            else:
                chosen |= self._match(part)
        if not chosen and intersect:
            chosen = {h.name for h in self.hosts}
        for s in intersect:
            chosen &= s
        chosen -= exclude
        return tuple(h for h in self.hosts if h.name in chosen)

    def _match(self, part: str) -> set[str]:
        names = [h.name for h in self.hosts]
        if part in ("all", "*"):
            return set(names)
        if part.startswith("~"):
            rx = re.compile(part[1:])
            found = {n for n in names if rx.search(n)} | {h for g, hs in self.groups.items() if rx.search(g) for h in hs}
        else:
            found = set(fnmatch.filter(names, part))
            for g in fnmatch.filter(list(self.groups), part):
                found |= set(self.groups[g])
        if not found:
            raise InventoryError(f"--limit {part!r} matches no host or group in {self.path}")
        return found


# -- loading ----------------------------------------------------------------------------------------------


def _read_yaml(path: Path, problems: list[Problem]) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problems.append(Problem(f"unparsable YAML: {exc.problem or exc}", file=str(path), line=line))
    except yaml.YAMLError as exc:
        problems.append(Problem(f"unparsable YAML: {exc}", file=str(path)))
    except OSError as exc:
        problems.append(Problem(f"cannot read: {exc.strerror}", file=str(path)))
    return None


def _vars_file(directory: Path, name: str, problems: list[Problem]) -> dict[str, Any]:
    for candidate in (directory / f"{name}.yml", directory / f"{name}.yaml", directory / name):
        if candidate.is_file():
            data = _read_yaml(candidate, problems)
            if data is None:
                return {}
            if not isinstance(data, dict):
                problems.append(Problem("a vars file must be a mapping", file=str(candidate)))
                return {}
            return data
    return {}


def load(path: str | Path) -> Inventory:
    """Read an inventory file, or a directory with hosts.yml and group_vars/ and host_vars/ beside it.

    Unparsable files do not raise: they become problems (file and line) that `check` reports."""
    path = Path(path)
    if path.is_dir():
        hosts_file = next((path / n for n in ("hosts.yml", "hosts.yaml", "hosts") if (path / n).is_file()), None)
        if hosts_file is None:
            raise InventoryError(f"{path} has no hosts.yml")
        base = path
    elif path.is_file():
        hosts_file, base = path, path.parent
    else:
        raise InventoryError(f"inventory {path} does not exist")
    problems: list[Problem] = []
    data = _read_yaml(hosts_file, problems) or {}
    if not isinstance(data, dict):
        problems.append(Problem("the inventory must be a mapping of groups", file=str(hosts_file)))
        data = {}

    host_groups: dict[str, list[str]] = {}  # host -> groups, outermost first
    host_inline: dict[str, dict[str, Any]] = {}
    group_inline: dict[str, dict[str, Any]] = {}
    members: dict[str, list[str]] = {}

    def walk(group: str, body: Any, ancestors: tuple[str, ...]) -> list[str]:
        body = body or {}
        if not isinstance(body, dict):
            problems.append(Problem(f"group {group!r} must be a mapping", file=str(hosts_file)))
            return []
        group_inline.setdefault(group, {}).update(body.get("vars") or {})
        names: list[str] = []
        for hname, hvars in (body.get("hosts") or {}).items():
            host_groups.setdefault(hname, [])
            for g in (*ancestors, group):
                if g not in host_groups[hname]:
                    host_groups[hname].append(g)
            host_inline.setdefault(hname, {}).update(hvars or {})
            names.append(hname)
        for child, cbody in (body.get("children") or {}).items():
            names += walk(child, cbody, (*ancestors, group))
        members[group] = list(dict.fromkeys(members.get(group, []) + names))
        return names

    for group, body in data.items():
        walk(group, body, ())
    members.setdefault("all", list(host_groups))

    gv, hv = base / "group_vars", base / "host_vars"
    group_files = {g: _vars_file(gv, g, problems) for g in {"all", *members}}
    specs: list[HostSpec] = []
    raw: dict[str, Mapping[str, Any]] = {}
    for hname, groups in host_groups.items():
        merged: dict[str, Any] = {}
        order = ["all", *[g for g in groups if g != "all"]]
        for g in order:
            merged.update(group_files.get(g, {}))
        for g in order:
            merged.update(group_inline.get(g, {}))
        merged.update(host_inline.get(hname, {}))
        merged.update(_vars_file(hv, hname, problems))
        raw[hname] = MappingProxyType(merged)
        specs.append(_spec(hname, tuple(g for g in groups if g != "all"), merged, base))
    return Inventory(
        path=path,
        hosts=tuple(specs),
        groups=MappingProxyType({g: tuple(m) for g, m in members.items()}),
        raw_vars=MappingProxyType(raw),
        load_problems=tuple(problems),
    )


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _spec(name: str, groups: tuple[str, ...], v: Mapping[str, Any], base: Path) -> HostSpec:
    key = v.get("node_key_file")
    key_path = None
    if key:
        key_path = Path(str(key)).expanduser()
        if not key_path.is_absolute():
            key_path = base / key_path
    return HostSpec(
        name=name,
        ansible_host=str(v.get("ansible_host", name)),
        ansible_user=str(v.get("ansible_user", "root")),
        ansible_port=_int(v.get("ansible_port", 22)) or 22,
        node_p2p_port=_int(v.get("node_p2p_port")),
        node_api_port=_int(v.get("node_api_port")),
        delegate_name=v.get("delegate_name"),
        node_key_file=key_path,
        node_data_dir=v.get("node_data_dir"),
        service_manager=v.get("node_service_manager"),
        groups=groups,
        extra=MappingProxyType({k: val for k, val in v.items() if k not in REQUIRED}),
    )


# -- checking ---------------------------------------------------------------------------------------------


def check(inv: Inventory) -> list[Problem]:
    """Every problem of the inventory at once, before any host is touched (an empty list: all good)."""
    problems = list(inv.load_problems)
    delegates = set(inv.groups.get(DELEGATES, ()))
    standbys = set(inv.groups.get(STANDBYS, ()))
    if not delegates:
        problems.append(Problem(f"no group {DELEGATES!r} (or it has no hosts)", file=str(inv.path)))
    known = known_vars()
    for h in inv.hosts:
        v = inv.raw_vars[h.name]
        for k in sorted(v):
            if k in RENAMED and k not in known:
                problems.append(Problem(f"host var {k!r} is now called {RENAMED[k]!r}", host=h.name))
            elif k not in known and not k.startswith(("ansible_", "x_")):
                problems.append(Problem(f"unknown host var {k!r} (custom vars start with x_)", host=h.name))
        if h.name in standbys:
            of = v.get("node_standby_of")
            if of not in delegates:
                problems.append(
                    Problem(f"standby: node_standby_of must name a host of group {DELEGATES!r}, not {of!r}", host=h.name)
                )
            if h.name in delegates:
                problems.append(
                    Problem(f"a host is a delegate or a standby, not both ({DELEGATES!r}, {STANDBYS!r})", host=h.name)
                )
        if h.name not in delegates and h.name not in standbys:
            continue
        missing = [k for k in REQUIRED if k not in v]
        if missing:
            problems.append(Problem(f"missing required vars: {', '.join(missing)}", host=h.name))
        for k in _PORTS:
            if k in v and not (isinstance(_int(v[k]), int) and 1 <= (_int(v[k]) or 0) <= 65535):
                problems.append(Problem(f"{k} must be a port number 1-65535, not {v[k]!r}", host=h.name))
        if h.node_p2p_port is not None and h.node_p2p_port == h.node_api_port:
            problems.append(Problem(f"node_p2p_port and node_api_port are both {h.node_p2p_port}", host=h.name))
        if "node_service_manager" in v and h.service_manager not in SERVICE_MANAGERS:
            allowed = ", ".join(SERVICE_MANAGERS)
            problems.append(Problem(f"node_service_manager must be one of {allowed}, not {h.service_manager!r}", host=h.name))
        if h.node_key_file is not None and not h.node_key_file.is_file():
            problems.append(Problem(f"node_key_file {h.node_key_file} does not exist on this controller", host=h.name))
    problems += _port_clashes(h for h in inv.hosts if h.name in delegates or h.name in standbys)
    names = [h.delegate_name for h in inv.hosts if h.name in delegates and h.delegate_name]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(Problem(f"delegate_name {dup!r} is used by more than one host"))
    return problems


def _port_clashes(hosts: Iterable[HostSpec]) -> list[Problem]:
    taken: dict[tuple[str, int], tuple[str, str]] = {}
    problems = []
    for h in hosts:
        for var in ("node_p2p_port", "node_api_port"):
            port = getattr(h, var)
            if port is None:
                continue
            other = taken.get((h.ansible_host, port))
            if other and other[0] != h.name:
                problems.append(
                    Problem(f"{var} {port} on {h.ansible_host} is also {other[1]} of {other[0]}", host=h.name),
                )
            else:
                taken[(h.ansible_host, port)] = (h.name, var)
    return problems
