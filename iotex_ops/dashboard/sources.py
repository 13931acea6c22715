"""What the dashboard reads and does, through the toolkit's own readers (the edge around views.py).

Nothing here parses a journal, a node's JSON or a database of its own: the delegates through
`network.Network` (each `Delegate.api`, a `NodeClient`), Prometheus through `prom.Prometheus`, runs through
`RunStore` and the one fold, alertd through its `/v1/state` and the lab's receiver through its client (as a
fault drill reads them: `faults.edge.Alertd`, `faults.edge.Receiver`), schedules through `schedule.model`,
`schedule.state` and the scheduler's `SchedulerDB`, approvals through `schedule.service.approve`, a page's
acknowledgement through the PagerDuty client. Every call blocks (the app runs it in a thread) and returns
what it could read: a source that does not answer is said on the page, never an exception.

Actions are journaled (`<state>/dashboard/actions.jsonl`, append-only, 0600) with who did them, from where,
what, and how it ended.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from iotex_ops import network as network_mod
from iotex_ops.dashboard import views
from iotex_ops.dashboard.errors import DashboardError
from iotex_ops.errors import OpsError
from iotex_ops.nodeapi import Block, ChainInfo, Delegates, NodeApiError
from iotex_ops.prom import Prometheus, PrometheusError
from iotex_ops.runbook.journal import Journal
from iotex_ops.runbook.store import RunStore

API_TIMEOUT_S = 1.0  # a dead node answers "connection refused" at once; a frozen one must not hold the page
RECENT_RUNS = 15


@dataclass
class _Cached:
    key: tuple[int, int]  # the journal's (size, mtime_ns): a run is folded again only when its journal grew
    view: views.RunView


@dataclass
class Sources:
    """The readers of one network. `stores`: label -> RunStore (the operator's and scheduler's runs; alertd's)."""

    net: network_mod.Network
    stores: dict[str, RunStore]
    scheduler_state_dir: Path | None = None
    actions_journal: Path | None = None
    _runs: dict[tuple[str, str], _Cached] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(max_workers=16))

    @classmethod
    def open(
        cls,
        inventory: Path,
        *,
        state_dir: Path,
        alertd_state_dir: Path | None = None,
        scheduler_state_dir: Path | None = None,
    ) -> Sources:
        try:
            net = network_mod.load(inventory)
        except OpsError as exc:
            raise DashboardError(f"cannot read the inventory {inventory}: {exc}") from None
        stores = {"runs": RunStore(state_dir)}
        if alertd_state_dir is not None:
            stores["alertd"] = RunStore(alertd_state_dir)
        return cls(net, stores, scheduler_state_dir or state_dir, state_dir / "dashboard" / "actions.jsonl")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.net.close()

    @property
    def network(self) -> str:
        return self.net.id

    # -- the network now --

    def _chain(self, d: network_mod.Delegate) -> tuple[ChainInfo | None, str | None]:
        try:
            return d.api.chain(timeout=API_TIMEOUT_S), None
        except NodeApiError as exc:
            return None, str(exc)

    def network_now(self) -> views.NetworkView:
        delegates = list(self.net.delegates)
        chains = list(self._pool.map(self._chain, delegates))
        answering = [(d, c) for d, (c, _) in zip(delegates, chains, strict=True) if c is not None]
        books: Delegates | None = None
        blocks: list[Block] = []
        if answering:
            d, c = max(answering, key=lambda dc: dc[1].finalized_height if dc[1] else 0)
            assert c is not None
            with contextlib.suppress(NodeApiError):
                books = d.api.delegates(timeout=API_TIMEOUT_S)
            with contextlib.suppress(NodeApiError):
                top = c.finalized_height
                blocks = d.api.blocks(max(1, top - views.TPS_BLOCKS), top, timeout=API_TIMEOUT_S)
        rows = [(d.name, d.spec.ansible_host, c, err) for d, (c, err) in zip(delegates, chains, strict=True)]
        return views.network_view(self.network, rows, now=time.time(), books=books, blocks=blocks)

    # -- alerts and incidents --

    def alerts(self) -> views.AlertsView:
        from iotex_ops.faults import edge

        firing: list[dict[str, Any]] | None = None
        if self.net.prometheus_url:
            try:
                with Prometheus(self.net.prometheus_url, timeout=2, retries=0) as p:
                    firing = p.query('ALERTS{alertstate="firing"}')
            except PrometheusError:
                firing = None
        alertd = edge.Alertd.of(self.net)
        receiver = edge.Receiver.of(self.net)
        return views.alerts_view(
            firing,
            alertd.state() if alertd else None,
            receiver.incidents() if receiver else None,
            now=time.time(),
            alertd_configured=alertd is not None,
        )

    # -- runs --

    def _lock_dir(self) -> Path:
        return Path(str(self.net.var("iotex_ops_lock_dir") or self.stores["runs"].locks_dir)).expanduser()

    def runs(self, recent: int = RECENT_RUNS) -> list[views.RunView]:
        """Every run not finished, and the `recent` newest finished ones, newest first, over every store."""
        from iotex_ops.schedule.maintenance import live_runs

        live = live_runs(self._lock_dir(), self.network)
        now = time.time()
        out: list[views.RunView] = []
        for label, store in self.stores.items():
            # run ids begin with their start time: the newest 200 hold every run worth a look (an unfinished one
            # older than that is history: `runbook runs` lists it)
            for run_id in store.ids()[-200:]:
                v = self._run(label, store, run_id, now, run_id in live)
                if v is not None:
                    out.append(v)
        out.sort(key=lambda v: (v.started_at or 0, v.run_id), reverse=True)
        running = [v for v in out if v.status in ("running", "unfinished")]
        done = [v for v in out if v.status not in ("running", "unfinished")][:recent]
        return running + done

    def _run(self, label: str, store: RunStore, run_id: str, now: float, alive: bool) -> views.RunView | None:
        rd = store.dir(run_id)
        try:
            st = rd.journal.stat()
        except OSError:
            return None
        key = (st.st_size, st.st_mtime_ns)
        with self._lock:
            cached = self._runs.get((label, run_id))
        if cached is not None and cached.key == key and cached.view.status not in ("running", "unfinished"):
            return cached.view
        try:
            state = store.state(run_id)
            summary = store.summary(run_id)
        except (OSError, OpsError):
            return None
        v = views.run_view(summary, state, store=label, now=now, alive=alive, has_report=rd.report_html.is_file())
        with self._lock:
            self._runs[(label, run_id)] = _Cached(key, v)
        return v

    def run(self, label: str, run_id: str) -> views.RunView | None:
        store = self.stores.get(label)
        if store is None:
            return None
        from iotex_ops.schedule.maintenance import live_runs

        try:
            store.dir(run_id)
        except OpsError:
            return None
        return self._run(label, store, run_id, time.time(), run_id in live_runs(self._lock_dir(), self.network))

    def report_path(self, label: str, run_id: str) -> Path | None:
        store = self.stores.get(label)
        if store is None:
            return None
        try:
            p = store.dir(run_id).report_html
        except OpsError:
            return None
        return p if p.is_file() else None

    # -- drills --

    def _drills(self) -> tuple[Any, list[str]]:
        from iotex_ops.schedule.model import Drills, drills_file, load

        path = drills_file(self.net.inventory.path)
        if not path.is_file():
            return Drills(str(path)), [f"no drill schedules: {path} does not exist"]
        try:
            drills, problems = load(path)
        except OpsError as exc:
            return Drills(str(path)), [str(exc)]
        return drills, [str(p) for p in problems]

    def drills(self, days: int = 7) -> views.DrillsView:
        from iotex_ops.schedule import history as hist
        from iotex_ops.schedule.records import SchedulerDB, db_path
        from iotex_ops.schedule.state import ScheduleState
        from iotex_ops.schedule.timing import period_s, run_id, upcoming

        now = datetime.now(UTC)
        drills, problems = self._drills()
        suspended: dict[str, Any] = {}
        with contextlib.suppress(OpsError):
            if self.scheduler_state_dir is not None:
                suspended = {k: v.as_dict() for k, v in ScheduleState(self.scheduler_state_dir, self.network).suspended().items()}
        rows = []
        periods: dict[str, float | None] = {}
        for s in drills.schedules:
            nxt = upcoming(s, now, now + timedelta(days=days), suspended=s.name in suspended, shared_blackouts=drills.blackouts,
                           limit=3)  # fmt: skip
            rows.append(views.ScheduleRow(s.name, s.drill, s.cron, s.timezone, s.enabled, s.approval, suspended.get(s.name),
                                          tuple({"run_id": run_id(s, u.at), **u.as_dict()} for u in nxt)))  # fmt: skip
            if s.enabled:
                p = period_s(s, now)
                cur = periods.get(s.drill)
                periods[s.drill] = p if cur is None else (min(cur, p) if p is not None else cur)
        sched_runs: list[dict[str, Any]] = []
        if self.scheduler_state_dir is not None:
            path = db_path(self.scheduler_state_dir, self.network)
            if path.is_file():
                try:
                    db = SchedulerDB(path, readonly=True)
                    try:
                        for r in db.runs()[-50:]:
                            a = db.approval(r.run_id)
                            sched_runs.append({**r.as_dict(), "approval": a.as_dict() if a else None})
                    finally:
                        db.close()
                except (OpsError, OSError) as exc:
                    problems.append(f"the scheduler's state: {exc}")
        need = {s.name for s in drills.schedules if s.approval}
        pending = views.pending_approvals(sched_runs, need)
        active = [r for r in sched_runs if r["status"] in ("due", "waiting", "running")]
        rows_hist = hist.history(self.stores["runs"], since=time.time() - 90 * 86400)
        drill_names = {s.drill for s in drills.schedules}
        rows_hist = [r for r in rows_hist if r.runbook in drill_names or r.run_id in {x["run_id"] for x in sched_runs}]
        cards = hist.scorecards(rows_hist, now=time.time(), periods=periods)
        return views.DrillsView(
            tuple(rows), tuple(pending), tuple(active), tuple(reversed(sched_runs[-15:])),
            tuple(c.as_dict() for c in cards), views.drill_plots(rows_hist), tuple(problems),
        )  # fmt: skip

    # -- charts --

    def charts(self, window_s: float) -> dict[str, Any]:
        url = self.net.prometheus_url
        if not url:
            return {"error": "the inventory names no Prometheus (iotex_prometheus_url)"}
        end = time.time()
        start = end - window_s
        step = views.chart_step(window_s)
        out: dict[str, Any] = {"window_s": window_s, "step_s": step, "charts": {}}
        try:
            with Prometheus(url, timeout=5, retries=0) as p:
                for key, (title, q, name) in views.CHARTS.items():
                    out["charts"][key] = views.series(title, p.query_range(q, start, end, step), name=name).as_dict()
        except PrometheusError as exc:
            return {"error": str(exc)}
        return out

    # -- actions (journaled) --

    def _journal(self, action: str, by: str, client: str, ok: bool, detail: str, **what: Any) -> None:
        if self.actions_journal is None:
            return
        j = Journal(self.actions_journal)
        try:
            j.write(action, by=by, client=client, ok=ok, detail=detail, network=self.network, **what)
        finally:
            j.close()

    def act(self, action: str, args: dict[str, str], *, by: str, client: str) -> str:
        """Do one action; its outcome in words. DashboardError (journaled too) when it is refused."""
        handlers = {"approve": self._approve, "suspend": self._suspend, "resume": self._resume, "acknowledge": self._acknowledge}
        fn = handlers.get(action)
        if fn is None:
            raise DashboardError(f"no such action {action!r}; the actions are {', '.join(handlers)}")
        try:
            done = fn(args, by)
        except OpsError as exc:
            self._journal(action, by, client, False, str(exc), **args)
            raise DashboardError(f"{action} refused: {exc}") from None
        self._journal(action, by, client, True, done, **args)
        return done

    def _scheduler_dir(self) -> Path:
        if self.scheduler_state_dir is None:
            raise DashboardError("the dashboard was started without the scheduler's state dir")
        return self.scheduler_state_dir

    def _approve(self, args: dict[str, str], by: str) -> str:
        from iotex_ops.schedule import service
        from iotex_ops.schedule.records import SchedulerDB, db_path

        rid = args.get("run_id", "")
        drills, problems = self._drills()
        if not drills.schedules:
            raise DashboardError("; ".join(problems) or "no schedules")
        db = SchedulerDB(db_path(self._scheduler_dir(), self.network))
        try:
            a = service.approve(drills, db, rid, by=by, now=time.time(), note="approved on the dashboard")
        finally:
            db.close()
        return f"{rid} approved by {a.by}; the scheduler starts it at its time"

    def _suspend(self, args: dict[str, str], by: str) -> str:
        from iotex_ops.schedule.state import ScheduleState

        name = args.get("name", "")
        self._drills()[0].schedule(name)  # an unknown name is refused, naming the known ones
        reason = args.get("reason", "") or "on the dashboard"
        s = ScheduleState(self._scheduler_dir(), self.network).suspend(name, by=by, now=datetime.now(UTC), reason=reason)
        return f"{name} suspended by {s.by}"

    def _resume(self, args: dict[str, str], by: str) -> str:
        from iotex_ops.schedule.state import ScheduleState

        name = args.get("name", "")
        self._drills()[0].schedule(name)
        lifted = ScheduleState(self._scheduler_dir(), self.network).resume(name)
        return f"{name} resumed" if lifted else f"{name} was not suspended"

    def _acknowledge(self, args: dict[str, str], by: str) -> str:
        """A page acknowledged through the PagerDuty Events API, as alertd sends its own: the inventory's
        pager URL, routing key file and CA (the lab's receiver, or PagerDuty itself)."""
        from iotex_ops.faults.edge import monitoring_vars
        from iotex_ops.paging import events as ev
        from iotex_ops.paging.client import deliver, make_client
        from iotex_ops.paging.secret import RoutingKey

        key = args.get("dedup_key", "")
        if not key:
            raise DashboardError("no page given (dedup_key)")
        v = monitoring_vars(self.net)
        url, key_file = v.get("monitoring_pagerduty_url"), v.get("monitoring_pagerduty_routing_key_file")
        if not url or not key_file:
            raise DashboardError("the inventory names no PagerDuty URL and routing key file (monitoring_pagerduty_*)")
        ca = v.get("monitoring_pagerduty_ca_file")
        client = make_client(RoutingKey.from_file(str(key_file)), str(url), str(ca) if ca else None)
        try:
            out = deliver(client, ev.acknowledge(key))
        finally:
            client.close()
        if not out.accepted:
            raise DashboardError(f"the acknowledgement was not accepted: {out.message}")
        return f"page {key} acknowledged by {by}"


def client_of(peer: Any) -> str:
    """A request's peer as the journal records it."""
    if isinstance(peer, tuple) and peer:
        return ":".join(str(p) for p in peer[:2])
    return str(peer or "")


def user_default() -> str:
    try:
        import getpass

        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "operator")
