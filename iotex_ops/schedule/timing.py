"""When a schedule runs: occurrences, windows and blackouts, and what to do now. Pure: every function takes
`now` (or a range) and reads no clock.

Wall time and DST. A cron expression is read in its schedule's timezone, as a person reads it: `30 2 * * *`
in Europe/Paris is 02:30 Paris time, whatever the offset that day. Each wall time runs at most once:

* a wall time that does not exist (the hour skipped when clocks go forward) runs as if the clock had not
  moved, one gap later (02:30 -> 03:30 CEST): never skipped silently; when that lands on another
  occurrence (an hourly `30 * * * *` also has 03:30), the two are one run;
* a wall time that happens twice (the hour repeated when clocks go back) runs once, at its first occurrence.

Occurrences are returned as aware datetimes in the schedule's timezone, strictly increasing. Arithmetic and
comparisons are done in UTC: Python adds a timedelta to an aware datetime in wall time, and compares or
subtracts two datetimes of one tzinfo as wall times (ignoring `fold`), both wrong across a DST change.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from croniter import croniter

from iotex_ops.schedule.model import Period, Schedule

MAX_OCCURRENCES = 200_000  # a bound on any enumeration (a minutely schedule for 4 months)


def _aware(t: datetime, what: str = "now") -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (got {t.isoformat()})")
    return t


def _utc(t: datetime) -> datetime:
    return t.astimezone(UTC)


def later(t: datetime, seconds: float) -> datetime:
    """`seconds` of real time after `t`, in `t`'s zone (not wall time: 02:30 CEST + 1 h is 02:30 CET)."""
    assert t.tzinfo is not None
    return (_utc(t) + timedelta(seconds=seconds)).astimezone(t.tzinfo)


def occurrences(s: Schedule, after: datetime, until: datetime, limit: int = MAX_OCCURRENCES) -> Iterator[datetime]:
    """The schedule's start times in (after, until], in its timezone (see the module's doc for DST)."""
    _aware(after, "after")
    _aware(until, "until")
    tz = s.tz
    after_utc = after.astimezone(UTC)
    until_utc = until.astimezone(UTC)
    # start early in wall time: a skipped wall time just before `after` moves to after it (02:30 -> 03:30
    # when `after` is 03:10 that day); what is then at or before `after` is dropped below
    wall = (after.astimezone(tz).replace(tzinfo=None)) - timedelta(hours=3)
    it = croniter(s.cron, wall)
    # wall times come in order, instants not quite: a skipped one moves one gap later, past the next ones that
    # exist (Lord Howe's 30-minute gap: 02:00 -> 02:30 and 02:20 -> 02:50, but 02:40 exists and comes
    # between). A gap is under 3 hours, so an instant more than that before the newest wall time's is final.
    pending: list[datetime] = []
    count = 0
    while count < limit:
        at_utc = it.get_next(datetime).replace(tzinfo=tz, fold=0).astimezone(UTC)  # fold=0: a skipped time moves
        while pending and (pending[0] < at_utc - _MAX_GAP or at_utc > until_utc + _MAX_GAP):
            first = heapq.heappop(pending)
            if first > until_utc:
                return
            count += 1
            yield first.astimezone(tz)
            if count >= limit:
                return
        if at_utc > until_utc + _MAX_GAP:
            return
        if at_utc > after_utc and at_utc not in pending:  # two wall times on one instant (a skipped one) run once
            heapq.heappush(pending, at_utc)


_MAX_GAP = timedelta(hours=3)


def next_run(s: Schedule, now: datetime) -> datetime | None:
    """The first start time after `now` (within ten years; None if there is none)."""
    for at in occurrences(s, now, now + timedelta(days=3660), limit=1):
        return at
    return None


def run_id(s: Schedule, at: datetime) -> str:
    """A scheduled run's id: its scheduled time (UTC, as every run id begins) and the schedule's name, so that
    one occurrence is one run, whoever starts it and however often (a restarted scheduler finds it)."""
    return f"{_aware(at, 'at').astimezone(UTC):%Y%m%dT%H%M%SZ}-{s.name}"


def period_s(s: Schedule, now: datetime, samples: int = 24) -> float | None:
    """The schedule's period: the longest gap between its next `samples` start times (a weekly drill: 7 days).
    A run older than that means the drill has gone stale."""
    times = list(occurrences(s, now, now + timedelta(days=3660), limit=samples + 1))
    if len(times) < 2:
        return None
    return max((_utc(b) - _utc(a)).total_seconds() for a, b in itertools.pairwise(times))


# -- windows and blackouts -----------------------------------------------------------------------------------


def _boundaries(periods: Sequence[Period], start: datetime, end: datetime) -> list[datetime]:
    """The instants in (start, end) where a period's membership can change: local midnights and hour bounds."""
    tz = start.tzinfo
    assert tz is not None
    out = []
    day = start.date()
    while day <= end.date():
        marks = {datetime.min.time()}
        for p in periods:
            if p.hours is not None:
                marks.update(p.hours)
        for m in marks:
            t = datetime.combine(day, m).replace(tzinfo=tz, fold=0).astimezone(UTC).astimezone(tz)
            if _utc(start) < _utc(t) < _utc(end):
                out.append(t)
        day += timedelta(days=1)
    return sorted(out)


def blocked(s: Schedule, at: datetime, shared_blackouts: Sequence[Period] = ()) -> str | None:
    """Why a run starting at `at` may not run, or None: the run (from `at` to its timeout) touches a blackout
    (the schedule's or the file's), or does not fit inside one of the schedule's windows."""
    local = _aware(at, "at").astimezone(s.tz)
    end = later(local, s.timeout_s)
    blackouts = (*shared_blackouts, *s.blackouts)
    points = [local, *_boundaries((*blackouts, *s.windows), local, end)]
    for b in blackouts:
        for t in points:
            if b.contains(t):
                return f"blackout {b.label} ({b.describe()}) at {t:%Y-%m-%d %H:%M %Z}"
    if s.windows:
        # the whole run inside one window: every point in some window, and no window change between (a run
        # may not slide from one window into another across a gap: a gap has a boundary point too)
        for t in points:
            if not any(w.contains(t) for w in s.windows):
                return f"outside its windows ({'; '.join(w.describe() for w in s.windows)}) at {t:%Y-%m-%d %H:%M %Z}"
    return None


# -- chain time ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainTime:
    """Where the chain stands, to turn heights into times: read at the edge (NodeClient.chain()), passed in."""

    height: int  # the finalized height
    at: datetime  # when it was read
    block_interval_s: float
    halt_heights: tuple[int, ...] = ()  # scheduled halts (ChainInfo.halt_height of each delegate)
    activations: tuple[int, ...] = ()  # protocol activation heights still ahead

    def time_of(self, height: int) -> datetime:
        return later(self.at, (height - self.height) * self.block_interval_s)

    def height_at(self, t: datetime) -> float:
        return self.height + (_utc(t) - _utc(self.at)).total_seconds() / self.block_interval_s

    def marks(self) -> list[tuple[str, int]]:
        return sorted({("halt height", h) for h in self.halt_heights} | {("protocol activation", h) for h in self.activations},
                      key=lambda m: m[1])  # fmt: skip


def chain_mark(s: Schedule, at: datetime, chain: ChainTime) -> tuple[str, int] | None:
    """The halt height or protocol activation (what, height) that a run starting at `at` (to its timeout) comes
    within `chain_blackout_blocks` of, by the chain's expected heights; or None."""
    k = s.chain_blackout_blocks
    first = chain.height_at(_aware(at, "at"))
    last = chain.height_at(later(at, s.timeout_s))
    for what, h in chain.marks():
        if h < chain.height - k:
            continue  # long past
        if first - k <= h <= last + k:
            return what, h
    return None


def chain_blackout(s: Schedule, at: datetime, chain: ChainTime) -> str | None:
    """Why a run starting at `at` may not run for the chain's calendar (see `chain_mark`), or None."""
    mark = chain_mark(s, at, chain)
    if mark is None:
        return None
    what, h = mark
    first = chain.height_at(at)
    last = chain.height_at(later(at, s.timeout_s))
    eta = chain.time_of(h).astimezone(s.tz)
    return (f"within {s.chain_blackout_blocks} blocks (chain_blackout_blocks) of {what} {h} "
            f"(expected about {eta:%Y-%m-%d %H:%M %Z}; the run covers heights ~{first:.0f}..{last:.0f})")  # fmt: skip


# -- what to do now ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """Occurrences that did not run, for the history: consecutive ones with one reason are one record."""

    kind: str  # missed | skipped
    reason: str
    first: datetime
    last: datetime
    count: int = 1

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "reason": self.reason, "first": self.first.isoformat(), "last": self.last.isoformat(),
                "count": self.count}  # fmt: skip


@dataclass(frozen=True)
class Decision:
    """What a scheduler does for one schedule at `now`.

    run: the occurrence to start now (its scheduled time; `late_s` after it); None: nothing to start.
    records: what did not run, and why (never a silent skip).
    handled_until: the newest occurrence this decision accounts for; the next decision starts after it (an
    occurrence left waiting, `overlap: queue` behind a busy network, is not handled yet)."""

    run: datetime | None
    late_s: float
    records: tuple[Record, ...]
    handled_until: datetime
    waiting: datetime | None = None  # queued behind another drill, until its start deadline

    @property
    def catch_up(self) -> bool:
        """The run starts late (past its time by more than a scheduler's tick): a catch-up."""
        return self.run is not None and self.late_s > 60


def decide(
    s: Schedule,
    *,
    since: datetime,
    now: datetime,
    suspended: bool = False,
    busy: bool = False,
    shared_blackouts: Sequence[Period] = (),
    chain: ChainTime | None = None,
    chain_error: str | None = None,
) -> Decision:
    """Decide for the occurrences in (since, now]: at most one runs (the newest, if it is within its start
    deadline: one catch-up); every other is recorded, missed or skipped, with its reason.

    since: the newest occurrence already handled (or when the scheduler first saw the schedule).
    busy: another drill holds the network now (overlap policy: forbid skips, queue waits to the deadline).
    chain: where the chain stands now, for the chain-time blackout; chain_error: why it could not be read (the
    newest occurrence of a schedule with a chain-time blackout is then skipped: it fails closed, as the gates
    do, rather than run a drill next to a halt height nobody could check)."""
    _aware(since, "since")
    _aware(now, "now")
    times = list(occurrences(s, since, now))
    raw: list[tuple[str, str, datetime]] = []
    run: datetime | None = None
    waiting: datetime | None = None
    handled = since
    deadline = timedelta(seconds=s.start_deadline_s)
    for i, at in enumerate(times):
        newest = i == len(times) - 1
        why = None
        if not s.enabled:
            why = "disabled in the drills file"
        elif suspended:
            why = "suspended (`iotex-ops schedule resume` lifts it)"
        else:
            why = blocked(s, at, shared_blackouts)
            if why is None and newest and s.chain_blackout_blocks > 0:
                if chain is not None:
                    why = chain_blackout(s, at, chain)
                elif chain_error is not None:
                    why = f"the chain-time blackout (chain_blackout_blocks) cannot be checked: {chain_error}"
        if why is not None:
            raw.append(("skipped", why, at))
        elif _utc(now) - _utc(at) > deadline:
            raw.append(("missed", f"not started within its start deadline ({_fmt(s.start_deadline_s)})", at))
        elif not newest:
            raw.append(("missed", "superseded: at most one catch-up runs, the newest", at))
        elif busy and s.overlap == "forbid":
            raw.append(("skipped", "overlap: another drill holds the network (overlap: forbid)", at))
        elif busy:
            waiting = at  # queue: decided again at the next tick, until the deadline
            break
        else:
            run = at
        handled = at
    records = _merge(raw)
    late = (_utc(now) - _utc(run)).total_seconds() if run is not None else 0.0
    return Decision(run, late, records, handled, waiting)


def _merge(raw: list[tuple[str, str, datetime]]) -> tuple[Record, ...]:
    out: list[Record] = []
    for kind, reason, at in raw:
        if out and out[-1].kind == kind and out[-1].reason == reason:
            prev = out[-1]
            out[-1] = Record(kind, reason, prev.first, at, prev.count + 1)
        else:
            out.append(Record(kind, reason, at, at))
    return tuple(out)


@dataclass(frozen=True)
class Upcoming:
    at: datetime
    skip: str | None = None  # why it will not run (blackout, window, suspended, chain time), if known now

    def as_dict(self) -> dict[str, object]:
        return {"at": self.at.isoformat(), "utc": self.at.astimezone(UTC).isoformat(), "skip": self.skip}


def upcoming(
    s: Schedule,
    now: datetime,
    until: datetime,
    *,
    suspended: bool = False,
    shared_blackouts: Sequence[Period] = (),
    chain: ChainTime | None = None,
    limit: int = 1000,
) -> list[Upcoming]:
    """The start times in (now, until], each with why it would not run, if that is known now."""
    out = []
    for at in occurrences(s, now, until, limit=limit):
        why = None
        if not s.enabled:
            why = "disabled"
        elif suspended:
            why = "suspended"
        else:
            why = blocked(s, at, shared_blackouts)
            if why is None and chain is not None:
                why = chain_blackout(s, at, chain)
        out.append(Upcoming(at, why))
    return out


def _fmt(seconds: float) -> str:
    from iotex_ops.durations import fmt_duration

    return fmt_duration(seconds)
