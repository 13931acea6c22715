"""A drill's maintenance window: what the engine asks of it, and the decisions behind it (pure: no I/O).

For the length of a drill (a runbook that declares `expected_alerts`), the alerts it causes on purpose on
the hosts it touches page nobody: the engine opens a window after `run_start` and before the first step
(Alertmanager silences, a PagerDuty change event), journals the silence ids (`maintenance_open`), and
expires them when the run ends, whatever the outcome (`maintenance_close`), also before a `resume` reopens
it. Unexpected alerts (other names, other hosts) are not silenced and page as always.

The engine talks to a `Window` (the protocol below); the one that reaches Alertmanager, Prometheus and
PagerDuty is `iotex_ops.schedule.maintenance.MaintenanceWindow`, built from the inventory by
`iotex_ops.schedule.maintenance.from_network`. What is decided here: which alerts are silenced where
(`scope`), until when (`run_timeout_s`), what a silence's comment says and which run it names
(`comment`, `run_of`), what the change events carry (`change_details`), when each expected alert fired
relative to the fault (`first_firing`), and which of the toolkit's silences a dead run left (`dead_silences`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from iotex_ops.errors import OpsError

if TYPE_CHECKING:
    from pathlib import Path

    from iotex_ops.runbook.events import MaintenanceOpen
    from iotex_ops.runbook.model import Runbook

# alerts about the whole network: they carry no `host` label, so their silence names no host
# (iotex_ops/alerting/rules.py, scope "network"; tests/ops/test_maintenance.py keeps the two in step)
NETWORK_ALERTS = frozenset({"ChainStalled", "VersionSkew"})
GRACE_S = 120.0  # a silence outlives the run's timeout by this much
_COMMENT = re.compile(r"\bdrill run (?P<run>\S+)(?: on network (?P<net>\S+))?")


class MaintenanceError(OpsError):
    """A drill's maintenance window cannot be opened (Alertmanager unreachable, a silence refused): the drill
    would page people for what it causes on purpose, so it does not start (`--no-maintenance` runs it anyway)."""


@dataclass(frozen=True)
class Scope:
    """What a drill's window silences: per-host alerts on `hosts`, network-wide alerts everywhere."""

    host_alerts: tuple[str, ...]
    network_alerts: tuple[str, ...]
    hosts: tuple[str, ...]

    @property
    def alerts(self) -> tuple[str, ...]:
        return tuple(sorted({*self.host_alerts, *self.network_alerts}))

    @property
    def empty(self) -> bool:
        return not self.host_alerts and not self.network_alerts


@dataclass(frozen=True)
class RunInfo:
    """The run a window is opened for."""

    run_id: str
    drill: str
    network: str
    scope: Scope
    timeout_s: float
    run_dir: Path
    started_at: float  # unix seconds: the run's start (its first event)
    fault_at: float | None = None  # the first step's start: what time to detect is measured from
    extra: Mapping[str, Any] = field(default_factory=dict)


class Window(Protocol):
    """What the engine asks of a maintenance window. Every method but `open` is best effort: it reports
    what it could not do (the engine journals it) rather than raising."""

    url: str  # the Alertmanager's, for messages and the journal

    def check(self) -> None:
        """Raise MaintenanceError naming the URL if Alertmanager cannot be reached (before the run begins)."""

    def open(self, run: RunInfo) -> MaintenanceOpen:
        """Create the silences and announce the start; raise MaintenanceError if a silence cannot be made."""

    def expire(self, silence_ids: Sequence[str]) -> tuple[list[str], str | None]:
        """Expire these silences (those already gone count as expired): the ids, and an error or None."""

    def settle(self, run: RunInfo, timeout_s: float) -> None:
        """Wait (bounded) until the expected alerts no longer fire or pend, so expiring does not page."""

    def detect(self, run: RunInfo, until: float) -> dict[str, float]:
        """Seconds from the fault to each expected alert's first firing ({} if none fired or unknown)."""

    def announce_end(self, run: RunInfo, *, result: str, silences: Sequence[str], report: str | None) -> bool:
        """Send the end's change event; whether it was queued."""

    def close(self) -> None:
        """Release what the window holds (its page queue)."""


def hosts_touched(runbook: Runbook, delegates: Sequence[str], params: Mapping[str, Any]) -> tuple[str, ...]:
    """The hosts a run acts on: the one its `lock_host_param` names, else every delegate of the network."""
    if runbook.lock_host_param and params.get(runbook.lock_host_param):
        return (str(params[runbook.lock_host_param]),)
    return tuple(delegates)


def scope(runbook: Runbook, delegates: Sequence[str], params: Mapping[str, Any]) -> Scope:
    """The runbook's expected alerts, split into per-host ones (on the hosts it touches) and network-wide ones."""
    names = sorted(set(runbook.expected_alerts))
    return Scope(
        host_alerts=tuple(n for n in names if n not in NETWORK_ALERTS),
        network_alerts=tuple(n for n in names if n in NETWORK_ALERTS),
        hosts=hosts_touched(runbook, delegates, params),
    )


def run_timeout_s(runbook: Runbook, hosts: int) -> float:
    """The longest a run of `runbook` can take on `hosts` delegates, from its steps' and checks' own bounds:
    every attempt of every step (per host when serial) with its checks, the steady state before and after,
    and each step's rollback once. The scheduler gives a schedule's `timeout` instead."""
    steady = sum(c.timeout for c in runbook.steady_state)
    total = 3 * steady  # before, after, after a rollback
    for s in runbook.steps:
        attempt = s.timeout + sum(c.timeout for c in s.verify) + s.retry_delay
        per_host = bool(s.hosts or s.param_hosts)
        times = max(1, hosts) if per_host and s.serial else 1
        total += attempt * (s.retries + 1) * times
        if s.rollback is not None:
            total += 2 * s.timeout * times
    return float(total)


def comment(run_id: str, network: str) -> str:
    """A silence's comment: it names the run (and its network), which is how a dead run's silences are found."""
    return f"iotex-ops drill run {run_id} on network {network} (alerts the drill causes on purpose)"


def run_of(text: str) -> tuple[str, str | None] | None:
    """The run id and network a silence's comment names, or None (not a drill's)."""
    m = _COMMENT.search(text or "")
    return (m["run"], m["net"]) if m else None


def change_summary(drill: str, network: str, run_id: str, *, result: str | None = None) -> str:
    if result is None:
        return f"drill {drill} started on network {network} (run {run_id}): its expected alerts are silenced"
    return f"drill {drill} ended on network {network} (run {run_id}): {result}"


def change_details(run: RunInfo, *, silences: Sequence[str], result: str | None = None,
                   report: str | None = None) -> dict[str, Any]:  # fmt: skip
    """A change event's custom_details: the run, the drill, its hosts and silences (and the result at the end)."""
    doc: dict[str, Any] = {
        "run_id": run.run_id,
        "drill": run.drill,
        "network": run.network,
        "hosts": list(run.scope.hosts),
        "alerts": list(run.scope.alerts),
        "silences": list(silences),
    }
    if result is not None:
        doc["result"] = result
    if report:
        doc["report"] = report
    return doc


def first_firing(series: Iterable[Mapping[str, Any]], since: float) -> dict[str, float]:
    """From a range query of `ALERTS{alertstate="firing"}` (Prometheus' result: `metric`, `values`), the
    seconds from `since` (the fault) to each alert name's first firing sample at or after it."""
    first: dict[str, float] = {}
    for s in series:
        name = str((s.get("metric") or {}).get("alertname") or "")
        if not name:
            continue
        for t, v in s.get("values") or ():
            try:
                ts, val = float(t), float(v)
            except (TypeError, ValueError):
                continue
            if val > 0 and ts >= since:
                if name not in first or ts < first[name]:
                    first[name] = ts
                break
    return {n: round(t - since, 3) for n, t in sorted(first.items())}


def dead_silences(silences: Iterable[tuple[str, str]], network: str, running: Iterable[str]) -> list[str]:
    """The ids of the toolkit's silences (id, comment) that a run which is not running left on `network`.
    A silence naming another network is left alone; one naming no network (an older comment) is taken as ours."""
    live = set(running)
    out = []
    for sid, text in silences:
        named = run_of(text)
        if named is None:
            continue
        run_id, net = named
        if net is not None and net != network:
            continue
        if run_id not in live:
            out.append(sid)
    return out
