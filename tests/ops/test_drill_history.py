"""Drill history and scorecards over the run store: figures from each run's measures, pass rate, staleness and
the decaying score, median and worst, the trend; `iotex-ops drill history|scorecard`; the HTML page (slow:
matplotlib may build its font cache with a subprocess on a fresh machine)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from iotex_ops.cli import main
from iotex_ops.runbook import events as ev_mod
from iotex_ops.runbook.events import Event, Measures, Result, RunEnd, RunStart, StepStart
from iotex_ops.runbook.store import RunStore
from iotex_ops.schedule import history as hist
from iotex_ops.schedule import scorecard_html

DAY = 86400.0
T0 = 1_780_000_000.0  # 2026-05-28


def write_run(store: RunStore, run_id: str, runbook: str, t0: float, result: Result | None, measures: dict[str, Any],
              duration: float = 60.0) -> None:  # fmt: skip
    """A run's journal as the engine leaves it (test set-up; the code under test reads it through RunStore)."""
    run = store.dir(run_id)
    run.path.mkdir(parents=True)
    evs: list[Event] = [RunStart(seq=1, ts=t0, run_id=run_id, runbook=runbook, user="ops", network="n", inventory="/inv"),
                        StepStart(seq=2, ts=t0 + 1, step="s")]  # fmt: skip
    if measures:
        evs.append(Measures(seq=3, ts=t0 + duration - 1, values=measures))
    if result is not None:
        evs.append(RunEnd(seq=4, ts=t0 + duration, result=result, duration_s=duration, error=None if result.ok else "broke"))
    run.journal.write_text("".join(json.dumps(ev_mod.to_doc(e)) + "\n" for e in evs))


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    s = RunStore(tmp_path / "state")
    # first-aid weekly for six weeks: downtime growing, one failure, the last one unfinished (crashed)
    downtimes = [3.0, 3.2, 3.1, 4.5, 5.0, 5.5]
    for i, d in enumerate(downtimes):
        result = Result.FAILED if i == 3 else Result.PASSED
        write_run(s, f"fa-{i}", "first-aid", T0 + i * 7 * DAY, result, {"downtime_s": d, "stopped_height": 100 + i},
                  duration=40.0 + i)  # fmt: skip
    write_run(s, "fa-6", "first-aid", T0 + 6 * 7 * DAY, None, {})
    # hotfix-compatible: lost actions in the load section, time to detect per alert
    write_run(s, "hc-0", "hotfix-compatible", T0 + DAY, Result.PASSED,
              {"longest_gap_s": 2.1, "downtime_s": 1.1, "load": {"lost": 0, "accepted": 900},
               "time_to_detect_s": {"DelegateDown": 3.5, "ChainStalled": 7.25}})  # fmt: skip
    write_run(s, "hc-1", "hotfix-compatible", T0 + 2 * DAY, Result.ROLLBACK_FAILED, {"longest_gap_s": 9.0, "lost_actions": 4})
    return s


def test_history_reads_runs_and_their_figures_through_the_store(store: RunStore) -> None:
    rows = hist.history(store, "first-aid")
    assert [r.run_id for r in rows] == [f"fa-{i}" for i in range(7)]
    assert rows[0].figures["downtime_s"] == 3.0 and rows[0].figures["duration_s"] == 40.0
    assert rows[3].result is Result.FAILED and rows[3].error == "broke"
    assert rows[6].result is None and rows[6].as_dict()["result"] == "unfinished"
    hc = {r.run_id: r for r in hist.history(store, "hotfix-compatible")}
    assert hc["hc-0"].figures["lost_actions"] == 0 and hc["hc-0"].figures["time_to_detect_s"] == 7.25  # the worst alert
    assert hc["hc-1"].figures["lost_actions"] == 4 and hc["hc-1"].figures["time_to_detect_s"] is None
    assert len(hist.history(store)) == 9 and len(hist.history(store, last=2)) == 2


def test_scorecard_pass_rate_median_worst_and_trend(store: RunStore) -> None:
    rows = hist.history(store, "first-aid")
    now = T0 + 6 * 7 * DAY + DAY  # a day after the last (unfinished) run started
    card = hist.scorecard("first-aid", rows, now=now, period_s=7 * DAY)
    assert (card.runs, card.finished, card.passed) == (7, 6, 5)
    assert card.pass_rate == pytest.approx(5 / 6)
    assert card.last_run is not None and card.last_run.run_id == "fa-6"
    assert not card.stale and card.freshness == 1.0 and card.score == pytest.approx(5 / 6)
    assert card.stats["downtime_s"].median == pytest.approx(3.85) and card.stats["downtime_s"].worst == 5.5
    assert card.stats["duration_s"].worst == 45.0 and card.stats["lost_actions"].runs == 0
    assert card.trend_direction["downtime_s"] == "worsening"
    assert card.trend_direction["duration_s"] == "steady"  # 41 s -> 44 s: under 10%
    assert card.trend_direction["lost_actions"] == "n/a"
    assert card.as_dict()["figures"]["downtime_s"] == {"median": 3.85, "worst": 5.5, "runs": 6}
    window = hist.scorecard("first-aid", rows, now=now, period_s=7 * DAY, window=3)  # fa-3 (failed), fa-4, fa-5
    assert window.pass_rate == pytest.approx(2 / 3) and [r.run_id for r in window.trend] == ["fa-4", "fa-5", "fa-6"]


def test_a_stale_drill_s_score_decays_and_an_unscheduled_one_does_not_go_stale(store: RunStore) -> None:
    rows = hist.history(store, "first-aid")
    last = T0 + 6 * 7 * DAY
    fresh = hist.scorecard("first-aid", rows, now=last + 7 * DAY, period_s=7 * DAY)
    one_period_late = hist.scorecard("first-aid", rows, now=last + 14 * DAY, period_s=7 * DAY)
    two_late = hist.scorecard("first-aid", rows, now=last + 21 * DAY, period_s=7 * DAY)
    assert not fresh.stale and one_period_late.stale and two_late.stale
    assert one_period_late.freshness == pytest.approx(0.5) and two_late.freshness == pytest.approx(0.25)
    assert two_late.score == pytest.approx(fresh.score / 4)
    unscheduled = hist.scorecard("first-aid", rows, now=last + 365 * DAY)
    assert not unscheduled.stale and unscheduled.freshness == 1.0
    never = hist.scorecard("rollback-recovery", [], now=last, period_s=7 * DAY)
    assert never.stale and never.score == 0.0 and never.pass_rate is None and never.last_run is None


def test_scorecards_cover_every_run_drill_and_every_scheduled_one(store: RunStore) -> None:
    cards = hist.scorecards(hist.history(store), now=T0 + 50 * DAY, periods={"rollback-recovery": 30 * DAY})
    assert [c.drill for c in cards] == ["first-aid", "hotfix-compatible", "rollback-recovery"]
    assert cards[1].pass_rate == 0.5 and cards[1].stats["longest_gap_s"].worst == 9.0 and cards[2].runs == 0


def test_drill_history_and_scorecard_commands(store: RunStore, tmp_path: Path) -> None:
    env = {"IOTEX_OPS_STATE_DIR": str(store.root)}
    res = CliRunner().invoke(main, ["drill", "history", "first-aid", "--json"], env=env)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert [r["run_id"] for r in doc["runs"]] == [f"fa-{i}" for i in range(7)] and doc["runs"][0]["downtime_s"] == 3.0
    text = CliRunner().invoke(main, ["drill", "history"], env=env).output
    assert "hc-1" in text and "rollback_failed" in text and "unfinished" in text
    # with an inventory whose drills.yml schedules first-aid daily: the last run is days old, so stale
    inv = tmp_path / "inv"
    inv.mkdir()
    key = inv / "k.json"
    key.write_text("{}")
    host = {"ansible_host": "127.0.0.1", "ansible_user": "iotex", "ansible_port": 22, "node_p2p_port": 4700,
            "node_api_port": 14100, "delegate_name": "d0", "node_key_file": str(key), "node_data_dir": "/d",
            "service_manager": "systemd"}  # fmt: skip
    (inv / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"delegates": {"hosts": {"d0": host}}}}}))
    (inv / "drills.yml").write_text(yaml.safe_dump({"schedules": [
        {"name": "fa", "drill": "first-aid", "cron": "0 4 * * *", "timezone": "UTC"}]}))  # fmt: skip
    res = CliRunner().invoke(main, ["drill", "scorecard", "-i", str(inv), "--no-html", "--json"], env=env)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    cards = {c["drill"]: c for c in doc["drills"]}
    assert doc["html"] is None and doc["schedules"] == str(inv / "drills.yml")
    assert cards["first-aid"]["period_s"] == DAY and cards["first-aid"]["stale"] is True
    assert cards["first-aid"]["score"] < cards["first-aid"]["pass_rate"]
    assert cards["hotfix-compatible"]["period_s"] is None and cards["hotfix-compatible"]["stale"] is False
    only = json.loads(
        CliRunner().invoke(main, ["drill", "scorecard", "--drill", "bootstrap", "--no-html", "--json"], env=env).output
    )
    assert [c["drill"] for c in only["drills"]] == ["bootstrap"] and only["drills"][0]["runs"] == 0


def test_the_html_page_escapes_what_journals_say() -> None:
    bad = hist.RunRow("r<1>", "<script>", T0, T0 + 5, Result.PASSED, "ops", {})
    card = hist.scorecard("<script>", [bad], now=T0 + DAY)
    page = scorecard_html.render([card], generated=T0 + DAY)
    assert "<script>" not in page and "&lt;script&gt;" in page and "no figures recorded yet" in page


@pytest.mark.slow
def test_the_html_scorecard_has_a_matplotlib_plot_per_drill(store: RunStore, tmp_path: Path) -> None:
    env = {"IOTEX_OPS_STATE_DIR": str(store.root)}
    res = CliRunner().invoke(main, ["drill", "scorecard", "--json"], env=env)
    assert res.exit_code == 0, res.output
    path = Path(json.loads(res.output)["html"])
    assert path == store.root / "rehearsals" / "scorecard.html"
    page = path.read_text()
    assert page.count("<svg") == 2 and "downtime (s)" in page and "<script" not in page
    assert "Matplotlib" in page or "matplotlib" in page
    text = CliRunner().invoke(main, ["drill", "scorecard", "--html", str(tmp_path / "s.html")], env=env).output
    assert f"HTML scorecard with plots: {tmp_path / 's.html'}" in text and (tmp_path / "s.html").is_file()
