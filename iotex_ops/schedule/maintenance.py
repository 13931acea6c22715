"""The edges of a drill's maintenance window: Alertmanager silences, PagerDuty change events, Prometheus.

`MaintenanceWindow` implements `iotex_ops.runbook.maintenance.Window` (the engine's side and the pure
decisions live there) over `iotex_ops.alerting.silences.Silences`, a change-event sink (`PagerAnnouncer`:
the durable `Pager` queue to the inventory's PagerDuty URL; `iotex_ops.testing.FakePages` in tests) and
Prometheus queries (time to detect, and waiting for the expected alerts to stop before expiring).

`from_network(net, store)` builds it from the inventory, as the engine does by default: the Alertmanager is
`iotex_alertmanager_url`, else `http://<monitoring_alertmanager>` when the inventory sets it (on the monitoring
hosts, as the monitoring role reads it); no Alertmanager named: no window. PagerDuty: `monitoring_pagerduty_url`,
`monitoring_pagerduty_routing_key_file` (else $PAGERDUTY_ROUTING_KEY), `monitoring_pagerduty_ca_file`; no key:
no change events (the silences still open).

`expire_dead_runs(net, store)` expires the toolkit's silences whose run is not running (no live holder of the
network's or a host's lock names it): what a killed drill left. The scheduler service calls it when it starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from iotex_ops.alerting.silences import SilenceError, Silences, Transport, scoped
from iotex_ops.errors import OpsError
from iotex_ops.runbook import maintenance as mw
from iotex_ops.runbook.events import MaintenanceOpen
from iotex_ops.runbook.maintenance import MaintenanceError, RunInfo
from iotex_ops.runbook.store import RunStore

if TYPE_CHECKING:
    from iotex_ops.network import Network
    from iotex_ops.paging.secret import RoutingKey

__all__ = [
    "MaintenanceError",
    "MaintenanceWindow",
    "PagerAnnouncer",
    "alertmanager_url",
    "expire_dead_runs",
    "from_network",
    "live_runs",
]

QueryRange = Callable[[str, float, float, float], list[dict[str, Any]]]
Query = Callable[[str], list[dict[str, Any]]]


class Announcer(Protocol):
    def change(self, event: Mapping[str, Any]) -> None:
        """Queue one change event (`iotex_ops.paging.events.change`); raise OpsError if it cannot be."""


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _alerts_regex(names: Sequence[str]) -> str:
    import re

    return "|".join(re.escape(n) for n in names)


class MaintenanceWindow:
    """A drill's silences and announcements on one Alertmanager (and PagerDuty, and Prometheus)."""

    def __init__(
        self,
        silences: Silences,
        url: str,
        *,
        announcer: Announcer | None = None,
        query_range: QueryRange | None = None,
        query: Query | None = None,
        grace_s: float = mw.GRACE_S,
        poll_s: float = 1.0,
        source: str | None = None,
        close: Callable[[], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.silences = silences
        self.url = url
        self.announcer = announcer
        self.query_range = query_range
        self.query = query
        self.grace_s = grace_s
        self.poll_s = poll_s
        self.source = source or f"iotex-ops@{socket.gethostname()}"
        self._close = close
        self.clock = clock

    def __repr__(self) -> str:  # the announcer holds a routing key: never shown
        return f"MaintenanceWindow(alertmanager={self.url!r}, announces={self.announcer is not None})"

    # -- the engine's calls --

    def check(self) -> None:
        try:
            self.silences.current()
        except SilenceError as exc:
            raise MaintenanceError(
                f"maintenance window: {exc}: a drill would page people for the alerts it causes on purpose; "
                "start it once Alertmanager answers, or pass --no-maintenance to run it anyway"
            ) from None

    def open(self, run: RunInfo) -> MaintenanceOpen:
        now = self.clock()
        ends = now + timedelta(seconds=run.timeout_s + self.grace_s)
        text = mw.comment(run.run_id, run.network)
        ids: list[str] = []
        try:
            for names, hosts in ((run.scope.host_alerts, run.scope.hosts), (run.scope.network_alerts, None)):
                if names:
                    ids.append(self.silences.create(scoped(names, hosts), starts=now, ends=ends, comment=text))
        except SilenceError as exc:
            self.expire(ids)
            raise MaintenanceError(f"maintenance window of run {run.run_id}: {exc}") from None
        announced = self._announce(
            mw.change_summary(run.drill, run.network, run.run_id), mw.change_details(run, silences=ids), None
        )
        return MaintenanceOpen(silences=tuple(ids), alerts=run.scope.alerts, hosts=run.scope.hosts, alertmanager=self.url,
                               ends_at=_iso(ends), announced=announced)  # fmt: skip

    def expire(self, silence_ids: Sequence[str]) -> tuple[list[str], str | None]:
        done, errors = [], []
        for sid in silence_ids:
            try:
                self.silences.expire(sid)
                done.append(sid)
            except SilenceError as exc:
                errors.append(str(exc))
        return done, ("; ".join(errors) or None)

    def _firing(self, run: RunInfo, series: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The series of the run's expected alerts in its scope (per-host alerts on its hosts only)."""
        hosts = set(run.scope.hosts)
        out = []
        for s in series:
            m = s.get("metric") or {}
            name = m.get("alertname")
            if name in run.scope.network_alerts or (name in run.scope.host_alerts and m.get("host") in hosts):
                out.append(s)
        return out

    def settle(self, run: RunInfo, timeout_s: float) -> None:
        if self.query is None or run.scope.empty:
            return
        promql = f'ALERTS{{alertname=~"{_alerts_regex(run.scope.alerts)}"}}'
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                left = self._firing(run, self.query(promql))
            except OpsError:
                return  # Prometheus unreachable: nothing to wait for that can be known
            if not left or time.monotonic() >= deadline:
                return
            time.sleep(self.poll_s)

    def detect(self, run: RunInfo, until: float) -> dict[str, float]:
        if self.query_range is None or run.scope.empty:
            return {}
        since = run.fault_at if run.fault_at is not None else run.started_at
        if until <= since:
            return {}
        step = max(1.0, (until - since) / 10_000)
        promql = f'ALERTS{{alertstate="firing", alertname=~"{_alerts_regex(run.scope.alerts)}"}}'
        try:
            series = self.query_range(promql, since, until, step)
        except OpsError:
            return {}
        return mw.first_firing(self._firing(run, series), since)

    def announce_end(self, run: RunInfo, *, result: str, silences: Sequence[str], report: str | None) -> bool:
        return self._announce(
            mw.change_summary(run.drill, run.network, run.run_id, result=result),
            mw.change_details(run, silences=silences, result=result, report=report),
            report,
        )

    def _announce(self, summary: str, details: dict[str, Any], report: str | None) -> bool:
        if self.announcer is None:
            return False
        from iotex_ops.paging import events

        links = [{"href": report, "text": "drill report"}] if report else []
        try:
            self.announcer.change(events.change(summary, self.source, custom_details=details, links=links))
        except OpsError:
            return False
        return True

    def close(self) -> None:
        if self._close is not None:
            self._close()


class PagerAnnouncer:
    """Change events through the durable Pager queue (`<state>/pager/changes-<network>.db`): each is queued,
    then delivered within `flush_s` (left in the queue for the next drill otherwise)."""

    def __init__(self, db: Path, routing_key: RoutingKey, url: str, ca_file: str | None = None, flush_s: float = 10.0) -> None:
        self.db, self.url, self.ca_file, self.flush_s = db, url, ca_file, flush_s
        self._key = routing_key

    def __repr__(self) -> str:
        return f"PagerAnnouncer(db={str(self.db)!r}, url={self.url!r}, routing_key=***)"

    def change(self, event: Mapping[str, Any]) -> None:
        from iotex_ops.paging.errors import PagingError
        from iotex_ops.paging.pager import Pager

        db = self.db
        try:
            pager = Pager(db, self._key, self.url, self.ca_file, backoff_max_s=2.0)
        except PagingError:  # another process announces on this network right now: a queue of our own
            db = self.db.with_name(f"{self.db.stem}-{os.getpid()}.db")
            pager = Pager(db, self._key, self.url, self.ca_file, backoff_max_s=2.0)
        try:
            pager.enqueue(event)
            pager.flush(self.flush_s)
        finally:
            pager.close()


# -- from the inventory --


def _monitoring_var(net: Network, name: str) -> Any:
    """A monitoring setting as the monitoring role reads it (the monitoring hosts', else the delegates')."""
    inv = net.inventory
    hosts = list(inv.groups.get("monitoring", ())) or [d.name for d in net.delegates]
    for h in hosts:
        v = inv.raw_vars.get(h, {}).get(name)
        if v not in (None, ""):
            return v
    return None


def alertmanager_url(net: Network) -> str | None:
    """The Alertmanager the drills' silences go to: `iotex_alertmanager_url`, else `monitoring_alertmanager`
    (host:port) when the inventory sets it; None: the inventory names no Alertmanager."""
    url = net.var("iotex_alertmanager_url") or _monitoring_var(net, "iotex_alertmanager_url")
    if not url:
        addr = _monitoring_var(net, "monitoring_alertmanager")
        if not addr:
            return None
        url = str(addr) if "://" in str(addr) else f"http://{addr}"
    return str(url).rstrip("/")


def _announcer(net: Network, store: RunStore) -> PagerAnnouncer | None:
    from iotex_ops.paging.errors import PagingError
    from iotex_ops.paging.secret import ENV_VAR, RoutingKey

    key_file = _monitoring_var(net, "monitoring_pagerduty_routing_key_file")
    try:
        if key_file:
            key = RoutingKey.from_file(str(key_file))
        elif os.environ.get(ENV_VAR):
            key = RoutingKey.from_env()
        else:
            return None
    except PagingError:
        return None  # a key file on the monitoring host only: no change events from here
    url = str(_monitoring_var(net, "monitoring_pagerduty_url") or "https://events.pagerduty.com/v2/enqueue")
    ca = _monitoring_var(net, "monitoring_pagerduty_ca_file")
    return PagerAnnouncer(store.root / "pager" / f"changes-{net.id}.db", key, url, str(ca) if ca else None)


def from_network(net: Network, store: RunStore | None = None, *, transport: Transport | None = None) -> MaintenanceWindow | None:
    """The window of drills on `net`, from its inventory; None when it names no Alertmanager."""
    url = alertmanager_url(net)
    if url is None:
        return None
    store = store if store is not None else RunStore()
    query = query_range = None
    closers: list[Callable[[], None]] = []
    if net.prometheus_url:
        from iotex_ops.prom import Prometheus

        prom = Prometheus(net.prometheus_url, timeout=5, retries=1)
        query, closers = prom.query, [prom.close]

        def query_range(promql: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
            return prom.query_range(promql, start, end, step)

    def close() -> None:
        for c in closers:
            with contextlib.suppress(Exception):
                c()

    return MaintenanceWindow(Silences(transport or url), url, announcer=_announcer(net, store), query_range=query_range,
                             query=query, source=f"iotex-ops/{net.id}", close=close)  # fmt: skip


# -- what dead runs left --


def _alive(holder: Mapping[str, Any]) -> bool:
    if holder.get("machine") not in (None, socket.gethostname()):
        return True  # another machine's process: cannot be checked from here, so taken as alive
    try:
        pid = int(holder.get("pid") or 0)
    except (TypeError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def live_runs(lock_dir: Path, network: str) -> set[str]:
    """The run ids that hold the network's lock or one of its hosts' locks with a live process."""
    out = set()
    for p in [lock_dir / f"{network}.lock", *sorted(lock_dir.glob(f"{network}.host.*.lock"))]:
        try:
            doc = json.loads(p.read_text() or "null")
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and doc.get("run_id") and _alive(doc):
            out.add(str(doc["run_id"]))
    return out


def expire_dead_runs(net: Network, store: RunStore | None = None, *, silences: Silences | None = None) -> list[str]:
    """Expire the silences (createdBy iotex-ops, on this network) of drill runs that are not running: no live
    process holds the network's lock for them, or the run store has their end. The ids expired. Call it when
    a service that runs drills starts (the scheduler), and after a crash. MaintenanceError if Alertmanager
    cannot be reached; nothing to do (an empty list) when the inventory names no Alertmanager."""
    url = alertmanager_url(net)
    if silences is None:
        if url is None:
            return []
        silences = Silences(url)
    store = store if store is not None else RunStore()
    lock_dir = Path(str(net.var("iotex_ops_lock_dir") or store.locks_dir)).expanduser()
    running = live_runs(lock_dir, net.id)
    for run_id in list(running):
        with contextlib.suppress(OpsError, OSError):
            if store.exists(run_id) and store.summary(run_id).finished:
                running.discard(run_id)
    try:
        ours = silences.ours()
        dead = mw.dead_silences(((s.id, s.comment) for s in ours), net.id, running)
        for sid in dead:
            silences.expire(sid)
    except SilenceError as exc:
        raise MaintenanceError(f"expiring dead drills' silences: {exc}") from None
    return dead
