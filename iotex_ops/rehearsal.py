"""The rehearsal: the six drills in order on the lab, under a bounded background load, with one report.

bootstrap (a new chain) -> first-aid -> hotfix-compatible -> hotfix-incompatible -> rollback-recovery -> flood.
Each drill is a normal runbook run (its own journal and report); the rehearsal adds the load, checks that
no transaction the network accepted during a drill was lost, and writes a combined report.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from iotex_ops import network as network_mod
from iotex_ops.errors import OpsError
from iotex_ops.lab import lab as lab_mod
from iotex_ops.nodeapi import NodeClient
from iotex_ops.runbook import Engine, RunResult, loader
from iotex_ops.runbook.events import Event, Phase, RunEnd, RunFailing, StepDone, StepEnd
from iotex_ops.runbook.store import RunStore, default_state_dir
from iotex_ops.traffic import BackgroundLoad

DRILLS = ("bootstrap", "first-aid", "hotfix-compatible", "hotfix-incompatible", "rollback-recovery", "flood")
# drills after which every transaction accepted meanwhile must be final: all of them under load (a node's
# mempool outlives its process since the mempool journal, so the drills that stop every node lose nothing either)
NO_LOSS = ("first-aid", "hotfix-compatible", "hotfix-incompatible", "rollback-recovery", "flood")
# drills that run honest load of their own (the flood measures its honest transfers' latency with and without
# the flood, from the same funded accounts): the background load is held for the whole drill, and the row's
# offered, final and lost are the drill's own honest load's
OWN_LOAD = ("flood",)
# rollback-recovery re-submits the displaced actions: new traffic is held from the moment the nodes stop
# until those are re-submitted, or new actions would take their nonces (as an operator holds the gateway)
HOLD_TRAFFIC = {"rollback-recovery": ("stop", "resubmit")}


# the background load's default rate: the Mainnet Rehearsal drilled under 300+ finalized TPS
DEFAULT_LOAD_TPS = 300.0


class RehearsalError(OpsError):
    """The rehearsal could not start (no lab, a lab of another shape, an old lab without drill releases)."""


@dataclass
class DrillRow:
    name: str
    result: str
    duration_s: float
    downtime_s: float | None = None
    blocks_finalized: int | None = None
    run_id: str | None = None
    started: float = 0.0
    ended: float = 0.0
    report_html: str | None = None
    error: str | None = None
    lost_actions: int | None = None
    offered_actions: int | None = None  # the background load's transfers offered while the drill ran
    final_actions: int | None = None  # of those the network accepted, final after the drill
    measures: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "result": self.result,
            "duration_s": round(self.duration_s, 3),
            "downtime_s": self.downtime_s,
            "blocks_finalized": self.blocks_finalized,
            "offered_actions": self.offered_actions,
            "final_actions": self.final_actions,
            "lost_actions": self.lost_actions,
            "run_id": self.run_id,
            "started": self.started,
            "ended": self.ended,
            "report_html": self.report_html,
            "error": self.error,
            "measures": self.measures,
        }


def _height(state: lab_mod.LabState) -> int | None:
    hs = []
    for n in state.nodes:
        c = NodeClient(n.api_url, name=n.name, timeout=2).try_chain()
        if c is not None:
            hs.append(c.finalized_height)
    return max(hs) if hs else None


def drill_params(state: lab_mod.LabState) -> dict[str, dict[str, Any]]:
    rel = state.releases
    return {
        "bootstrap": {"new_chain": True, "version": rel["base"], "block_interval_ms": state.block_interval_ms},
        "first-aid": {"hold_s": 1.0},
        "hotfix-compatible": {"version": rel["compatible"]},
        "hotfix-incompatible": {"version": rel["incompatible"], "halt_in": 10},
        "rollback-recovery": {"blocks": 10},
        "flood": {"flood_s": 15, "baseline_s": 10, "tail_s": 1},
    }


def lab_needs_chain(drills: tuple[str, ...]) -> bool:
    """Whether a lab brought up for these drills must run a chain already. Not when the first is bootstrap: it
    wipes whatever chain runs and makes a new one, so a chain made before it is an install, a start and a first
    block that it undoes at once."""
    return not drills or drills[0] != "bootstrap"


def ensure_lab(
    delegates: int, hosts: str, root: Path | None, say: Callable[[str], None], chain: bool = True
) -> tuple[lab_mod.LabState, bool]:
    """The lab that is up (if its shape fits), else a new one; and whether this call started it. chain=False:
    a new lab gets no chain (lab.up's chain): the first drill, bootstrap, makes one."""
    state = lab_mod.load_state(root)
    if state is not None and lab_mod.is_up(state):
        if state.mode != hosts or state.delegates != delegates:
            raise RehearsalError(
                f"a lab of {state.delegates} delegates on {state.mode} hosts is up; the rehearsal asks for {delegates} on "
                f"{hosts}: `iotex-ops lab down` first, or run with --delegates {state.delegates} --hosts {state.mode}"
            )
        if not state.releases:
            raise RehearsalError("the lab that is up predates the drills (no drill releases): `iotex-ops lab down`, then again")
        say(f"using the lab that is up ({state.delegates} delegates, {state.mode} hosts)")
        return state, False
    later = "" if chain else " (its chain: the bootstrap drill's)"
    say(f"bringing up a lab of {delegates} delegates on {hosts} hosts{later}")
    return lab_mod.up(delegates=delegates, hosts=hosts, root=root, say=say, chain=chain), True


def rehearse(
    delegates: int = 4,
    hosts: str = "local",
    root: Path | None = None,
    *,
    state_dir: Path | None = None,
    load_tps: float = DEFAULT_LOAD_TPS,
    drills: tuple[str, ...] = DRILLS,
    say: Callable[[str], None] = lambda s: None,
    on_event: Callable[[str, Event], None] | None = None,
    maintenance: bool = True,
) -> dict[str, Any]:
    """Run the drills; returns {"drills": [...], "report": path, ...}. Never raises for a failing drill.
    Each drill runs in its maintenance window (the lab's Alertmanager silences its expected alerts, the lab's
    PagerDuty receiver gets a change event at its start and end): a passing rehearsal pages nobody.
    `maintenance=False`: no window (`--no-maintenance`), the drills' alerts page."""
    unknown = [d for d in drills if d not in DRILLS]
    if unknown:
        raise RehearsalError(f"unknown drill(s) {', '.join(unknown)}; the drills are {', '.join(DRILLS)}")
    t0 = time.time()
    state, started_lab = ensure_lab(delegates, hosts, root, say, chain=lab_needs_chain(drills))
    lab_s = time.time() - t0
    state_dir = state_dir or default_state_dir()
    books = loader.discover()
    params = drill_params(state)
    rows: list[DrillRow] = []
    load: BackgroundLoad | None = None
    try:
        for name in drills:
            if name != "bootstrap" and load is None and load_tps > 0:
                load = BackgroundLoad([n.api_url for n in state.nodes], Path(state.accounts_file), tps=load_tps, max_seconds=3600)
                load.start()
                time.sleep(2.0)  # the load is flowing before the drill's steady state is checked
            say(f"drill {name}")
            rows.append(_drill(name, books, state, params[name], state_dir, load, on_event, maintenance))
            if not state.chain_started:
                # the bootstrap drill made the chain: now Prometheus must see every node, and alertd watches them
                try:
                    lab_mod.complete(state, say=say)
                except OpsError as exc:
                    rows[-1].error = f"{rows[-1].error + '; ' if rows[-1].error else ''}the lab could not be completed: {exc}"
                    rows[-1].result = "failed"
    finally:
        if load is not None:
            load.stop()
    ended = time.time()
    out = state_dir / "rehearsals" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out.mkdir(parents=True, exist_ok=True)
    from iotex_ops.runbook import report

    extra = {
        "lab": {"mode": state.mode, "delegates": state.delegates, "root": state.root, "started_by_rehearsal": started_lab},
        "lab_up_s": round(lab_s, 3),
        "load": None if load is None else {**load.stats.to_json(), "offered": load.offered_between(), "behind_s": load.behind_s},
        "load_tps": load_tps,
    }
    html, js = report.write_rehearsal(out, [r.to_json() for r in rows], t0, ended, state.prometheus_url, extra)
    return {
        "drills": [r.to_json() for r in rows],
        "report": str(html),
        "report_json": str(js),
        "duration_s": round(ended - t0, 3),
        "passed": all(r.result == "passed" for r in rows),
        **extra,
    }


def _blocks_finalized(name: str, h0: int | None, h1: int | None, measures: Mapping[str, Any]) -> int | None:
    """Blocks the drill's chain finalized while it ran: from genesis for bootstrap (a new chain); on top of the
    height a rollback returned to (its measure `target_height`: the blocks after it were reversed, then made
    again); else the finalized height's growth."""
    if h1 is None or name == "bootstrap":
        return h1
    target = measures.get("target_height")
    base = target if isinstance(target, int) and not isinstance(target, bool) else h0
    return None if base is None else h1 - base


def _drill(
    name: str,
    books: dict[str, Any],
    state: lab_mod.LabState,
    params: dict[str, Any],
    state_dir: Path,
    load: BackgroundLoad | None,
    on_event: Callable[[str, Event], None] | None,
    maintenance: bool = True,
) -> DrillRow:
    h0 = _height(state)
    started = time.time()
    hold = HOLD_TRAFFIC.get(name)

    def seen(ev: Event) -> None:
        if load is not None and hold is not None:
            if isinstance(ev, Phase) and ev.step == hold[0]:
                load.hold()
            elif isinstance(ev, RunFailing | RunEnd) or (isinstance(ev, StepEnd | StepDone) and ev.step == hold[1]):
                load.release()
        if on_event is not None:
            on_event(name, ev)

    # between two drills the remediation service may take a host's lock for a moment (an alert the last
    # drill raised): wait for it rather than fail the rehearsal
    engine = Engine(RunStore(state_dir), yes=True, on_event=seen, lock_wait_s=60, maintenance="auto" if maintenance else "off")
    res: RunResult | None = None
    if load is not None and name in OWN_LOAD:
        load.hold()
    try:
        with network_mod.load(state.inventory) as net:
            res = engine.run(books[name], net, params)
    except OpsError as exc:
        return DrillRow(name, "failed", time.time() - started, started=started, ended=time.time(), error=str(exc))
    finally:
        if load is not None:
            load.release()
    ended = time.time()
    h1 = _height(state)
    m = res.measures
    row = DrillRow(
        name,
        "passed" if res.result == "passed" else "failed",
        res.duration_s,
        downtime_s=m.get("downtime_s") if isinstance(m.get("downtime_s"), int | float) else None,
        blocks_finalized=_blocks_finalized(name, h0, h1, m),
        run_id=res.run_id,
        started=started,
        ended=ended,
        report_html=str(res.report_html) if res.report_html else None,
        error=res.error,
        measures=m,
    )
    if name in OWN_LOAD:
        accepted, lost_n = m.get("accepted_honest"), m.get("lost")
        if isinstance(accepted, int) and isinstance(lost_n, int):
            d = m.get("displaced")
            displaced = d if isinstance(d, int) else 0
            row.offered_actions, row.lost_actions = accepted + sum((m.get("refused_honest") or {}).values()), lost_n
            row.final_actions = accepted - lost_n - displaced
    elif load is not None:
        target = m.get("target_height")
        # the blocks the drill's actions can be in: from the lower of where it began and where a rollback returned to
        heights = [h for h in (h0, target) if isinstance(h, int) and not isinstance(h, bool)]
        base = min(heights) if heights else None
        lost = load.lost(
            since=started, until=ended, wait=30.0 if name in NO_LOSS else 5.0, from_height=None if base is None else base + 1
        )
        row.lost_actions, row.offered_actions, row.final_actions = lost["lost"], lost["offered"], lost["final"]
        row.measures = {**m, "load": lost}
        if name in NO_LOSS and lost["lost"] and row.result == "passed":
            row.result = "failed"
            row.error = (
                f"{lost['lost']} of {lost['accepted']} accepted transactions never became final (e.g. {lost['examples'][:2]})"
            )
    return row
