"""Check a drills file against the runbooks, the network's size and the chain's calendar. Pure: the runbooks,
the number of delegates, `now` and the chain's heights are given; nothing is read here.

What is refused, each with the field it is in:

* a drill that is not an installed runbook, a parameter it does not take or a value it refuses;
* a runbook that does not declare its blast radius (`Runbook.out_of_consensus`);
* the blast radius: f = floor((n-1)/3) delegates may be out of consensus at once and the chain still
  finalizes. A drill that takes more than f out at once is refused; so are drills whose runs (start to
  timeout) overlap within the horizon and together take more than f out; a drill that stops the whole chain
  on purpose (`stops_chain`: all delegates paused or halted together, a coordinated state) is allowed alone
  and refused beside any other drill;
* a run within `chain_blackout_blocks` of a scheduled halt height or protocol activation (given `chain`);
* a schedule none of whose runs in the horizon may run (always in a blackout, never inside its windows).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from iotex_ops.runbook.model import ParamError, Runbook
from iotex_ops.runbook.params import validate
from iotex_ops.schedule.model import Drills, Problem, Schedule
from iotex_ops.schedule.timing import ChainTime, blocked, chain_blackout, chain_mark, occurrences

HORIZON_DAYS = 28  # how far ahead overlaps, windows and the chain's calendar are checked
MAX_RUNS_CHECKED = 20_000  # per schedule in the horizon (a minutely drill is refused long before)


def fault_tolerance(delegates: int) -> int:
    """f: how many of n delegates may be out of consensus while the rest still finalize (BFT: n >= 3f + 1)."""
    return max(0, (delegates - 1) // 3)


@dataclass(frozen=True)
class Radius:
    out: int
    stops_chain: bool

    def describe(self) -> str:
        return "stops the whole chain" if self.stops_chain else f"takes {self.out} delegate(s) out of consensus at once"


def check(
    drills: Drills,
    runbooks: Mapping[str, Runbook],
    *,
    delegates: int,
    now: datetime,
    chain: ChainTime | None = None,
    horizon_days: int = HORIZON_DAYS,
) -> list[Problem]:
    """Every problem of the (parsed) schedules; an empty list: the file may be used."""
    problems: list[Problem] = []

    def bad(s: Schedule, fld: str, message: str) -> None:
        problems.append(Problem(f"{s.where}.{fld}" if fld else s.where, message, drills.source))

    f = fault_tolerance(delegates)
    until = now + timedelta(days=horizon_days)
    radii: dict[str, Radius] = {}
    runs: dict[str, list[datetime]] = {}
    for s in drills.schedules:
        rb = runbooks.get(s.drill)
        if rb is None:
            bad(s, "drill", f"no runbook {s.drill!r}; installed: {', '.join(sorted(runbooks)) or '(none)'}")
            continue
        _check_params(s, rb, bad)
        if rb.out_of_consensus is None:
            bad(
                s,
                "drill",
                f"runbook {rb.name} does not declare its blast radius (Runbook.out_of_consensus): it cannot be scheduled",
            )
            continue
        radius = Radius(rb.out_of_consensus, rb.stops_chain)
        if not radius.stops_chain and radius.out > f:
            bad(s, "drill", f"{rb.name} {radius.describe()} ({radius.out}); a network of {delegates} delegates keeps finalizing "
                            f"with at most f = floor(({delegates}-1)/3) = {f} out")  # fmt: skip
        times = list(occurrences(s, now, until, limit=MAX_RUNS_CHECKED))
        if s.enabled:
            radii[s.name] = radius
            runs[s.name] = times
        _check_calendar(s, times, drills, chain, horizon_days, bad)
    problems += _check_together(drills, radii, runs, f, delegates)
    return problems


def _check_params(s: Schedule, rb: Runbook, bad: Any) -> None:
    known = {p.name for p in rb.params}
    given = {}
    for key, value in s.params.items():
        if key not in known:
            takes = ", ".join(sorted(known)) or "no parameters"
            bad(s, f"params.{key}", f"unknown parameter of {rb.name} (it takes: {takes})")
        else:
            given[key] = value
    try:
        validate(rb, given)
    except ParamError as exc:
        bad(s, "params", str(exc))


def _check_calendar(s: Schedule, times: list[datetime], drills: Drills, chain: ChainTime | None, days: int, bad: Any) -> None:
    if not s.enabled:
        return
    if times and all(blocked(s, t, drills.blackouts) for t in times):
        first = blocked(s, times[0], drills.blackouts)
        fld = "windows" if s.windows else "blackouts"
        bad(s, fld, f"none of its {len(times)} run(s) in the next {days} days may run; the first: {first}")
    if chain is None:
        return
    seen: set[tuple[str, int]] = set()  # one problem per halt or activation: its first run near it
    for t in times:
        mark = chain_mark(s, t, chain)
        if mark is not None and mark not in seen:
            seen.add(mark)
            bad(s, "cron", f"its run at {t:%Y-%m-%d %H:%M %Z} is {chain_blackout(s, t, chain)}")


def _check_together(drills: Drills, radii: Mapping[str, Radius], runs: Mapping[str, list[datetime]], f: int,
                    delegates: int) -> list[Problem]:  # fmt: skip
    """Sweep every run's interval [start, start + timeout): at each start, the runs of other schedules that are
    going on with it; refuse a set whose radius is over f, or that has a chain-stopping drill beside another."""
    by_name = {s.name: s for s in drills.schedules}
    spans: list[tuple[datetime, datetime, str]] = []
    for name, times in runs.items():
        dur = timedelta(seconds=by_name[name].timeout_s)
        spans += [(t.astimezone(UTC), t.astimezone(UTC) + dur, name) for t in times]  # real time: see timing.py
    spans.sort()
    problems: list[Problem] = []
    reported: set[frozenset[str]] = set()
    active: list[tuple[datetime, datetime, str]] = []
    for start, end, name in spans:
        active = [a for a in active if a[1] > start and a[2] != name]
        if active:
            names = frozenset({name, *(a[2] for a in active)})
            if names not in reported:
                why = _too_much(names, radii, f, delegates)
                if why is not None:
                    reported.add(names)
                    s = by_name[name]
                    others = ", ".join(
                        f"{by_name[a[2]].where} ({a[2]}, from {a[0].astimezone(by_name[a[2]].tz):%Y-%m-%d %H:%M %Z})"
                        for a in active
                    )
                    when = f"{start.astimezone(s.tz):%Y-%m-%d %H:%M %Z}"
                    problems.append(Problem(f"{s.where}.cron", f"its run at {when} overlaps {others}: {why}",
                                            drills.source))  # fmt: skip
        active.append((start, end, name))
    return problems


def _too_much(names: frozenset[str], radii: Mapping[str, Radius], f: int, delegates: int) -> str | None:
    stopping = sorted(n for n in names if radii[n].stops_chain)
    if stopping:
        return f"{stopping[0]} stops the whole chain: no other drill may run beside it"
    total = sum(radii[n].out for n in names)
    if total > f:
        parts = " + ".join(f"{radii[n].out} ({n})" for n in sorted(names))
        return f"together they take {parts} = {total} delegates out of consensus; a network of {delegates} tolerates f = {f}"
    return None


def check_all(drills: Drills, parse_problems: Sequence[Problem], runbooks: Mapping[str, Runbook], *, delegates: int,
              now: datetime, chain: ChainTime | None = None) -> list[Problem]:  # fmt: skip
    """The file's own problems, then the checks above."""
    return [*parse_problems, *check(drills, runbooks, delegates=delegates, now=now, chain=chain)]
