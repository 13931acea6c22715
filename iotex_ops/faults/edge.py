"""What a fault drill reads from the world and does to it: the edges around iotex_ops/faults/core.py.

Reads: Prometheus' `ALERTS` (detect), the delegates' APIs (the chain's top, the victim's standing, its
productivity in the epoch), alertd's `/v1/state` (when it started its remediation, whether it escalated),
the lab's PagerDuty receiver (`/incidents`: when the page went out and where). Each reader returns None (or
an empty list) when its source is not configured or does not answer: a figure it gives is then not measured,
and the report says so; it never fails the drill.

Faults: `kill` (SIGKILL through the service manager), `signal_pid` (SIGSTOP / SIGCONT of the node's main
process), `partition`/`heal` (blackhole routes to the peers inside the delegate's network namespace).
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from iotex_ops.errors import OpsError
from iotex_ops.faults.core import FiringAlert
from iotex_ops.network import Delegate, Network
from iotex_ops.nodeapi import NodeApiError

API_TIMEOUT_S = 1.0


def monitoring_vars(net: Network) -> dict[str, Any]:
    """The vars of the inventory's first `monitoring` host (where alertd's and the pager's settings live)."""
    inv = net.inventory
    names = inv.groups.get("monitoring", ())
    return dict(inv.raw_vars.get(names[0], {})) if names else {}


# -- Prometheus --------------------------------------------------------------------------------------


def firing_alerts(query: Any) -> list[FiringAlert]:
    """Prometheus' firing alerts (`query` is RunContext.query)."""
    rows = query('ALERTS{alertstate="firing"}')
    out = []
    for r in rows:
        m = r.get("metric", {})
        out.append(FiringAlert(str(m.get("alertname", "")), str(m.get("host", "")), str(m.get("severity", ""))))
    return out


# -- the chain -----------------------------------------------------------------------------------------


def top(net: Network, among: list[Delegate]) -> int | None:
    cs = net.chains(among, API_TIMEOUT_S)
    heights = [int(c["finalized_height"]) for c in cs.values() if c]
    return max(heights) if heights else None


def operators(net: Network, names: list[str]) -> dict[str, str]:
    """The victims' operator addresses (their nodes' /v1/chain `address`), asked before the fault: the chain's
    productivity is per operator, and a candidate's name on chain need not be its inventory host's."""
    out = {}
    for n in names:
        c = net.delegate(n).try_chain(API_TIMEOUT_S)
        if c and c.get("address"):
            out[str(c["address"])] = n
    return out


def productivity(
    net: Network, ops: Mapping[str, str], ask: list[Delegate], epoch: int | None = None
) -> tuple[int, dict[str, int]] | None:
    """(epoch, {host: slots missed in it}) for the operators `ops` (address -> host), as the first answering
    delegate of `ask` counts them (this epoch, or `epoch`)."""
    for d in ask:
        try:
            ds = d.api.delegates(epoch, timeout=API_TIMEOUT_S)
        except NodeApiError:
            continue
        return ds.epoch, {ops[c.operator]: c.missed for c in ds.candidates if c.operator in ops}
    return None


# -- alertd --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alertd:
    url: str
    token_file: Path

    @classmethod
    def of(cls, net: Network) -> Alertd | None:
        v = monitoring_vars(net)
        url, token = v.get("monitoring_alertd_url"), v.get("monitoring_alertd_token_file")
        return cls(str(url).rstrip("/"), Path(str(token))) if url and token else None

    def state(self) -> dict[str, Any] | None:
        try:
            token = self.token_file.read_text().strip()
        except OSError:
            return None
        req = urllib.request.Request(self.url + "/v1/state")  # noqa: S310 - the inventory's alertd
        req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=2) as resp:  # noqa: S310
                doc = json.loads(resp.read())
        except (OSError, urllib.error.URLError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None


def remediation_started(
    state: dict[str, Any] | None, victims: list[str], since: float
) -> tuple[float | None, list[dict[str, Any]]]:
    """When alertd started its first remediation of a victim at or after `since`, and those remediations."""
    if not state:
        return None, []
    rows = [
        r
        for r in state.get("remediations", [])
        if r.get("host") in victims and float(r.get("created") or 0) >= since and r.get("state") != "deferred"
    ]
    first = min((float(r["created"]) for r in rows), default=None)
    brief = [{k: r.get(k) for k in ("runbook", "run_id", "state", "attempt", "created", "ended")} for r in rows]
    return first, brief


def open_pages(state: dict[str, Any] | None, names: set[str] | list[str]) -> list[str]:
    """alertd's pages still open (triggered or acknowledged) about these delegates: "Alert on host"."""
    if not state:
        return []
    return sorted(
        f"{a.get('alertname')} on {a.get('host')}"
        for a in state.get("alerts", [])
        if a.get("host") in names and a.get("page") in ("triggered", "acknowledged")
    )


def escalated(state: dict[str, Any] | None, victims: list[str], since: float) -> bool:
    if not state:
        return False
    return any(
        a.get("host") in victims and a.get("escalated") and float(a.get("last_seen") or 0) >= since
        for a in state.get("alerts", [])
    )


# -- the lab's PagerDuty receiver ----------------------------------------------------------------------


def _ts(iso: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(iso).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True)
class Receiver:
    """The lab's receiver, found beside the routing key file the inventory names (its admin token is there)."""

    pager_dir: Path
    url: str

    @classmethod
    def of(cls, net: Network) -> Receiver | None:
        v = monitoring_vars(net)
        key = v.get("monitoring_pagerduty_routing_key_file")
        if not key:
            return None
        d = Path(str(key)).expanduser().parent
        return cls(d, str(v.get("monitoring_pagerduty_url", ""))) if (d / "admin_token").is_file() else None

    def incidents(self) -> list[dict[str, Any]] | None:
        from iotex_ops.paging.errors import ReceiverError
        from iotex_ops.paging.receiver import LabClient

        try:
            return LabClient.for_dir(self.pager_dir).incidents()
        except (ReceiverError, OSError):
            return None


def pages_for(incidents: list[dict[str, Any]] | None, victims: list[str], since: float) -> list[dict[str, Any]]:
    """The victims' incidents opened at or after `since`: when, what, and whether on the drill route."""
    from iotex_ops.paging import drill_route

    out = []
    for i in incidents or []:
        at = _ts(i.get("created_at"))
        details = i.get("custom_details") or {}
        host = details.get("host") or i.get("source")
        if at is None or at < since or host not in victims:
            continue
        out.append(
            {
                "id": i.get("id"),
                "at": at,
                "summary": str(i.get("summary", ""))[:200],
                "status": i.get("status"),
                "drill_route": drill_route.is_drill_page(str(i.get("summary", "")), details),
                "escalation": str(i.get("dedup_key", "")).endswith("/escalated"),
            }
        )
    return sorted(out, key=lambda p: p["at"])


# -- faults --------------------------------------------------------------------------------------------


def main_pid(d: Delegate) -> int:
    st = d.service_status()
    if not st.alive or st.pid is None:
        raise OpsError(f"{d.name}: its node is not running ({st.state}, {st.detail}): no fault to inject")
    return st.pid


def kill(d: Delegate) -> int:
    pid = main_pid(d)
    d.service("kill")
    return pid


def signal_pid(d: Delegate, pid: int, sig: str) -> bool:
    """Send SIGSTOP/SIGCONT to the node's process `pid` on its host, if it is still the node's main process."""
    st = d.service_status()
    if st.pid != pid or not st.alive:
        return False
    res = d.run(f"kill -{sig} {int(pid)}", check=False)
    return res.ok


def frozen(d: Delegate) -> bool:
    return d.service_status().frozen


def wait_started(d: Delegate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if d.service_status().alive:
            return
        time.sleep(0.2)
    raise OpsError(f"{d.name}: not running {timeout:g}s after its start")


# The partition: inside the delegate's own network namespace (the netns lab, or a host where the drill may
# change routes as root), a blackhole route to each peer's address. Every packet to a peer is dropped in
# silence (its connections and its answers to theirs), both ways in effect, while the controller (another
# address: SSH, Prometheus' scrapes, alertd's checks) still reaches it. Routes need no kernel module (tc's prio
# qdisc and drop action were not there on this project's machine).


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address in ("localhost", "")


def without_own_namespace(hosts: list[Delegate]) -> list[str]:
    """The hosts among `hosts` that a partition cannot cut apart from the others: on this machine's loopback or
    reached with `ansible_connection: local` (the local lab), or sharing their address with another host."""
    addresses = [str(d.spec.ansible_host) for d in hosts]
    out = []
    for d, addr in zip(hosts, addresses, strict=True):
        if _loopback(addr) or d.vars.get("ansible_connection") == "local" or addresses.count(addr) > 1:
            out.append(d.name)
    return out


def partition_refusal(drill: str, victims: list[Delegate], among: list[Delegate]) -> list[str]:
    """A partition drill's preflight: refused (one problem) unless each victim is in a network namespace of
    its own, apart from every other host in `among` (the netns lab)."""
    names = {d.name for d in victims}
    shared = [n for n in without_own_namespace(among) if n in names]
    if not shared:
        return []
    return [
        f"{drill} needs each host it cuts off in a network namespace of its own (the netns lab: `iotex-ops lab up "
        f"--hosts netns`, as root): {', '.join(shared)} share(s) this machine's loopback or an address, where cutting "
        "one host's P2P traffic would touch the host's own networking"
    ]


def partition_commands(peers: list[str]) -> list[str]:
    """The routes that cut a delegate off `peers` (addresses), pure."""
    return [f"ip route add blackhole {shlex.quote(a)}/32" for a in peers]


def heal_commands(peers: list[str]) -> list[str]:
    return [f"ip route del blackhole {shlex.quote(a)}/32" for a in peers]


def partition(d: Delegate, peers: list[str]) -> list[str]:
    """Cut `d` off `peers`; the addresses cut (for `heal`). A failure heals what was done and says why."""
    mine = str(d.spec.ansible_host)
    if mine in peers:
        raise OpsError(f"{d.name} shares its address {mine} with a peer: a route cannot cut them apart (needs netns)")
    done: list[str] = []
    for addr, cmd in zip(peers, partition_commands(peers), strict=True):
        res = d.run(cmd, check=False)
        if not res.ok:
            heal(d, done)
            raise OpsError(f"{d.name}: `{cmd}` failed: {res.tail(2)}")
        done.append(addr)
    return done


def heal(d: Delegate, peers: list[str]) -> None:
    for cmd in heal_commands(peers):
        d.run(cmd, check=False)  # a route that is not there is no failure


# A blackhole route drops what the victim sends; what its peers send still arrives for a while (TCP delivers
# the segments in flight and those its peers' windows allow, though no ACK goes back), and a node cut off that
# way can go on finalizing blocks for a second or two. Strict reverse-path filtering in the victim's namespace
# drops those too: a packet from a blackholed address has no route back, so the kernel refuses it on arrival.
RP_FILTER = "net.ipv4.conf.all.rp_filter"


def drop_inbound(d: Delegate) -> int:
    """Make `d`'s namespace refuse packets from the addresses it has blackhole routes to (strict reverse-path
    filtering); the setting it had, for `restore_inbound`."""
    res = d.run(f"sysctl -n {RP_FILTER}", check=False)
    try:
        before = int(res.stdout.strip())
    except ValueError:
        raise OpsError(f"{d.name}: cannot read {RP_FILTER}: {res.tail(2)}") from None
    set_ = d.run(f"sysctl -qw {RP_FILTER}=1", check=False)
    if not set_.ok:
        raise OpsError(f"{d.name}: cannot set {RP_FILTER}=1: {set_.tail(2)}")
    return before


def restore_inbound(d: Delegate, before: int) -> None:
    d.run(f"sysctl -qw {RP_FILTER}={int(before)}", check=False)
