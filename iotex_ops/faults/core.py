"""The fault drills' pure core: who the victim is, how many may be out, when to stop, what the scorecard says.

No I/O here (tests/ops/test_faults_core.py runs it in the fast tier). The edges (iotex_ops/faults/edge.py)
read the world into the records below; the drill (iotex_ops/faults/drill.py) decides with these functions.

- `choose_victims`: Chaos Monkey's rule with a seeded random generator: among the delegates the inventory opts
  in (`iotex_gameday_opt_in: true`), `count` victims, never more than f = floor((n-1)/3) delegates out of
  consensus at once (counting those already out), so that the chain keeps its quorum.
- `stop_reason`: AWS FIS-style stop conditions, checked while the fault is active: the chain stopped
  finalizing, an alert fired on a delegate that is not a victim, a victim missed more slots in the epoch than
  its budget. Any one ends the fault at once (the drill rolls it back).
- `scorecard`: the figures of one fault, in seconds from the moment the fault was injected.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from iotex_ops.errors import OpsError

OPT_IN_VAR = "iotex_gameday_opt_in"
# alerts that never stop a drill: the heartbeat, and alertd's own fallbacks (they are about alertd, not a delegate)
NEUTRAL_ALERTS = frozenset({"Watchdog"})


class FaultError(OpsError):
    """A fault drill cannot start (no victim, the f bound) or was stopped by a stop condition."""


def f_bound(n: int) -> int:
    """How many delegates of n may be out of consensus at once while the chain still finalizes (BFT: n >= 3f+1)."""
    return max(0, (n - 1) // 3)


def truthy(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes", "on")
    return bool(v)


def opted_in(hostvars: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The delegates whose inventory vars opt them in to game days, in name order."""
    return sorted(name for name, v in hostvars.items() if truthy(v.get(OPT_IN_VAR, False)))


@dataclass(frozen=True)
class Choice:
    """Who the drill picked, and everything needed to pick it again (journaled as the `victims` mark)."""

    victims: tuple[str, ...]
    seed: int
    candidates: tuple[str, ...]
    delegates: int
    f: int
    already_out: tuple[str, ...] = ()
    forced: bool = False  # named by the operator (`host=`), not drawn

    def to_json(self) -> dict[str, Any]:
        return {
            "victims": list(self.victims),
            "seed": self.seed,
            "candidates": list(self.candidates),
            "delegates": self.delegates,
            "f": self.f,
            "already_out": list(self.already_out),
            "forced": self.forced,
        }


def choose_victims(
    delegates: Sequence[str],
    candidates: Iterable[str],
    *,
    seed: int,
    count: int = 1,
    already_out: Iterable[str] = (),
    host: str = "",
    allow_concurrent: bool = False,
) -> Choice:
    """`count` victims drawn with `random.Random(seed)` among `candidates` (opted in) that are still in.

    Refused (FaultError, nothing touched): a count above 1 without `allow_concurrent`; no opted-in delegate;
    more out at once than f = floor((n-1)/3), counting `already_out`; a named `host` that is not opted in."""
    names = list(delegates)
    n, f = len(names), f_bound(len(delegates))
    out = tuple(sorted(set(already_out)))
    pool = sorted(c for c in set(candidates) if c in names and c not in out)
    if count < 1:
        raise FaultError(f"victims must be at least 1 (got {count})")
    if count > 1 and not allow_concurrent:
        raise FaultError(f"{count} victims at once: a game day injects one fault at a time unless asked (concurrent=true)")
    if len(out) + count > f:
        held = f" ({len(out)} already out: {', '.join(out)})" if out else ""
        raise FaultError(
            f"{count} victim(s) would put {len(out) + count} of {n} delegates out at once{held}; "
            f"at most f = floor((n-1)/3) = {f} may be, or the chain stops finalizing"
        )
    if host:
        if host not in names:
            raise FaultError(f"{host!r} is not a delegate; delegates: {', '.join(names)}")
        if host not in pool:
            why = "already out of consensus" if host in out else f"not opted in ({OPT_IN_VAR}: true in the inventory)"
            raise FaultError(f"{host} cannot be the victim: {why}")
        return Choice((host,), seed, tuple(pool), n, f, out, forced=True)
    if len(pool) < count:
        raise FaultError(
            f"{count} victim(s) wanted, {len(pool)} delegate(s) eligible: opt delegates in with {OPT_IN_VAR}: true"
            + (f" (opted in but out of consensus now: {', '.join(out)})" if out else "")
        )
    victims = tuple(sorted(random.Random(seed).sample(pool, count)))
    return Choice(victims, seed, tuple(pool), n, f, out)


# -- stop conditions ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FiringAlert:
    name: str
    host: str = ""
    severity: str = ""

    def describe(self) -> str:
        return f"{self.name} on {self.host}" if self.host else self.name


@dataclass(frozen=True)
class Observation:
    """What the drill saw at one moment `t` (unix seconds) while the fault was active."""

    t: float
    top: int | None  # the highest finalized height among the delegates that answer (None: none answers)
    alerts: tuple[FiringAlert, ...] = ()
    missed: Mapping[str, int] = field(default_factory=dict)  # victim -> slots missed since the fault began


@dataclass(frozen=True)
class Limits:
    stall_s: float  # the chain has stopped finalizing when its top has not moved for this long
    missed_budget: int  # slots a victim may miss in the epoch


class StallClock:
    """When the top finalized height last moved (fed observations in time order)."""

    def __init__(self, t0: float, top: int | None) -> None:
        self.top, self.since = top, t0

    def feed(self, obs: Observation) -> float:
        """Seconds the top has not moved for, as of `obs`."""
        if obs.top is not None and (self.top is None or obs.top > self.top):
            self.top, self.since = obs.top, obs.t
        return obs.t - self.since


def stop_reason(
    obs: Observation,
    stalled_for: float,
    victims: Iterable[str],
    delegates: Iterable[str],
    limits: Limits,
    baseline: Iterable[FiringAlert] = (),
) -> str | None:
    """Why the drill must end the fault now, or None. `baseline`: alerts already firing before the fault
    (the steady state refuses those; they are not blamed on it)."""
    vs, ds, before = set(victims), set(delegates), set(baseline)
    if stalled_for >= limits.stall_s:
        return (
            f"the chain stopped finalizing: no new block for {stalled_for:.1f}s (limit {limits.stall_s:g}s) at height {obs.top}"
        )
    others = sorted(
        {
            a.describe()
            for a in obs.alerts
            if a.host in ds and a.host not in vs and a.name not in NEUTRAL_ALERTS and a not in before
        }
    )
    if others:
        return "an alert fired on another delegate: " + ", ".join(others)
    over = sorted(
        f"{v} missed {m} slots (budget {limits.missed_budget})" for v, m in obs.missed.items() if m > limits.missed_budget
    )
    if over:
        return "missed-slot budget exceeded: " + "; ".join(over)
    return None


def missed_since(before: tuple[int, int], now: tuple[int, int], end_of_before_epoch: int | None = None) -> int:
    """Slots missed between two readings of one delegate's productivity, (epoch, missed). Across an epoch
    boundary, `end_of_before_epoch` is the old epoch's final count (None: that epoch's share is not known and
    counts 0)."""
    (e0, m0), (e1, m1) = before, now
    if e1 == e0:
        return max(0, m1 - m0)
    old = max(0, (end_of_before_epoch if end_of_before_epoch is not None else m0) - m0)
    return old + max(0, m1)


# -- the scorecard ---------------------------------------------------------------------------------------

# the figures of one fault, in the order the timeline shows them: key -> label
MOMENTS: Mapping[str, str] = {
    "alert": "alert firing",
    "page": "page sent",
    "remediation": "remediation started",
    "recovered": "victim finalizing again",
}
FIGURES: Mapping[str, str] = {
    "time_to_detect_s": "detect (s)",
    "time_to_page_s": "page (s)",
    "time_to_acknowledge_s": "acknowledge (s)",
    "time_to_recover_s": "recover (s)",
    "missed_slots": "missed slots",
    "lost_actions": "lost actions",
}
TARGETS: Mapping[str, float] = {"time_to_detect_s": 3.0, "time_to_recover_s": 10.0}


def _since(t0: float, t: float | None) -> float | None:
    return None if t is None else round(max(0.0, t - t0), 3)


def scorecard(
    fault_at: float,
    moments: Mapping[str, float | None],
    *,
    missed_slots: int | None,
    lost_actions: int | None,
    escalated: bool,
    ended_at: float | None = None,
) -> dict[str, Any]:
    """One fault's figures: each moment's delay after `fault_at` (None: it did not happen or was not seen)."""
    out: dict[str, Any] = {
        "time_to_detect_s": _since(fault_at, moments.get("alert")),
        "time_to_page_s": _since(fault_at, moments.get("page")),
        "time_to_acknowledge_s": _since(fault_at, moments.get("remediation")),
        "time_to_recover_s": _since(fault_at, moments.get("recovered")),
        "missed_slots": missed_slots,
        "lost_actions": lost_actions,
        "escalated": escalated,
        "fault_s": _since(fault_at, ended_at),
    }
    out["within_targets"] = {k: (out[k] is not None and out[k] <= v) for k, v in TARGETS.items()}
    return out


def timeline(fault_at: float, moments: Mapping[str, float | None], ended_at: float | None = None) -> list[dict[str, Any]]:
    """The fault's moments in time order: [{"what", "at" (unix s), "after_s"}], the fault first."""
    rows = [{"what": "fault injected", "key": "fault", "at": fault_at, "after_s": 0.0}]
    if ended_at is not None:
        rows.append({"what": "fault ended", "key": "fault_end", "at": ended_at, "after_s": _since(fault_at, ended_at)})
    for key, label in MOMENTS.items():
        t = moments.get(key)
        if t is not None:
            rows.append({"what": label, "key": key, "at": t, "after_s": _since(fault_at, t)})
    return sorted(rows, key=lambda r: (r["at"], r["key"] != "fault"))


def first_at_or_after(t0: float, times: Iterable[float | None]) -> float | None:
    """The earliest time at or after t0 (None if none)."""
    after = [t for t in times if t is not None and t >= t0]
    return min(after) if after else None


def median(values: Iterable[float | None]) -> float | None:
    vs = sorted(v for v in values if v is not None)
    if not vs:
        return None
    mid = len(vs) // 2
    return vs[mid] if len(vs) % 2 else (vs[mid - 1] + vs[mid]) / 2
