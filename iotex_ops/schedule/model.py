"""What a drill schedule is: `inventories/<net>/drills.yml` read into frozen dataclasses (no I/O but `load`).

    defaults:                      # optional: any schedule field, for every schedule
      timezone: Europe/Berlin
      timeout: 30m
    blackouts:                     # optional: no drill of any schedule runs in these
      - {dates: "2026-12-20..2027-01-03", reason: year-end freeze}
    schedules:
      - name: first-aid-weekly     # letters, digits, dashes: a scheduled run's id is the name plus its time
        drill: first-aid           # a runbook's name
        params: {hold_s: 5}        # checked against the runbook's parameters
        cron: "0 3 * * tue"        # five fields (or @daily, @weekly...), in `timezone`'s wall time
        timezone: Europe/Berlin    # required (here or in defaults): an IANA name
        windows:                   # optional: the whole run (start to timeout) must fit in one of these
          - {days: mon-fri, hours: "02:00-05:00"}
        blackouts:                 # optional: no part of the run may touch one of these
          - {days: [sat, sun]}
        timeout: 20m               # the longest the drill may take (its window, its silences)
        start_deadline: 10m        # a run found late by more than this is recorded "missed", not started
        overlap: forbid            # forbid (skip, recorded) or queue (wait, up to the start deadline)
        chain_blackout_blocks: 100 # no run within this many blocks of a halt height or protocol activation
        approval: false            # a person approves each run (`iotex-ops schedule approve RUN`)
        enabled: true

Every problem is a `Problem` naming its field (`drills.yml: schedules[2].timezone: unknown timezone
'Europe/Pari'`); `parse` reports them all at once and keeps only the schedules that had none.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from croniter import croniter

from iotex_ops.durations import parse_duration
from iotex_ops.errors import OpsError

FILE_NAME = "drills.yml"
OVERLAP_POLICIES = ("forbid", "queue")
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
MIN_START_DEADLINE_S = 30.0  # a start deadline of a second silently skips runs (APScheduler's default): not here

_DAYS = {
    **{d: i for i, d in enumerate(DAY_NAMES)},
    **{d: i for i, d in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))},
}
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_HOURS = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")

# what a schedule may say, and its default when neither it nor `defaults` does
SCHEDULE_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "params": {},
        "windows": [],
        "blackouts": [],
        "timeout": "1h",
        "start_deadline": "15m",
        "overlap": "forbid",
        "chain_blackout_blocks": 100,
        "approval": False,
        "enabled": True,
    }
)
SCHEDULE_KEYS = ("name", "drill", "cron", "timezone", *SCHEDULE_DEFAULTS)
TOP_KEYS = ("version", "defaults", "blackouts", "schedules")
WINDOW_KEYS = ("days", "hours", "dates", "reason")


class ScheduleError(OpsError):
    """A drills file is wrong (every problem named), or a schedule cannot be found or changed."""

    def __init__(self, problems: list[Problem] | str) -> None:
        self.problems = [Problem("", problems)] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class Problem:
    """One thing wrong, with the field it is in (`schedules[2].timezone`) and the file."""

    field: str
    message: str
    source: str = ""

    def __str__(self) -> str:
        where = ": ".join(p for p in (self.source, self.field) if p)
        return f"{where}: {self.message}" if where else self.message

    def as_dict(self) -> dict[str, str]:
        return {"source": self.source, "field": self.field, "message": self.message}


@dataclass(frozen=True)
class Period:
    """A set of local times: the days, hours and dates given (all that are given must match).

    `hours` is [start, end) in local wall time; an end before the start wraps past midnight. `dates` are
    inclusive ranges."""

    label: str  # where it is declared: "schedules[0].windows[1]", "blackouts[0]"
    days: frozenset[int] | None = None  # 0 Monday .. 6 Sunday
    hours: tuple[time, time] | None = None
    dates: tuple[tuple[date, date], ...] | None = None
    reason: str = ""

    def contains(self, local: datetime) -> bool:
        if self.days is not None and local.weekday() not in self.days:
            return False
        if self.dates is not None and not any(a <= local.date() <= b for a, b in self.dates):
            return False
        if self.hours is not None:
            start, end = self.hours
            t = local.time().replace(tzinfo=None, fold=0)
            inside = start <= t < end if start < end else (t >= start or t < end)
            if not inside:
                return False
        return True

    def describe(self) -> str:
        parts = []
        if self.days is not None:
            parts.append(",".join(DAY_NAMES[d] for d in sorted(self.days)))
        if self.hours is not None:
            parts.append(f"{self.hours[0]:%H:%M}-{self.hours[1]:%H:%M}")
        if self.dates is not None:
            parts.append(",".join(str(a) if a == b else f"{a}..{b}" for a, b in self.dates))
        text = " ".join(parts)
        return f"{text} ({self.reason})" if self.reason else text


@dataclass(frozen=True)
class Schedule:
    name: str
    drill: str
    cron: str
    timezone: str
    index: int  # its place in the file: the field names of problems (`schedules[index]`)
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    windows: tuple[Period, ...] = ()
    blackouts: tuple[Period, ...] = ()
    timeout_s: float = 3600.0
    start_deadline_s: float = 900.0
    overlap: str = "forbid"
    chain_blackout_blocks: int = 100
    approval: bool = False
    enabled: bool = True

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def where(self) -> str:
        return f"schedules[{self.index}]"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "drill": self.drill,
            "params": dict(self.params),
            "cron": self.cron,
            "timezone": self.timezone,
            "windows": [w.describe() for w in self.windows],
            "blackouts": [b.describe() for b in self.blackouts],
            "timeout_s": self.timeout_s,
            "start_deadline_s": self.start_deadline_s,
            "overlap": self.overlap,
            "chain_blackout_blocks": self.chain_blackout_blocks,
            "approval": self.approval,
            "enabled": self.enabled,
        }


@dataclass(frozen=True)
class Drills:
    """A drills file: its schedules (the valid ones) and the blackouts every schedule keeps."""

    source: str
    schedules: tuple[Schedule, ...] = ()
    blackouts: tuple[Period, ...] = ()

    def schedule(self, name: str) -> Schedule:
        for s in self.schedules:
            if s.name == name:
                return s
        known = ", ".join(s.name for s in self.schedules) or "(none)"
        raise ScheduleError(f"{self.source}: no schedule {name!r}; schedules: {known}")


# -- reading -------------------------------------------------------------------------------------------------


def drills_file(inventory: str | Path) -> Path:
    """Where an inventory keeps its drill schedules: `<inventory dir>/drills.yml`."""
    p = Path(inventory)
    return (p if p.is_dir() else p.parent) / FILE_NAME


def load(path: str | Path) -> tuple[Drills, list[Problem]]:
    """Read a drills file: the valid schedules and every problem (an unreadable file is one problem)."""
    path = Path(path)
    source = str(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ScheduleError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        return Drills(source), [Problem(where, f"unparsable YAML: {getattr(exc, 'problem', None) or exc}", source)]
    return parse(doc, source)


def parse(doc: Any, source: str = FILE_NAME) -> tuple[Drills, list[Problem]]:
    """The schedules of a drills document (already YAML-decoded) and every problem, each with its field."""
    problems: list[Problem] = []

    def bad(where: str, message: str) -> None:
        problems.append(Problem(where, message, source))

    if doc is None:
        return Drills(source), []
    if not isinstance(doc, Mapping):
        bad("", "a drills file is a mapping with `schedules:` (and optional `defaults:`, `blackouts:`)")
        return Drills(source), problems
    for key in doc:
        if key not in TOP_KEYS:
            bad(str(key), f"unknown key; known: {', '.join(TOP_KEYS)}")
    if doc.get("version", 1) != 1:
        bad("version", f"unsupported version {doc.get('version')!r}; this toolkit reads version 1")
    defaults = doc.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        bad("defaults", "must be a mapping of schedule fields")
        defaults = {}
    for key in defaults:
        if key not in SCHEDULE_KEYS or key in ("name", "drill"):
            bad(f"defaults.{key}", "not a field a default can be given for")
    blackouts = _periods(doc.get("blackouts"), "blackouts", bad)
    raw = doc.get("schedules")
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        bad("schedules", "must be a list of schedules")
        raw = []
    schedules: list[Schedule] = []
    names: dict[str, int] = {}
    for i, item in enumerate(raw):
        before = len(problems)
        s = _schedule(i, item, defaults, bad)
        if s is None:
            continue
        if s.name in names:
            bad(f"schedules[{i}].name", f"{s.name!r} is also the name of schedules[{names[s.name]}]")
            continue
        names.setdefault(s.name, i)
        if len(problems) == before:
            schedules.append(s)
    return Drills(source, tuple(schedules), blackouts), problems


def _schedule(i: int, item: Any, defaults: Mapping[str, Any], bad: Any) -> Schedule | None:
    at = f"schedules[{i}]"
    if not isinstance(item, Mapping):
        bad(at, "must be a mapping (name, drill, cron, timezone, ...)")
        return None
    for key in item:
        if key not in SCHEDULE_KEYS:
            bad(f"{at}.{key}", f"unknown field; known: {', '.join(SCHEDULE_KEYS)}")
    merged = {**SCHEDULE_DEFAULTS, **defaults, **item}
    for key in ("name", "drill", "cron", "timezone"):
        if merged.get(key) in (None, ""):
            bad(f"{at}.{key}", "is required" + (" (here or in defaults)" if key == "timezone" else ""))
    name = str(merged.get("name") or "")
    if name and not _NAME.match(name):
        bad(f"{at}.name", f"{name!r}: lower-case letters, digits and dashes, at most 63, starting with a letter or digit")
    cron = str(merged.get("cron") or "")
    if cron:
        why = cron_problem(cron)
        if why:
            bad(f"{at}.cron", why)
    tz = str(merged.get("timezone") or "")
    if tz:
        why = timezone_problem(tz)
        if why:
            bad(f"{at}.timezone", why)
    params = merged.get("params") or {}
    if not isinstance(params, Mapping):
        bad(f"{at}.params", "must be a mapping of the drill's parameters")
        params = {}
    timeout = _duration(merged, "timeout", at, bad, minimum=1.0)
    deadline = _duration(merged, "start_deadline", at, bad, minimum=MIN_START_DEADLINE_S)
    overlap = str(merged.get("overlap"))
    if overlap not in OVERLAP_POLICIES:
        bad(f"{at}.overlap", f"{overlap!r}: must be one of {', '.join(OVERLAP_POLICIES)}")
    blocks = merged.get("chain_blackout_blocks")
    if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 0:
        bad(f"{at}.chain_blackout_blocks", f"{blocks!r}: must be a whole number of blocks, 0 or more")
        blocks = 0
    flags = {}
    for key in ("approval", "enabled"):
        v = merged.get(key)
        if not isinstance(v, bool):
            bad(f"{at}.{key}", f"{v!r}: must be true or false")
        flags[key] = bool(v)
    return Schedule(
        name=name,
        drill=str(merged.get("drill") or ""),
        cron=cron,
        timezone=tz,
        index=i,
        params=MappingProxyType(dict(params)),
        windows=_periods(merged.get("windows"), f"{at}.windows", bad),
        blackouts=_periods(merged.get("blackouts"), f"{at}.blackouts", bad),
        timeout_s=timeout,
        start_deadline_s=deadline,
        overlap=overlap,
        chain_blackout_blocks=blocks,
        approval=flags["approval"],
        enabled=flags["enabled"],
    )


def cron_problem(expr: str) -> str | None:
    """Why a cron expression is refused, or None: five fields (minute hour day month weekday) or a macro."""
    text = expr.strip()
    if text.startswith("@"):
        if text.lower() not in CRON_MACROS:
            return f"{expr!r}: unknown macro; known: {', '.join(CRON_MACROS)}"
    elif len(text.split()) != 5:
        return f"{expr!r}: expected 5 fields (minute hour day-of-month month day-of-week), got {len(text.split())}"
    try:
        valid = croniter.is_valid(text)
    except Exception:  # croniter raises several kinds for bad input
        valid = False
    if not valid:
        return f"{expr!r}: not a valid cron expression (minute hour day-of-month month day-of-week)"
    try:
        croniter(text, datetime(2000, 1, 1)).get_next(datetime)
    except Exception:  # e.g. CroniterBadDateError for "0 0 30 2 *"
        return f"{expr!r}: never fires (no such date)"
    return None


def timezone_problem(name: str) -> str | None:
    """Why a timezone is refused, or None: an IANA name (`Europe/Paris`, `UTC`); never a bare offset."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown timezone {name!r} (an IANA name such as Europe/Paris, America/New_York, UTC)"
    return None


def _duration(merged: Mapping[str, Any], key: str, at: str, bad: Any, minimum: float) -> float:
    try:
        seconds = parse_duration(merged.get(key))
    except ValueError as exc:
        bad(f"{at}.{key}", str(exc))
        return minimum
    if seconds < minimum:
        bad(f"{at}.{key}", f"{merged.get(key)!r}: must be at least {minimum:g}s")
        return minimum
    return seconds


def _periods(raw: Any, at: str, bad: Any) -> tuple[Period, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        bad(at, "must be a list of {days, hours, dates}")
        return ()
    out = []
    for i, item in enumerate(raw):
        p = _period(item, f"{at}[{i}]", bad)
        if p is not None:
            out.append(p)
    return tuple(out)


def _period(item: Any, at: str, bad: Any) -> Period | None:
    if not isinstance(item, Mapping):
        bad(at, "must be a mapping with days, hours or dates")
        return None
    for key in item:
        if key not in WINDOW_KEYS:
            bad(f"{at}.{key}", f"unknown field; known: {', '.join(WINDOW_KEYS)}")
    if not any(item.get(k) not in (None, "", []) for k in ("days", "hours", "dates")):
        bad(at, "needs at least one of days, hours, dates")
        return None
    ok = True
    days = None
    if item.get("days") not in (None, "", []):
        try:
            days = parse_days(item["days"])
        except ValueError as exc:
            bad(f"{at}.days", str(exc))
            ok = False
    hours = None
    if item.get("hours") not in (None, ""):
        try:
            hours = parse_hours(item["hours"])
        except ValueError as exc:
            bad(f"{at}.hours", str(exc))
            ok = False
    dates = None
    if item.get("dates") not in (None, "", []):
        try:
            dates = parse_dates(item["dates"])
        except ValueError as exc:
            bad(f"{at}.dates", str(exc))
            ok = False
    if not ok:
        return None
    return Period(at, days, hours, dates, str(item.get("reason") or ""))


def parse_days(raw: Any) -> frozenset[int]:
    """`mon-fri`, `[sat, sun]`, `mon,wed,fri` -> weekday numbers (Monday 0)."""
    items = raw if isinstance(raw, list) else str(raw).split(",")
    out: set[int] = set()
    for item in items:
        first, sep, last = str(item).strip().lower().partition("-")
        a, b = _DAYS.get(first.strip()), _DAYS.get(last.strip()) if sep else _DAYS.get(first.strip())
        if a is None or b is None:
            raise ValueError(f"{item!r}: days are mon..sun (or monday..sunday), or a range such as mon-fri")
        out.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return frozenset(out)


def parse_hours(raw: Any) -> tuple[time, time]:
    """`"02:00-05:00"` (wall time; `"22:00-06:00"` wraps midnight; `24:00` ends at midnight)."""
    m = _HOURS.match(str(raw).strip())
    if m is None:
        raise ValueError(f"{raw!r}: expected HH:MM-HH:MM, for example 02:00-05:00")
    h1, m1, h2, m2 = (int(x) for x in m.groups())
    if h2 == 24 and m2 == 0:
        h2 = 0
    if not (h1 < 24 and h2 < 24 and m1 < 60 and m2 < 60):
        raise ValueError(f"{raw!r}: not a time of day")
    start, end = time(h1, m1), time(h2, m2)
    if start == end:
        raise ValueError(f"{raw!r}: empty (start equals end)")
    return start, end


def parse_dates(raw: Any) -> tuple[tuple[date, date], ...]:
    """`2026-12-24`, `2026-12-20..2027-01-03`, or a list of those."""
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for item in items:
        if isinstance(item, date):
            out.append((item, item))
            continue
        first, sep, last = str(item).partition("..")
        try:
            a = date.fromisoformat(first.strip())
            b = date.fromisoformat(last.strip()) if sep else a
        except ValueError:
            raise ValueError(f"{item!r}: expected YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD") from None
        if b < a:
            raise ValueError(f"{item!r}: the range ends before it starts")
        out.append((a, b))
    return tuple(out)
