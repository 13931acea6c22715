"""Game days without a lab: the fault runbooks load and can be scheduled, alertd marks its pages while a drill
is on, the report's arithmetic and page, and the `gameday` commands on an empty run store. No process."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from iotex_ops.cli import main
from iotex_ops.faults import core, drill
from iotex_ops.faults import gameday as gd
from iotex_ops.paging import drill_route
from iotex_ops.remediation.daemon import PagerPages
from iotex_ops.runbook import loader
from iotex_ops.schedule import parse
from iotex_ops.schedule.check import check

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_the_fault_runbooks_are_fault_drills() -> None:
    books = loader.discover()
    for name in ("fault-kill", "fault-freeze", "fault-partition"):
        rb = books[name]
        assert rb.out_of_consensus == 1 and not rb.stops_chain and rb.lock_scope == drill.GAMEDAY_LOCK
        assert "DelegateDown" in rb.fault_alerts and rb.expected_alerts == ()  # never silenced: alertd must see them
        assert [s.name for s in rb.steps] == ["choose", "inject", "watch", "settle"]
        assert rb.step("inject").destructive and rb.step("inject").rollback is not None
        assert {"seed", "host", "missed_budget", "victims", "concurrent"} <= {p.name for p in rb.params}
    assert any(p.name == "freeze_s" for p in books["fault-freeze"].params)


def test_fault_drills_can_be_scheduled_and_two_at_once_are_refused() -> None:
    books = loader.discover()
    one, problems = parse(
        {
            "schedules": [
                {"name": "gd-kill", "drill": "fault-kill", "cron": "0 3 * * 2", "timezone": "UTC", "params": {"seed": 7}}
            ]
        },
        "drills.yml",
    )
    assert problems == []
    assert check(one, books, delegates=4, now=NOW) == []
    two, _ = parse(
        {
            "schedules": [
                {"name": "gd-kill", "drill": "fault-kill", "cron": "0 3 * * *", "timezone": "UTC"},
                {"name": "gd-freeze", "drill": "fault-freeze", "cron": "0 3 * * *", "timezone": "UTC", "params": {"freeze_s": 5}},
            ]
        },
        "drills.yml",
    )
    assert any("out of consensus" in str(p) or "overlap" in str(p) for p in check(two, books, delegates=4, now=NOW))
    bad, _ = parse({"schedules": [{"name": "x", "drill": "fault-freeze", "cron": "0 3 * * *", "timezone": "UTC",
                                  "params": {"freeze_s": 0}}]}, "drills.yml")  # fmt: skip
    assert any("freeze_s" in str(p) for p in check(bad, books, delegates=4, now=NOW))


class _Queue:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def enqueue(self, ev: dict[str, Any]) -> None:
        self.events.append(ev)


def test_alertd_marks_its_pages_for_the_drill_route_while_a_drill_is_on(tmp_path: Path) -> None:
    marker = drill_route.marker_path(tmp_path, "lab")
    q = _Queue()
    pages = PagerPages(q, marker)
    pages.trigger("k1", "node2 is down", "node2", "critical", {"host": "node2"}, [])
    drill_route.write(marker, "20261201-gd", "fault-kill", ["node2"], until=4e9)
    pages.trigger("k2", "node2 is down", "node2", "critical", {"host": "node2"}, [])
    drill_route.remove(marker, "20261201-gd")
    pages.trigger("k3", "node2 is down", "node2", "critical", {"host": "node2"}, [])
    s = [e["payload"]["summary"] for e in q.events]
    assert s == ["node2 is down", "[DRILL 20261201-gd] node2 is down", "node2 is down"]
    assert q.events[1]["payload"]["custom_details"]["drill"]["route"] == "drill"
    assert "drill" not in q.events[2]["payload"]["custom_details"]


def _row(i: int, result: str, detect: float | None, recover: float | None) -> dict[str, Any]:
    m = {"time_to_detect_s": detect, "time_to_page_s": None if detect is None else detect + 0.5,
         "time_to_acknowledge_s": None, "time_to_recover_s": recover, "missed_slots": 1, "lost_actions": 0,
         "escalated": i == 3, "victims": ["node2"], "seed": i, "page_route": "drill route",
         "timeline": core.timeline(1000.0 * i, {"alert": 1000.0 * i + (detect or 0)}),
         "pages": [{"id": "PABC", "at": 1000.0 * i + 3, "summary": "[DRILL r] <b>x</b>", "drill_route": True,
                    "escalation": False}]}  # fmt: skip
    return {"run_id": f"r{i}", "started_at": 1000.0 * i, "result": result, "error": None, "measures": m}


def test_the_report_summarizes_each_fault_and_its_trend(tmp_path: Path) -> None:
    rows = [_row(1, "passed", 2.0, 6.0), _row(2, "passed", 2.0, 6.0), _row(3, "failed", 4.0, None), _row(4, "passed", 4.0, 12.0)]
    s = gd.summarize("fault-kill", rows)
    assert (s["runs"], s["passed"], s["escalations"]) == (4, 3, 1)
    f = s["figures"]
    assert f["time_to_detect_s"]["median"] == 3.0 and f["time_to_detect_s"]["worst"] == 4.0
    assert f["time_to_detect_s"]["direction"] == "worsening" and f["time_to_recover_s"]["runs"] == 3
    assert f["time_to_detect_s"]["trend"] == [2.0, 2.0, 4.0, 4.0] and f["time_to_recover_s"]["target"] == 10.0
    assert s["last"]["run_id"] == "r4" and s["last"]["time_to_recover_s"] == 12.0
    doc = {"generated_at": 0.0, "state_dir": "/x", "targets": dict(core.TARGETS), "faults": [s]}
    j, h = gd.write_report(doc, tmp_path / "out")
    assert json.loads(j.read_text())["faults"][0]["fault"] == "fault-kill"
    page = h.read_text()
    assert "fault-kill" in page and "alert firing" in page and "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x" not in page
    assert gd.direction([1.0, 1.0, 1.0, 1.05]) == "steady" and gd.direction([3.0, 3.0, 1.0, 1.0]) == "improving"


def test_gameday_report_on_an_empty_store(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["gameday", "report", "--state-dir", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["faults"] == [] and Path(doc["files"]["html"]).is_file()
    res = CliRunner().invoke(main, ["gameday", "report", "--state-dir", str(tmp_path)])
    assert res.exit_code == 0 and "no fault drill runs" in res.output
    res = CliRunner().invoke(main, ["gameday", "--help"])
    assert res.exit_code == 0 and "run" in res.output and "report" in res.output
