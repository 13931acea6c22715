"""Drill schedules, the pure core: parsing (every refusal names its field), occurrences across DST, windows and
blackouts, the chain-time blackout, the blast radius, and the due/missed/catch-up decisions."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iotex_ops.runbook import loader
from iotex_ops.runbook.model import Param, Runbook, Step
from iotex_ops.runbook.store import RunStore
from iotex_ops.schedule import ChainTime, ScheduleError, decide, occurrences, parse, upcoming
from iotex_ops.schedule import model as model_mod
from iotex_ops.schedule.check import check, fault_tolerance
from iotex_ops.schedule.state import ScheduleState
from iotex_ops.schedule.timing import blocked, chain_blackout, next_run, period_s, run_id

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)  # a Tuesday


def _noop(ctx: Any) -> None:
    return None


def book(name: str, out: int | None = 1, stops: bool = False, params: tuple[Param, ...] = ()) -> Runbook:
    return Runbook(name, "test", (Step("s", _noop, "nothing"),), params=params, out_of_consensus=out, stops_chain=stops)


BOOKS: dict[str, Runbook] = {
    "one-at-a-time": book("one-at-a-time", 1, params=(Param("version", str), Param("gap", float, default=3.0, minimum=1))),
    "two-at-once": book("two-at-once", 2),
    "stopper": book("stopper", 0, stops=True),
    "none": book("none", 0),
    "undeclared": book("undeclared", None),
}


def sched(**kw: Any) -> dict[str, Any]:
    base = {"name": "s0", "drill": "none", "cron": "0 3 * * *", "timezone": "Europe/Paris"}
    return {**base, **kw}


def parsed(*items: Mapping[str, Any], **top: Any) -> Any:
    drills, problems = parse({"schedules": list(items), **top}, "drills.yml")
    assert problems == [], [str(p) for p in problems]
    return drills


def problems_of(doc: Any) -> list[str]:
    return [str(p) for p in parse(doc, "drills.yml")[1]]


def one(doc_or_items: Any) -> str:
    found = problems_of(doc_or_items if isinstance(doc_or_items, dict) else {"schedules": doc_or_items})
    assert len(found) == 1, found
    return found[0]


# -- parsing: every refusal names the field -------------------------------------------------------------------


def test_unknown_timezone_is_refused_by_name() -> None:
    msg = one([sched(), sched(name="s1"), sched(name="s2", timezone="Europe/Pari")])
    assert msg.startswith("drills.yml: schedules[2].timezone: unknown timezone 'Europe/Pari'")


def test_timezone_is_required_and_defaults_give_it() -> None:
    item = sched()
    del item["timezone"]
    assert one([item]) == "drills.yml: schedules[0].timezone: is required (here or in defaults)"
    drills = parsed(item, defaults={"timezone": "America/New_York"})
    assert drills.schedules[0].timezone == "America/New_York"
    assert "defaults.drill: not a field" in one({"schedules": [sched()], "defaults": {"drill": "x"}})


@pytest.mark.parametrize(
    ("cron", "why"),
    [
        ("61 * * * *", "not a valid cron expression"),
        ("0 3 * *", "expected 5 fields"),
        ("0 0 3 * * *", "expected 5 fields"),
        ("0 0 30 2 *", "never fires"),
        ("@reboot", "unknown macro"),
        ("every day", "expected 5 fields"),
    ],
)
def test_bad_cron_is_refused_by_name(cron: str, why: str) -> None:
    msg = one([sched(cron=cron)])
    assert msg.startswith(f"drills.yml: schedules[0].cron: {cron!r}: ")
    assert why in msg


def test_other_fields_are_checked_and_named() -> None:
    found = problems_of(
        {
            "schedules": [
                sched(name="Bad Name", overlap="replace", timeout="soon", start_deadline="1s", enabled="yes", colour="red"),
                sched(name="ok", windows=[{"days": "funday"}, {"hours": "25:00-26:00"}, {"dates": "2026-13-01"}, {}]),
                sched(name="ok"),
            ],
            "frequency": "often",
        }
    )
    assert "drills.yml: frequency: unknown key; known: version, defaults, blackouts, schedules" in found
    text = "\n".join(found)
    for fld in (
        "schedules[0].name: 'Bad Name'",
        "schedules[0].overlap: 'replace': must be one of forbid, queue",
        "schedules[0].timeout: 'soon' is not a duration",
        "schedules[0].start_deadline: '1s': must be at least 30s",
        "schedules[0].enabled: 'yes': must be true or false",
        "schedules[0].colour: unknown field",
        "schedules[1].windows[0].days: 'funday'",
        "schedules[1].windows[1].hours: '25:00-26:00': not a time of day",
        "schedules[1].windows[2].dates: '2026-13-01'",
        "schedules[1].windows[3]: needs at least one of days, hours, dates",
        "schedules[2].name: 'ok' is also the name of schedules[1]",
    ):
        assert f"drills.yml: {fld}" in text, fld


def test_an_empty_or_absent_file_has_no_schedules(tmp_path: Path) -> None:
    assert parse(None) == (model_mod.Drills("drills.yml"), [])
    (tmp_path / "drills.yml").write_text("schedules: [\n")
    drills, problems = model_mod.load(tmp_path / "drills.yml")
    assert drills.schedules == () and "unparsable YAML" in str(problems[0])
    with pytest.raises(ScheduleError, match="cannot read"):
        model_mod.load(tmp_path / "nothing.yml")


def test_the_example_inventory_s_drills_file_is_valid() -> None:
    path = Path(__file__).resolve().parents[2] / "inventories" / "example-prod" / "drills.yml"
    drills, problems = model_mod.load(path)
    assert problems == [] and drills.schedules
    found = check(drills, loader.discover(), delegates=4, now=NOW)
    assert found == [], [str(p) for p in found]


def test_periods_parse_days_hours_and_dates() -> None:
    assert model_mod.parse_days("mon-fri") == frozenset(range(5))
    assert model_mod.parse_days(["sat", "Sunday"]) == frozenset({5, 6})
    assert model_mod.parse_days("fri-mon") == frozenset({4, 5, 6, 0})
    p = model_mod.Period("w", hours=model_mod.parse_hours("22:00-06:00"))
    assert p.contains(datetime(2026, 1, 1, 23, 0)) and p.contains(datetime(2026, 1, 1, 5, 59))
    assert not p.contains(datetime(2026, 1, 1, 6, 0)) and not p.contains(datetime(2026, 1, 1, 12, 0))
    assert model_mod.parse_dates("2026-12-20..2027-01-03")[0][1].year == 2027


# -- the drill and its parameters ---------------------------------------------------------------------------


def test_unknown_drill_and_unknown_or_bad_parameter_are_refused_by_name() -> None:
    drills = parsed(
        sched(name="a", drill="no-such-drill", cron="0 1 * * *"),
        sched(name="b", drill="one-at-a-time", params={"version": "1.0.1", "colour": "red"}, cron="0 2 * * *"),
        sched(name="c", drill="one-at-a-time", params={"version": "1", "gap": 0.5}, cron="0 3 * * *"),
        sched(name="d", drill="one-at-a-time", params={}, cron="0 4 * * *"),
        sched(name="e", drill="one-at-a-time", params={"version": "1.0.1", "gap": "2"}, cron="0 5 * * *"),
        sched(name="f", drill="undeclared", cron="0 6 * * *"),
    )
    found = [str(p) for p in check(drills, BOOKS, delegates=4, now=NOW)]
    assert found[0].startswith("drills.yml: schedules[0].drill: no runbook 'no-such-drill'; installed: ")
    assert found[1] == "drills.yml: schedules[1].params.colour: unknown parameter of one-at-a-time (it takes: gap, version)"
    assert found[2] == "drills.yml: schedules[2].params: one-at-a-time: parameter gap=0.5: must be at least 1"
    assert found[3].startswith("drills.yml: schedules[3].params: one-at-a-time: parameter version is required")
    assert found[4].startswith("drills.yml: schedules[5].drill: runbook undeclared does not declare its blast radius")
    assert len(found) == 5


def test_every_shipped_runbook_declares_its_blast_radius() -> None:
    books = loader.discover()
    assert {"first-aid", "hotfix-compatible", "hotfix-incompatible", "rollback-recovery", "restart-node"} <= set(books)
    for rb in books.values():
        assert rb.out_of_consensus is not None, rb.name
    assert books["hotfix-compatible"].out_of_consensus == 1 and not books["hotfix-compatible"].stops_chain
    assert books["first-aid"].stops_chain and books["hotfix-incompatible"].stops_chain


# -- the blast radius -----------------------------------------------------------------------------------------


def test_fault_tolerance() -> None:
    assert [fault_tolerance(n) for n in (1, 3, 4, 6, 7, 10, 24)] == [0, 0, 1, 1, 2, 3, 7]


def test_a_drill_taking_more_than_f_out_at_once_is_refused() -> None:
    drills = parsed(sched(drill="two-at-once"))
    found = [str(p) for p in check(drills, BOOKS, delegates=4, now=NOW)]
    assert found == [
        "drills.yml: schedules[0].drill: two-at-once takes 2 delegate(s) out of consensus at once (2); "
        "a network of 4 delegates keeps finalizing with at most f = floor((4-1)/3) = 1 out"
    ]
    assert check(drills, BOOKS, delegates=7, now=NOW) == []  # f = 2


def test_two_drills_in_overlapping_windows_over_f_are_refused() -> None:
    # 03:00 for an hour, and 03:30: both take one delegate out; n = 4 tolerates one
    drills = parsed(
        sched(name="a", drill="one-at-a-time", params={"version": "1"}, cron="0 3 * * *", timeout="1h"),
        sched(name="b", drill="one-at-a-time", params={"version": "1"}, cron="30 3 * * *", timeout="10m"),
    )
    found = [str(p) for p in check(drills, BOOKS, delegates=4, now=NOW)]
    assert len(found) == 1
    assert found[0].startswith("drills.yml: schedules[1].cron: its run at 2026-12-02 03:30 CET overlaps schedules[0] (a, from ")
    assert "together they take 1 (a) + 1 (b) = 2 delegates out of consensus; a network of 4 tolerates f = 1" in found[0]
    assert check(drills, BOOKS, delegates=7, now=NOW) == []  # f = 2: both fit
    # not overlapping: a ends at 03:20, b starts at 03:30
    apart = parsed(
        sched(name="a", drill="one-at-a-time", params={"version": "1"}, timeout="20m"),
        sched(name="b", drill="one-at-a-time", params={"version": "1"}, cron="30 3 * * *"),
    )
    assert check(apart, BOOKS, delegates=4, now=NOW) == []


def test_a_chain_stopping_drill_is_allowed_alone_never_beside_another() -> None:
    assert check(parsed(sched(drill="stopper")), BOOKS, delegates=4, now=NOW) == []
    drills = parsed(sched(name="a", drill="stopper", cron="0 3 * * mon"), sched(name="b", drill="none", cron="15 3 * * *"))
    found = [str(p) for p in check(drills, BOOKS, delegates=4, now=NOW)]
    assert len(found) == 1 and "schedules[1].cron: its run at 2026-12-07 03:15 CET overlaps schedules[0] (a" in found[0]
    assert found[0].endswith("a stops the whole chain: no other drill may run beside it")
    # a disabled schedule is not counted beside others
    drills = parsed(sched(name="a", drill="stopper"), sched(name="b", drill="none", enabled=False))
    assert check(drills, BOOKS, delegates=4, now=NOW) == []


# -- chain-time blackouts -------------------------------------------------------------------------------------


def test_a_run_near_a_scheduled_halt_height_is_refused() -> None:
    # the chain at 1000 now, 5 s blocks: height 1000 + 26 h of blocks (18720) is reached at 2026-12-02 14:00 UTC
    chain = ChainTime(height=1000, at=NOW, block_interval_s=5.0, halt_heights=(1000 + 26 * 720,))
    drills = parsed(sched(cron="0 15 * * *", timeout="30m", chain_blackout_blocks=100))  # 14:00 UTC in Paris: 15:00
    found = [str(p) for p in check(drills, BOOKS, delegates=4, now=NOW, chain=chain)]
    assert len(found) == 1, found
    assert found[0].startswith("drills.yml: schedules[0].cron: its run at 2026-12-02 15:00 CET is within 100 blocks "
                               "(chain_blackout_blocks) of halt height 19720 (expected about 2026-12-02 15:00 CET")  # fmt: skip
    # 100 blocks = 500 s: a run ending 10 minutes before the halt is clear of it, one ending 5 minutes before is not
    before = parsed(sched(cron="20 14 * * *", timeout="30m"))
    assert check(before, BOOKS, delegates=4, now=NOW, chain=chain) == []
    close = parsed(sched(cron="25 14 * * *", timeout="30m"))
    assert len(check(close, BOOKS, delegates=4, now=NOW, chain=chain)) == 1
    s = close.schedules[0]
    activation = ChainTime(height=1000, at=NOW, block_interval_s=5.0, activations=(1000 + 26 * 720,))
    assert "protocol activation 19720" in (chain_blackout(s, datetime(2026, 12, 2, 13, 25, tzinfo=UTC), activation) or "")
    assert chain_blackout(s, datetime(2026, 12, 3, 13, 25, tzinfo=UTC), activation) is None


def test_a_past_halt_height_does_not_block() -> None:
    chain = ChainTime(height=5000, at=NOW, block_interval_s=1.0, halt_heights=(100,))
    assert check(parsed(sched()), BOOKS, delegates=4, now=NOW, chain=chain) == []


# -- occurrences: timezone and DST ----------------------------------------------------------------------------


def iso(times: Any) -> list[str]:
    return [t.isoformat() for t in times]


def test_occurrences_are_in_the_schedule_s_wall_time() -> None:
    s = parsed(sched(cron="0 3 * * *", timezone="Asia/Singapore")).schedules[0]
    got = iso(occurrences(s, NOW, NOW + timedelta(days=2)))
    assert got == ["2026-12-02T03:00:00+08:00", "2026-12-03T03:00:00+08:00"]


def test_spring_forward_a_skipped_wall_time_runs_one_gap_later_never_skipped() -> None:
    s = parsed(sched(cron="30 2 * * *")).schedules[0]  # 02:30 does not exist in Paris on 2026-03-29
    got = iso(occurrences(s, datetime(2026, 3, 27, tzinfo=UTC), datetime(2026, 3, 31, tzinfo=UTC)))
    assert got == ["2026-03-27T02:30:00+01:00", "2026-03-28T02:30:00+01:00", "2026-03-29T03:30:00+02:00",
                   "2026-03-30T02:30:00+02:00"]  # fmt: skip
    # asked from just after the gap (03:10 CEST), the moved run is still ahead
    after = datetime(2026, 3, 29, 3, 10, tzinfo=PARIS)
    assert next_run(s, after) == datetime(2026, 3, 29, 3, 30, tzinfo=PARIS)
    # hourly: the moved 02:30 and the real 03:30 are one run
    h = parsed(sched(cron="30 * * * *")).schedules[0]
    got = iso(occurrences(h, datetime(2026, 3, 29, 0, 0, tzinfo=UTC), datetime(2026, 3, 29, 3, 0, tzinfo=UTC)))
    assert got == ["2026-03-29T01:30:00+01:00", "2026-03-29T03:30:00+02:00", "2026-03-29T04:30:00+02:00"]


def test_fall_back_a_repeated_wall_time_runs_once() -> None:
    s = parsed(sched(cron="30 2 * * *")).schedules[0]  # 02:30 happens twice in Paris on 2026-10-25
    got = iso(occurrences(s, datetime(2026, 10, 24, tzinfo=UTC), datetime(2026, 10, 27, tzinfo=UTC)))
    assert got == ["2026-10-24T02:30:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]
    # asked during the repeated hour's second pass, the first pass is past: the next is tomorrow's
    second_pass = datetime(2026, 10, 25, 2, 40, fold=1, tzinfo=PARIS)
    assert next_run(s, second_pass) == datetime(2026, 10, 26, 2, 30, tzinfo=PARIS)
    # New York too (first Sunday of November)
    ny = parsed(sched(cron="30 1 * * *", timezone="America/New_York")).schedules[0]
    got = iso(occurrences(ny, datetime(2026, 10, 31, 12, tzinfo=UTC), datetime(2026, 11, 2, 12, tzinfo=UTC)))
    assert got == ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]


def test_occurrences_need_aware_times_and_the_period_is_the_longest_gap() -> None:
    s = parsed(sched(cron="0 3 * * tue")).schedules[0]
    with pytest.raises(ValueError, match="timezone-aware"):
        list(occurrences(s, datetime(2026, 1, 1), NOW))
    assert period_s(s, NOW) == 7 * 86400
    assert period_s(parsed(sched(cron="0 3 * * mon,tue")).schedules[0], NOW) == 6 * 86400


# -- windows and blackouts ------------------------------------------------------------------------------------


def test_windows_hold_the_whole_run_and_blackouts_touch_any_part() -> None:
    s = parsed(sched(cron="0 * * * *", timeout="30m", windows=[{"days": "mon-fri", "hours": "02:00-05:00"}])).schedules[0]
    assert blocked(s, datetime(2026, 12, 2, 3, 0, tzinfo=PARIS)) is None  # Wednesday 03:00-03:30
    assert blocked(s, datetime(2026, 12, 2, 4, 30, tzinfo=PARIS)) is None  # ends exactly at 05:00
    assert "outside its windows (mon,tue,wed,thu,fri 02:00-05:00) at 2026-12-02 05:00" in (
        blocked(s, datetime(2026, 12, 2, 4, 45, tzinfo=PARIS)) or ""
    )
    assert "outside its windows" in (blocked(s, datetime(2026, 12, 5, 3, 0, tzinfo=PARIS)) or "")  # Saturday
    b = parsed(sched(timeout="2h", blackouts=[{"hours": "04:00-05:00", "reason": "backups"}])).schedules[0]
    why = blocked(b, datetime(2026, 12, 2, 3, 0, tzinfo=PARIS))
    assert why == "blackout schedules[0].blackouts[0] (04:00-05:00 (backups)) at 2026-12-02 04:00 CET"
    shared = parsed(sched(), blackouts=[{"dates": "2026-12-20..2027-01-03", "reason": "freeze"}])
    assert shared.blackouts[0].label == "blackouts[0]"
    s0 = shared.schedules[0]
    assert "blackout blackouts[0]" in (blocked(s0, datetime(2026, 12, 24, 3, tzinfo=PARIS), shared.blackouts) or "")
    assert blocked(s0, datetime(2027, 1, 4, 3, tzinfo=PARIS), shared.blackouts) is None


def test_a_schedule_that_can_never_run_is_refused() -> None:
    drills = parsed(sched(cron="0 12 * * *", windows=[{"hours": "02:00-05:00"}]))
    found = [str(p) for p in check(drills, BOOKS, delegates=4, now=NOW)]
    assert len(found) == 1 and found[0].startswith("drills.yml: schedules[0].windows: none of its 28 run(s) in the next 28 days")


def test_upcoming_says_which_runs_will_be_skipped() -> None:
    drills = parsed(sched(cron="0 3 * * *"), blackouts=[{"days": "sat,sun"}])
    rows = upcoming(drills.schedules[0], NOW, NOW + timedelta(days=7), shared_blackouts=drills.blackouts)
    assert [r.at.strftime("%a") for r in rows] == ["Wed", "Thu", "Fri", "Sat", "Sun", "Mon", "Tue"]
    assert [r.skip is not None for r in rows] == [False, False, False, True, True, False, False]
    assert all(r.skip == "suspended" for r in upcoming(drills.schedules[0], NOW, NOW + timedelta(days=2), suspended=True))


# -- due, missed, catch-up ------------------------------------------------------------------------------------


def at(day: int, hh: int, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(2026, 12, day, hh, mm, ss, tzinfo=PARIS)


def test_due_on_time_runs_the_occurrence() -> None:
    s = parsed(sched(cron="0 3 * * *", start_deadline="10m")).schedules[0]
    d = decide(s, since=at(1, 12), now=at(2, 3, 0, 1))
    assert d.run == at(2, 3) and d.late_s == 1.0 and not d.catch_up and d.records == ()
    assert d.handled_until == at(2, 3)
    nothing = decide(s, since=d.handled_until, now=at(2, 3, 5))
    assert nothing.run is None and nothing.records == () and nothing.handled_until == at(2, 3)


def test_a_late_run_within_the_deadline_is_one_catch_up_and_older_ones_are_missed() -> None:
    s = parsed(sched(cron="*/5 * * * *", start_deadline="20m")).schedules[0]
    d = decide(s, since=at(2, 2, 40), now=at(2, 3, 7))  # 02:45 .. 03:05 came while the scheduler was down
    assert d.run == at(2, 3, 5) and d.late_s == 120.0 and d.catch_up
    assert [(r.kind, r.first, r.last, r.count) for r in d.records] == [
        ("missed", at(2, 2, 45), at(2, 2, 45), 1),
        ("missed", at(2, 2, 50), at(2, 3, 0), 3),
    ]
    assert d.records[0].reason == "not started within its start deadline (20m)"
    assert d.records[1].reason == "superseded: at most one catch-up runs, the newest"


def test_back_after_the_deadline_everything_is_missed_never_silent() -> None:
    s = parsed(sched(cron="0 3 * * *", start_deadline="15m")).schedules[0]
    d = decide(s, since=at(1, 12), now=at(4, 9))  # down from Tuesday noon to Friday 09:00
    assert d.run is None and d.handled_until == at(4, 3)
    assert [(r.kind, r.count, r.first, r.last) for r in d.records] == [("missed", 3, at(2, 3), at(4, 3))]
    assert d.records[0].as_dict()["count"] == 3


def test_overlap_forbid_skips_queue_waits_until_the_deadline() -> None:
    forbid = parsed(sched(cron="0 3 * * *", start_deadline="10m")).schedules[0]
    d = decide(forbid, since=at(1, 12), now=at(2, 3, 0, 2), busy=True)
    assert d.run is None and d.handled_until == at(2, 3)
    assert [(r.kind, r.reason) for r in d.records] == [("skipped", "overlap: another drill holds the network (overlap: forbid)")]
    queue = parsed(sched(cron="0 3 * * *", start_deadline="10m", overlap="queue")).schedules[0]
    d = decide(queue, since=at(1, 12), now=at(2, 3, 5), busy=True)
    assert d.run is None and d.records == () and d.waiting == at(2, 3) and d.handled_until == at(1, 12)
    d = decide(queue, since=d.handled_until, now=at(2, 3, 8))  # the network is free again
    assert d.run == at(2, 3) and d.catch_up
    d = decide(queue, since=at(1, 12), now=at(2, 3, 11), busy=True)  # still busy past the deadline
    assert d.run is None and d.records[0].kind == "missed"


def test_suspended_disabled_and_blacked_out_runs_are_recorded_as_skipped() -> None:
    s = parsed(sched(cron="0 3 * * *")).schedules[0]
    d = decide(s, since=at(1, 12), now=at(3, 3, 1), suspended=True)
    assert d.run is None and [(r.kind, r.count) for r in d.records] == [("skipped", 2)]
    assert "suspended" in d.records[0].reason
    off = parsed(sched(cron="0 3 * * *", enabled=False)).schedules[0]
    assert decide(off, since=at(1, 12), now=at(2, 3, 1)).records[0].reason == "disabled in the drills file"
    drills = parsed(sched(cron="0 3 * * *"), blackouts=[{"dates": "2026-12-02"}])
    d = decide(drills.schedules[0], since=at(1, 12), now=at(2, 3, 1), shared_blackouts=drills.blackouts)
    assert d.run is None and d.records[0].kind == "skipped" and "blackout blackouts[0]" in d.records[0].reason


def test_a_due_run_near_a_halt_height_is_skipped_by_the_gate() -> None:
    s = parsed(sched(cron="0 3 * * *", chain_blackout_blocks=10, timeout="5m")).schedules[0]
    chain = ChainTime(height=500, at=at(2, 3), block_interval_s=1.0, halt_heights=(600,))
    d = decide(s, since=at(1, 12), now=at(2, 3, 0, 1), chain=chain)
    assert d.run is None and "within 10 blocks (chain_blackout_blocks) of halt height 600" in d.records[0].reason
    far = ChainTime(height=500, at=at(2, 3), block_interval_s=1.0, halt_heights=(5000,))
    assert decide(s, since=at(1, 12), now=at(2, 3, 0, 1), chain=far).run == at(2, 3)


def test_a_chain_that_cannot_be_read_skips_a_schedule_with_a_chain_blackout_failing_closed() -> None:
    s = parsed(sched(cron="0 3 * * *", chain_blackout_blocks=10, timeout="5m")).schedules[0]
    d = decide(s, since=at(1, 12), now=at(2, 3, 0, 1), chain_error="no delegate answered: node0 refused")
    assert d.run is None and d.records[0].kind == "skipped"
    assert "chain-time blackout (chain_blackout_blocks) cannot be checked: no delegate answered" in d.records[0].reason
    off = parsed(sched(cron="0 3 * * *", chain_blackout_blocks=0, timeout="5m")).schedules[0]
    assert decide(off, since=at(1, 12), now=at(2, 3, 0, 1), chain_error="no delegate answered").run == at(2, 3)


def test_a_scheduled_run_s_id_is_its_schedule_and_time(tmp_path: Path) -> None:
    s = parsed(sched(name="first-aid-weekly")).schedules[0]
    rid = run_id(s, at(2, 3))
    assert rid == "20261202T020000Z-first-aid-weekly"
    assert RunStore(tmp_path).dir(rid).run_id == rid  # a valid run id for the store
    assert run_id(s, at(2, 3).astimezone(UTC)) == rid  # the same occurrence, whatever zone it is given in


def test_decisions_read_no_clock() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(parsed(sched()).schedules[0], since=datetime(2026, 1, 1), now=NOW)


# -- suspensions ----------------------------------------------------------------------------------------------


def test_suspend_and_resume_live_in_the_state_dir(tmp_path: Path) -> None:
    state = ScheduleState(tmp_path, "net-a")
    assert state.suspended() == {}
    first = state.suspend("s0", by="ops", now=NOW, reason="maintenance")
    again = state.suspend("s0", by="someone-else", now=NOW + timedelta(hours=1))
    assert again == first and first.by == "ops"
    assert state.is_suspended("s0") and not ScheduleState(tmp_path, "net-b").is_suspended("s0")
    assert (state.path.stat().st_mode & 0o777) == 0o600
    assert state.resume("s0") == first and state.resume("s0") is None and not state.is_suspended("s0")
    state.path.write_text("[1]")
    with pytest.raises(ScheduleError, match="not a schedule state"):
        state.suspended()
    with pytest.raises(ScheduleError, match="is not a network name"):
        ScheduleState(tmp_path, "../x")


# -- occurrences, as properties (hypothesis) --------------------------------------------------------------------

ZONES = ("Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Pacific/Chatham", "America/Santiago", "Asia/Kolkata", "UTC")
CRONS = ("30 2 * * *", "0 * * * *", "*/20 1-3 * * *", "15 2,3 * * sun", "45 1 * 3,4,10,11 *", "0 0 1 * *", "59 23 * * *")


def test_a_wall_time_after_a_half_hour_gap_is_not_lost_behind_the_skipped_ones_moved_past_it() -> None:
    # Lord Howe, 2021-10-03: 02:00 -> 02:30. Skipped 02:00 and 02:20 run at 02:30 and 02:50; 02:40 exists and
    # runs between them (it was dropped as "not after the last one" before; hypothesis found it)
    s = parsed(sched(cron="*/20 1-3 * * *", timezone="Australia/Lord_Howe")).schedules[0]
    after, until = datetime(2021, 10, 2, 15, 0, tzinfo=UTC), datetime(2021, 10, 2, 16, 0, tzinfo=UTC)
    got = [f"{t:%H:%M%z}" for t in occurrences(s, after, until)]
    assert got == ["01:40+1030", "02:30+1100", "02:40+1100", "02:50+1100", "03:00+1100"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    zone=st.sampled_from(ZONES),
    cron=st.sampled_from(CRONS),
    start=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31)),
    hours=st.integers(min_value=1, max_value=24 * 40),
)
def test_occurrences_are_ordered_in_range_and_miss_no_wall_time(zone: str, cron: str, start: datetime, hours: int) -> None:
    s = parsed(sched(cron=cron, timezone=zone)).schedules[0]
    after = start.replace(tzinfo=UTC)
    until = after + timedelta(hours=hours)
    got = list(occurrences(s, after, until))
    # strictly increasing, inside (after, until], in the schedule's zone
    assert all(a < b for a, b in itertools.pairwise(got))
    assert all(after < t <= until and t.tzinfo == s.tz for t in got)

    # a wall time that exists (it reads back the same) is one the cron names, or a skipped one moved one gap
    # later (Lord Howe's gap is 30 minutes: a skipped 02:00 runs at 02:30, which exists)
    def exists(w: datetime) -> bool:
        return w.replace(tzinfo=s.tz).astimezone(UTC).astimezone(s.tz).replace(tzinfo=None) == w

    for t in got:
        wall = t.replace(tzinfo=None)
        if wall.replace(tzinfo=s.tz).astimezone(UTC) == t.astimezone(UTC):
            skipped = (wall - timedelta(minutes=m) for m in range(1, 61))
            assert croniter.match(cron, wall) or any(croniter.match(cron, w) and not exists(w) for w in skipped), (t, cron)
    # no wall time the cron names is lost: each maps (a skipped one, one gap later) onto an occurrence
    got_utc = {t.astimezone(UTC) for t in got}
    first_wall = after.astimezone(s.tz).replace(tzinfo=None)
    it = croniter(cron, first_wall - timedelta(hours=3))
    while True:
        wall = it.get_next(datetime)
        instant = wall.replace(tzinfo=s.tz, fold=0).astimezone(UTC)
        if instant > until:
            break
        if instant > after:
            assert instant in got_utc, (wall, zone, cron)


def test_durations_and_lateness_are_real_time_across_a_dst_change() -> None:
    # 2026-10-25 in Paris: 02:30 CEST (00:30 UTC), then clocks go back; 90 minutes later is 03:00 CET (02:00 UTC)
    s = parsed(sched(cron="30 2 * * *", timeout="90m", blackouts=[{"hours": "03:30-04:00"}])).schedules[0]
    first_pass = datetime(2026, 10, 25, 2, 30, tzinfo=PARIS)
    assert blocked(s, first_pass) is None  # in wall time it would end at 04:00 and touch the blackout
    assert blocked(s, datetime(2026, 10, 26, 2, 30, tzinfo=PARIS)) is not None  # an ordinary day: it does
    # found at 02:40 in the repeated hour (fold=1: 01:40 UTC), the 02:30 CEST run is 70 minutes late: missed
    late = parsed(sched(cron="30 2 * * *", start_deadline="15m")).schedules[0]
    d = decide(late, since=datetime(2026, 10, 24, 12, tzinfo=PARIS), now=datetime(2026, 10, 25, 2, 40, fold=1, tzinfo=PARIS))
    assert d.run is None and d.records[0].kind == "missed"
    on_time = decide(late, since=datetime(2026, 10, 24, 12, tzinfo=PARIS), now=datetime(2026, 10, 25, 2, 40, tzinfo=PARIS))
    assert on_time.run == first_pass and on_time.late_s == 600.0
    # a weekly schedule's period across the change is 7 days and an hour
    weekly = parsed(sched(cron="0 3 * * sun")).schedules[0]
    assert period_s(weekly, datetime(2026, 10, 12, tzinfo=UTC), samples=2) == 7 * 86400 + 3600  # Oct 18 CEST .. Oct 25 CET
