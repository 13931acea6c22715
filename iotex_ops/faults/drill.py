"""`FaultDrill`: a fault drill as a runbook, from the one thing that differs between faults (how to inject and
end it). The runbook modules in runbooks/fault_*.py are a few lines each; a new fault (disk full, a corrupt
database...) is one more `Fault`:

    from iotex_ops.faults import Fault, FaultDrill

    def inject(ctx, d):            # break the victim; return what `end` needs (journaled)
        return {"pid": edge.kill(d)}

    def end(ctx, d, state):        # end the fault (idempotent: also the rollback); say what was done
        ...

    RUNBOOK = FaultDrill(Fault("fault-kill", "kill -9 the victim's node", inject, end)).runbook()

Every fault drill has the same steps (each journaled, so `runbook show` and the report tell the story):

1. **choose**: the victim, at random (seeded; the seed is journaled, `-e seed=N` replays a choice) among the
   delegates the inventory opts in (`iotex_gameday_opt_in: true`), or `-e host=NAME`; refused when it would
   put more than f = floor((n-1)/3) delegates out at once (counting those already out), or when an alert
   already fires on a delegate (the steady state of a game day is a quiet one).
2. **inject** (destructive): the drill route's marker (pages during the drill are marked, see
   iotex_ops/paging/drill_route.py), an optional light load (`tps`, for lost actions), then the fault.
   Its rollback ends the fault (`end`), whatever happened since.
3. **watch**: every `poll_s` while the fault is active, the stop conditions (core.stop_reason: the chain
   stopped finalizing, an alert on another delegate, the victim's missed slots over `missed_budget`): one
   of them ends the fault at once and fails the step, which rolls back. Meanwhile the moments are taken:
   the alert firing on the victim (Prometheus ALERTS), the page (the lab receiver), alertd's remediation
   starting (its /v1/state), the victim finalizing and signing again. A fault with a duration (`freeze_s`,
   `partition_s`) is ended by the drill after it; a kill is ended by whoever brings the node back (alertd).
4. **settle**: the victim's alerts resolve, the load stops and its lost actions are counted, the marker goes.

The measures are the scorecard (core.scorecard) plus the timeline and the pages (where they went), and the
run history keeps them: `iotex-ops gameday report` shows the trend.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iotex_ops.errors import OpsError
from iotex_ops.faults import core, edge
from iotex_ops.network import Delegate
from iotex_ops.paging import drill_route
from iotex_ops.runbook import Param, Runbook, RunContext, Step, checks

# the alert each fault is expected to raise on its victim
DOWN_ALERTS = ("DelegateDown", "DelegateMissingSlots", "DelegateLagging")
GAMEDAY_LOCK = "gameday"
# background loads of running drills (not journaled: a resumed run measures no lost actions)
_LOADS: dict[str, Any] = {}


@dataclass(frozen=True)
class Fault:
    """One kind of fault. `inject(ctx, victim) -> state` breaks the victim and returns what `end` needs (JSON;
    its key `at`, when given, is the unix time the fault struck: the figures count from there);
    `end(ctx, victim, state) -> sentence` ends it, idempotently (it is also the rollback, and may find the
    victim already mended by alertd). `duration_param`: the parameter holding how long the drill keeps the
    fault before it ends it (None: the fault lasts until the victim is brought back, by alertd or the rollback).
    `preflight(ctx) -> problems` refuses what this fault cannot do here (e.g. a partition without netns)."""

    name: str
    summary: str
    inject: Callable[[RunContext, Delegate], Mapping[str, Any]]
    end: Callable[[RunContext, Delegate, Mapping[str, Any]], str]
    duration_param: str | None = None
    params: tuple[Param, ...] = ()
    preflight: Callable[[RunContext], list[str]] | None = None
    alerts: tuple[str, ...] = DOWN_ALERTS
    doc: str = ""


COMMON_PARAMS = (
    Param("host", str, default="", help="the victim (default: drawn at random among the opted-in delegates)"),
    Param("seed", int, default=0, help="the victim draw's seed (0: a fresh one, journaled to replay it)", minimum=0),
    Param("victims", int, default=1, help="faults at once (more than 1 needs concurrent=true; at most f)", minimum=1),
    Param("concurrent", bool, default=False, help="allow more than one victim at once"),
    Param("missed_budget", int, default=6, help="stop condition: slots a victim may miss in the epoch", minimum=0),
    Param(
        "stall_s",
        float,
        default=0.0,
        help="stop condition: the chain stopped finalizing after this long (0: 5 block intervals, 4 s at least)",
        minimum=0,
    ),
    Param("recover_s", float, default=60.0, help="how long the victim may take to finalize again after the fault", minimum=1),
    Param("tps", float, default=5.0, help="light load during the fault, for lost actions (0: none)", minimum=0),
    Param("accounts_file", str, default="", help="funded accounts for the load (default: the lab's)"),
    Param("poll_s", float, default=0.25, help="how often the stop conditions and moments are read", minimum=0.05),
    Param("settle_s", float, default=30.0, help="how long to wait for the victim's alerts to resolve afterwards", minimum=0),
)


def _names(ctx: RunContext) -> list[str]:
    return [d.name for d in ctx.delegates]


def _hostvars(ctx: RunContext) -> dict[str, Mapping[str, Any]]:
    return {d.name: d.vars for d in ctx.delegates}


def _victims(ctx: RunContext) -> list[Delegate]:
    return [ctx.network.delegate(n) for n in ctx.recall("victims") or []]


def _others(ctx: RunContext) -> list[Delegate]:
    vs = set(ctx.recall("victims") or [])
    return [d for d in ctx.delegates if d.name not in vs]


def _limits(ctx: RunContext) -> core.Limits:
    stall = float(ctx.params["stall_s"])
    if stall <= 0:
        interval = float(ctx.recall("block_interval_s") or 1.0)
        stall = max(4.0, 5 * interval)
    return core.Limits(stall_s=stall, missed_budget=int(ctx.params["missed_budget"]))


def _already_out(ctx: RunContext) -> list[str]:
    cs = ctx.network.chains(timeout=edge.API_TIMEOUT_S)
    return sorted(n for n, c in cs.items() if c is None or not c.get("participating") or c.get("paused"))


def _accounts(ctx: RunContext) -> Path | None:
    from iotex_ops.lab import lab as lab_mod

    return lab_mod.funded_accounts_file(str(ctx.params["accounts_file"]), ctx.network.inventory.path)


def _marker(ctx: RunContext) -> Path:
    from iotex_ops.runbook.store import default_state_dir

    locks = ctx.network.var("iotex_ops_lock_dir") or (default_state_dir() / "locks")
    return drill_route.marker_path(Path(str(locks)).expanduser(), ctx.network.id)


class FaultDrill:
    """The builder: `FaultDrill(fault).runbook()` is the fault's runbook (see the module's doc)."""

    def __init__(self, fault: Fault) -> None:
        self.fault = fault

    # -- steps --

    def preflight(self, ctx: RunContext) -> list[str]:
        problems: list[str] = []
        if not ctx.network.prometheus_url:
            problems.append(
                "a fault drill needs Prometheus (iotex_prometheus_url in the inventory): it measures time to detect there"
            )
        try:
            self._choose(ctx, seed=int(ctx.params["seed"]) or 1, dry=True)
        except OpsError as exc:
            problems.append(str(exc))
        if self.fault.preflight is not None:
            problems.extend(self.fault.preflight(ctx))
        return problems

    def _choose(self, ctx: RunContext, seed: int, dry: bool = False) -> core.Choice:
        names = _names(ctx)
        return core.choose_victims(
            names,
            core.opted_in(_hostvars(ctx)),
            seed=seed,
            count=int(ctx.params["victims"]),
            already_out=[] if dry else _already_out(ctx),
            host=str(ctx.params["host"]),
            allow_concurrent=bool(ctx.params["concurrent"]),
        )

    def choose(self, ctx: RunContext) -> None:
        if ctx.recall("victims"):
            ctx.log(f"victims already chosen: {', '.join(ctx.recall('victims'))}")  # a resumed run keeps its choice
            return
        seed = int(ctx.params["seed"]) or int.from_bytes(os.urandom(4), "big") or 1
        choice = self._choose(ctx, seed)
        firing = [a for a in edge.firing_alerts(ctx.query) if a.host in _names(ctx) and a.name not in core.NEUTRAL_ALERTS]
        if firing:
            raise core.FaultError(
                "alerts already fire on delegates: "
                + ", ".join(sorted({a.describe() for a in firing}))
                + ": a game day starts from a quiet network"
            )
        alertd = edge.Alertd.of(ctx.network)
        pages = edge.open_pages(alertd.state() if alertd else None, _names(ctx))
        if pages:
            raise core.FaultError(
                "alertd still has a page open about a delegate (" + ", ".join(pages) + "): a fault there would be appended "
                "to that incident and page nobody; wait for it to resolve (`iotex-ops gameday run` waits by itself)"
            )
        chain = ctx.delegates[0].try_chain(edge.API_TIMEOUT_S) or {}
        ctx.remember("block_interval_s", float(chain.get("block_interval_ms") or 1000) / 1000)
        ctx.event("victims", **choice.to_json())
        ctx.remember("victims", list(choice.victims))
        ctx.remember("seed", choice.seed)
        how = "named" if choice.forced else f"drawn with seed {choice.seed} among {', '.join(choice.candidates)}"
        ctx.log(f"victim(s): {', '.join(choice.victims)} ({how}; f = {choice.f} of {choice.delegates})")

    def inject(self, ctx: RunContext) -> None:
        victims = _victims(ctx)
        names = [d.name for d in victims]
        until = time.time() + float(ctx.params["recover_s"]) + float(ctx.params["settle_s"]) + self._duration(ctx) + 60
        drill_route.write(_marker(ctx), ctx.run_id, ctx.runbook, names, until)
        ctx.event("drill_route", route=drill_route.ROUTE, marker=str(_marker(ctx)), until=until)
        ctx.log(f"pages until the drill ends go to the drill route (marked {drill_route.PREFIX} {ctx.run_id}])")
        self._start_load(ctx)
        others = _others(ctx)
        ctx.remember("top_before", edge.top(ctx.network, others))
        ops = edge.operators(ctx.network, names)
        ctx.remember("operators", ops)
        prod = edge.productivity(ctx.network, ops, others)
        ctx.remember("productivity_before", None if prod is None else [prod[0], prod[1]])
        states: dict[str, Any] = {}
        ctx.remember("fault_at", time.time())  # until the fault says when it struck (a crashed run has this)
        fault_at: float | None = None
        for d in victims:
            state = dict(self.fault.inject(ctx, d))
            # the moment the fault struck: `at` from the fault (right after its signal), else now
            at = float(state.pop("at", time.time()))
            fault_at = at if fault_at is None else min(fault_at, at)
            states[d.name] = state
            ctx.remember("fault_state", states)  # journaled at once: the rollback of a crashed run needs it
        ctx.remember("fault_at", fault_at)
        ctx.event("fault_injected", fault=self.fault.name, victims=names, at=fault_at, state=states)
        ctx.log(f"{self.fault.name}: injected on {', '.join(names)}")

    def end(self, ctx: RunContext) -> None:
        """End the fault on every victim (the inject step's rollback, and the watch's stop)."""
        states = ctx.recall("fault_state") or {}
        for d in _victims(ctx):
            if d.name in states:
                try:
                    said = self.fault.end(ctx, d, states[d.name])
                except OpsError as exc:
                    said = f"could not end the fault: {exc}"
                ctx.log(f"{d.name}: {said}")
        if ctx.recall("fault_end_at") is None:
            ctx.remember("fault_end_at", time.time())
            ctx.event("fault_ended", victims=list(states))

    def rollback(self, ctx: RunContext) -> None:
        self.end(ctx)
        self._stop_load(ctx)
        drill_route.remove(_marker(ctx), ctx.run_id)

    def _duration(self, ctx: RunContext) -> float:
        p = self.fault.duration_param
        return float(ctx.params[p]) if p else 0.0

    def watch(self, ctx: RunContext) -> None:
        victims, others = _victims(ctx), _others(ctx)
        names, all_names = [d.name for d in victims], _names(ctx)
        fault_at = float(ctx.recall("fault_at"))
        limits, poll = _limits(ctx), float(ctx.params["poll_s"])
        duration = self._duration(ctx) if self.fault.duration_param else None
        recover_s = float(ctx.params["recover_s"])
        top_before = ctx.recall("top_before")
        # back once it signs a block above top+1: the old process may have signed top+1 before the fault
        since = None if top_before is None else int(top_before) + 2
        prod_before = ctx.recall("productivity_before")
        ops: dict[str, str] = ctx.recall("operators") or {}
        stall = core.StallClock(fault_at, top_before)
        alertd, receiver = edge.Alertd.of(ctx.network), edge.Receiver.of(ctx.network)
        moments: dict[str, float | None] = {k: ctx.recall(f"moment_{k}") for k in core.MOMENTS}
        missed: dict[str, int] = {}
        pages: list[dict[str, Any]] = []
        remediations: list[dict[str, Any]] = []
        escalated = False
        last_prod = 0.0
        old_epoch_end: dict[str, int] = {}

        def note(key: str, at: float | None, **fields: Any) -> None:
            if at is not None and moments.get(key) is None:
                moments[key] = at
                ctx.remember(f"moment_{key}", at)
                ctx.event(f"moment_{key}", at=at, after_s=round(at - fault_at, 3), **fields)
                ctx.log(f"{core.MOMENTS[key]} after {at - fault_at:.2f}s")

        def read_missed() -> None:
            """The victims' slots missed since the fault, across an epoch boundary too."""
            if prod_before is None:
                return
            prod = edge.productivity(ctx.network, ops, others)
            if prod is None:
                return
            e0, before = int(prod_before[0]), prod_before[1]
            if prod[0] != e0 and not old_epoch_end:
                ended = edge.productivity(ctx.network, ops, others, epoch=e0)
                old_epoch_end.update(ended[1] if ended else {})
            for n, now_missed in prod[1].items():
                missed[n] = core.missed_since((e0, int(before.get(n, 0))), (prod[0], now_missed), old_epoch_end.get(n))

        while True:
            now = time.time()
            alerts = edge.firing_alerts(ctx.query)
            for a in alerts:
                if a.host in names:
                    note("alert", now, alert=a.name, host=a.host)
            if now - last_prod >= 1.0:
                last_prod = now
                read_missed()
            obs = core.Observation(now, edge.top(ctx.network, others), tuple(alerts), dict(missed))
            stalled = stall.feed(obs)
            fault_active = moments.get("recovered") is None
            if fault_active:
                reason = core.stop_reason(obs, stalled, names, all_names, limits)
                if reason is not None:
                    ctx.event("stop_condition", reason=reason, after_s=round(now - fault_at, 3))
                    ctx.remember("stopped_by", reason)
                    self._keep(ctx, moments, missed, pages, remediations, escalated)
                    self.end(ctx)
                    raise core.FaultError(f"stop condition: {reason}: the fault was ended at once and rolled back")
            if duration is not None and ctx.recall("fault_end_at") is None and now - fault_at >= duration:
                self.end(ctx)
            if moments.get("remediation") is None or not escalated:
                st = alertd.state() if alertd else None
                first, remediations = edge.remediation_started(st, names, fault_at - 1) if st else (None, remediations)
                note("remediation", first)
                escalated = escalated or edge.escalated(st, names, fault_at)
            if receiver is not None and (moments.get("page") is None or moments.get("remediation") is None):
                pages = edge.pages_for(receiver.incidents(), names, fault_at - 1) or pages
                note("page", pages[0]["at"] if pages else None, drill_route=pages[0]["drill_route"] if pages else None)
            # a victim with a timed fault is not judged before the fault ends or a remediation replaced it
            judged = duration is None or ctx.recall("fault_end_at") is not None or moments.get("remediation") is not None
            if moments.get("recovered") is None and judged and all(self._back(ctx, d.name, since) for d in victims):
                note("recovered", time.time())
            recovered_at = moments.get("recovered")
            if recovered_at is not None:
                if duration is not None and ctx.recall("fault_end_at") is None:
                    self.end(ctx)  # recovered before the fault's time was up (mended by alertd): nothing left to end
                grace = recovered_at + 5.0  # the page and the remediation's start are seconds behind
                seen_all = moments.get("page") is not None or receiver is None
                if (seen_all and (moments.get("remediation") is not None or alertd is None)) or time.time() > grace:
                    read_missed()
                    break
            ended = ctx.recall("fault_end_at")
            deadline = (float(ended) if ended is not None else fault_at + (duration or 0)) + recover_s
            if moments.get("recovered") is None and time.time() > deadline:
                self._keep(ctx, moments, missed, pages, remediations, escalated)
                raise core.FaultError(
                    f"{', '.join(names)} did not finalize again within {recover_s:g}s of the fault"
                    + ("" if moments.get("remediation") else " (no remediation started: is alertd running?)")
                )
            time.sleep(poll)
        self._keep(ctx, moments, missed, pages, remediations, escalated)

    @staticmethod
    def _back(ctx: RunContext, name: str, since: int | None) -> bool:
        """The victim answers, is in step with its peers and signed a block above `since`."""
        return not ctx.network.standing(name, since=since, timeout=edge.API_TIMEOUT_S).problems(3, since)

    def _keep(
        self,
        ctx: RunContext,
        moments: Mapping[str, float | None],
        missed: Mapping[str, int],
        pages: list[dict[str, Any]],
        remediations: list[dict[str, Any]],
        escalated: bool,
    ) -> None:
        ctx.remember("missed", dict(missed))
        ctx.remember("pages", pages)
        ctx.remember("remediations", remediations)
        ctx.remember("escalated", escalated or any(p.get("escalation") for p in pages))

    def settle(self, ctx: RunContext) -> None:
        names = [d.name for d in _victims(ctx)]
        deadline = time.monotonic() + float(ctx.params["settle_s"])
        while time.monotonic() < deadline:
            firing = [a for a in edge.firing_alerts(ctx.query) if a.host in names]
            if not firing:
                ctx.log(f"{', '.join(names)}: no alert firing any more")
                break
            time.sleep(0.5)
        else:
            ctx.log(f"alerts still firing after {ctx.params['settle_s']}s: the next drill's check will wait for them")
        self._stop_load(ctx)
        drill_route.remove(_marker(ctx), ctx.run_id)

    # -- the light load (lost actions) --

    def _start_load(self, ctx: RunContext) -> None:
        tps = float(ctx.params["tps"])
        if tps <= 0:
            return
        accounts = _accounts(ctx)
        if accounts is None or not accounts.is_file():
            ctx.log("no funded accounts (accounts_file): lost actions are not measured")
            return
        from iotex_ops.traffic import BackgroundLoad

        load = BackgroundLoad([d.api_url for d in ctx.delegates], accounts, tps=tps, batch=max(1, int(tps // 2)), max_seconds=900)
        _LOADS[ctx.run_id] = load.start()
        ctx.remember("load_started_at", time.time())
        time.sleep(min(1.0, 2.0 / tps))  # the first batches are out before the fault

    def _stop_load(self, ctx: RunContext) -> None:
        load = _LOADS.pop(ctx.run_id, None)
        if load is None:
            return
        load.stop()
        try:
            lost = load.lost(since=float(ctx.recall("load_started_at") or 0), wait=20.0)
        except OpsError as exc:
            ctx.log(f"lost actions not counted: {exc}")
            return
        ctx.remember("load", lost)
        ctx.log(f"load: {lost['offered']} offered, {lost['accepted']} accepted, {lost['final']} final, {lost['lost']} lost")

    # -- the measures --

    def measure(self, ctx: RunContext) -> dict[str, Any]:
        fault_at = ctx.recall("fault_at")
        if fault_at is None:
            return {"fault": self.fault.name, "injected": False}
        moments = {k: ctx.recall(f"moment_{k}") for k in core.MOMENTS}
        missed = ctx.recall("missed") or {}
        load = ctx.recall("load")
        card = core.scorecard(
            float(fault_at),
            moments,
            missed_slots=sum(missed.values()) if missed else None,
            lost_actions=int(load["lost"]) if isinstance(load, Mapping) else None,
            escalated=bool(ctx.recall("escalated")),
            ended_at=ctx.recall("fault_end_at"),
        )
        pages = ctx.recall("pages") or []
        route = (
            "drill route: marked pages on the lab receiver" if pages and all(p.get("drill_route") for p in pages)
            else "on-call route: a page was NOT marked for the drill" if pages
            else "no page seen"
        )  # fmt: skip
        return {
            "fault": self.fault.name,
            "injected": True,
            "victims": ctx.recall("victims"),
            "seed": ctx.recall("seed"),
            **card,
            "timeline": core.timeline(float(fault_at), moments, ctx.recall("fault_end_at")),
            "pages": pages,
            "page_route": route,
            "remediations": ctx.recall("remediations") or [],
            "missed_by_victim": missed,
            "load": load,
            "stopped_by": ctx.recall("stopped_by"),
        }

    # -- the runbook --

    def runbook(self) -> Runbook:
        f = self.fault
        return Runbook(
            name=f.name,
            summary=f.summary,
            params=(*COMMON_PARAMS, *f.params),
            preflight=self.preflight,
            steady_state=(checks.finalizing(blocks=2, within=15),),
            steps=(
                Step("choose", self.choose, "choose the victim: seeded draw among the opted-in delegates, within f", timeout=30),
                Step(
                    "inject",
                    self.inject,
                    f"inject the fault: {f.summary}",
                    destructive=True,
                    rollback=self.rollback,
                    rollback_description="end the fault (and the drill route's marker, the load)",
                    timeout=60,
                ),
                Step(
                    "watch",
                    self.watch,
                    "stop conditions while the fault is active; detect, page, remediation, recovery",
                    timeout=900,
                ),
                Step("settle", self.settle, "the victim's alerts resolve; lost actions counted; drill route closed", timeout=300),
            ),
            measure=self.measure,
            doc=f.doc,
            out_of_consensus=1,
            fault_alerts=f.alerts,
            lock_scope=GAMEDAY_LOCK,
        )
