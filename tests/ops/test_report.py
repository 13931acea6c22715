"""The run report and the rehearsal report: from a synthetic journal, against a tiny fake Prometheus."""

from __future__ import annotations

import json
import socket
import stat
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from iotex_ops.runbook import journal as journal_mod
from iotex_ops.runbook import report
from iotex_ops.runbook.journal import Journal
from iotex_ops.runbook.model import RunbookError
from iotex_ops.testing import FakePrometheus

T0 = 1_700_000_000.0
EVIL = "<script>alert(1)</script>"


@pytest.fixture
def prom() -> Iterator[FakePrometheus]:
    with FakePrometheus() as server:
        yield server


@pytest.fixture
def closed_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """The journal's clock: every event 5 s after the previous one."""
    state = SimpleNamespace(now=T0 - 5.0)

    def tick() -> float:
        state.now += 5.0
        return state.now

    monkeypatch.setattr(journal_mod, "time", SimpleNamespace(time=tick))
    return state


def _journal(run_dir: Path, *, end: bool = True) -> None:
    """A run as the engine journals it: a per-host step with a retry, a failing once-step, a failed rollback."""
    j = Journal(run_dir / "journal.jsonl")
    try:
        j.write(
            "run_start",
            run_id="r1",
            runbook="first-aid",
            runbook_source="runbooks/first_aid.py",
            user="ops",
            machine="bastion",
            pid=123,
            argv=["iotex-ops", "runbook", "run", "first-aid"],
            inventory="/inv/prod.yml",
            network="prod-abc",
            params={"single": "d1", "token": "***"},
            delegates=["d1", "d2"],
            prometheus="http://prom:9090",
        )  # t=0
        ok = {"check": "finalizing", "ok": True, "value": 2, "detail": ""}
        j.write("steady_state", phase="before", ok=True, checks=[ok])  # 5
        j.write("approval", step="pause", approved=True, by="ops", how="--yes")  # 10
        j.write("phase", step="pause", label="pause <b>all</b>", hosts=["d1", "d2"])  # 15
        j.write("step_start", step="pause", host="d1", attempt=1)  # 20
        j.write("verify", step="pause", host="d1", check="halted", ok=True, value=41, detail="")  # 25
        j.write(
            "step_end", step="pause", host="d1", ok=True, attempt=1, duration_s=9.9, output_tail=["paused d1"], error=None
        )  # 30
        j.write("step_start", step="pause", host="d2", attempt=1)  # 35
        j.write("step_end", step="pause", host="d2", ok=False, attempt=1, duration_s=4.0, output_tail=[], error="timeout")  # 40
        j.write("step_start", step="pause", host="d2", attempt=2)  # 45
        j.write("verify", step="pause", host="d2", check="halted", ok=True, value=41, detail="")  # 50
        j.write(
            "step_end", step="pause", host="d2", ok=True, attempt=2, duration_s=9.0, output_tail=["paused d2"], error=None
        )  # 55
        j.write("step_end", step="pause", host=None, ok=True, duration_s=40.0)  # 60
        j.write("memo", step="pause", key="height", value=41)  # 65
        j.write("mark", step="pause", name="chain_halted", height=41)  # 70
        j.write("phase", step=EVIL, label=EVIL, hosts=[])  # 75
        j.write("step_start", step=EVIL, host=None, attempt=1)  # 80
        j.write("verify", step=EVIL, host=None, check="resumed", ok=False, value=41, detail="height stuck <41>")  # 85
        j.write(
            "step_end",
            step=EVIL,
            host=None,
            ok=False,
            attempt=1,
            duration_s=9.5,
            output_tail=["a <tag> & more"],
            error="check failed: resumed",
        )  # 90
        j.write("run_failing", step=EVIL, host=None, error="check failed: resumed", started_steps=["pause", EVIL])  # 95
        j.write("rollback_start", step="pause", host="d2", what="resume the delegate")  # 100
        j.write(
            "rollback_end",
            step="pause",
            host="d2",
            ok=False,
            duration_s=4.5,
            output_tail=["ssh d2"],
            error="ssh: connection refused",
        )  # 105
        j.write("rollback_start", step="pause", host="d1", what="resume the delegate")  # 110
        j.write("rollback_end", step="pause", host="d1", ok=True, duration_s=4.0, output_tail=[], error=None)  # 115
        if not end:
            return
        j.write("steady_state", phase="after_rollback", ok=False, checks=[{**ok, "ok": False, "detail": "stuck"}])  # 120
        j.write("measures", values={"downtime_s": 12.5, "blocks_finalized": 0})  # 125
        j.write(
            "run_end",
            result="rollback_failed",
            error="check failed: resumed; ROLLBACK FAILED: pause@d2: ssh: connection refused",
            duration_s=130.0,
            measures={"downtime_s": 12.5, "blocks_finalized": 0},
        )  # 130
    finally:
        j.close()


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)


def _tags(text: str) -> list[str]:
    p = _Tags()
    p.feed(text)
    p.close()
    return p.tags


@pytest.mark.slow  # FakePrometheus listens on a socket
def test_report_of_a_failed_run_with_a_failed_rollback(tmp_path: Path, clock: SimpleNamespace, prom: FakePrometheus) -> None:
    _journal(tmp_path)
    html_path, json_path = report.write(tmp_path, prom.url)
    assert (html_path, json_path) == (tmp_path / "report.html", tmp_path / "report.json")
    for p in (html_path, json_path):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["journal.jsonl", "report.html", "report.json"]  # no tmp left
    doc = json.loads(json_path.read_text())

    run = doc["run"]
    assert run["id"] == "r1" and run["runbook"] == "first-aid" and run["result"] == "rollback_failed"
    assert run["user"] == "ops" and run["machine"] == "bastion" and run["inventory"] == "/inv/prod.yml"
    assert run["params"] == {"single": "d1", "token": "***"}
    assert run["started_unix"] == T0 and run["ended_unix"] == T0 + 130 and run["duration_s"] == 130
    assert run["started"] == "2023-11-14T22:13:20.000Z"
    assert "ROLLBACK FAILED" in run["error"]
    assert "argv" not in json_path.read_text()

    steps = {(s["step"], s["host"]): s for s in doc["steps"]}
    assert list(steps) == [("pause", "d1"), ("pause", "d2"), (EVIL, None)]  # the per-host step's own end is no row
    d1, d2, bad = steps["pause", "d1"], steps["pause", "d2"], steps[EVIL, None]
    assert d1["ok"] is True and d1["attempts"] == 1 and d1["duration_s"] == 9.9 and d1["output_tail"] == ["paused d1"]
    assert d1["verifications"] == [{"check": "halted", "ok": True, "value": 41, "detail": ""}]
    assert d2["ok"] is True and d2["attempts"] == 2 and d2["started"] == T0 + 35 and d2["ended"] == T0 + 55
    assert d2["duration_s"] == 20 and d2["error"] is None
    assert d2["failed_attempts"] == [{"attempt": 1, "error": "timeout", "duration_s": 4.0}]
    assert len(d2["verifications"]) == 1  # the last attempt's
    assert bad["ok"] is False and bad["error"] == "check failed: resumed" and bad["verifications"][0]["ok"] is False

    assert doc["approvals"] == [{"step": "pause", "approved": True, "by": "ops", "how": "--yes", "time": T0 + 10}]
    assert doc["failure"]["step"] == EVIL
    rbs = {r["host"]: r for r in doc["rollbacks"]}
    assert rbs["d2"]["ok"] is False and rbs["d2"]["error"] == "ssh: connection refused" and rbs["d2"]["duration_s"] == 4.5
    assert rbs["d1"]["ok"] is True
    assert doc["marks"] == [{"time": T0 + 70, "t": 70.0, "step": "pause", "name": "chain_halted", "fields": {"height": 41}}]
    assert doc["measures"] == {"downtime_s": 12.5, "blocks_finalized": 0}
    assert [s["phase"] for s in doc["steady_state"]] == ["before", "after_rollback"]
    assert [(p["label"], p["start"], p["end"]) for p in doc["phases"]] == [
        ("pause <b>all</b>", T0 + 15, T0 + 75),
        (EVIL, T0 + 75, T0 + 130),
    ]
    assert {m["kind"] for m in doc["markers"]} == {"failure", "rollback", "mark"}

    assert doc["series_error"] is None
    heights, tps = doc["series"]["finalized_height"], doc["series"]["throughput_tps"]
    assert len(heights) == len(tps) == 156  # [start - 20 s, end + 5 s] every second
    assert heights[0] == [T0 - 20, 100.0] and heights[-1][0] == T0 + 135 and tps[0][1] == 2.5
    queries = [r for r in prom.requests if r["path"] == "/api/v1/query_range"]
    assert [q["query"] for q in queries] == ["max(iotex_finalized_height)", "max(rate(iotex_actions_finalized_total[5s]))"]
    assert {(q["start"], q["end"], q["step"]) for q in queries} == {(str(int(T0 - 20)), str(int(T0 + 135)), "1s")}

    page = html_path.read_text()
    assert "<svg" in page and "</svg>" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and EVIL not in page
    assert "pause &lt;b&gt;all&lt;/b&gt;" in page and "<b>" not in page
    assert "height stuck &lt;41&gt;" in page and "a &lt;tag&gt; &amp; more" in page
    assert "ROLLBACK FAILED" in page and "ssh: connection refused" in page
    assert "chain_halted" in page and "downtime_s" in page and "<details>" in page
    tags = _tags(page)
    assert "script" not in tags and "link" not in tags and "img" not in tags and "src=" not in page
    assert "iotex-ops runbook run" not in page  # argv is not shown


def test_without_prometheus_the_report_says_why(tmp_path: Path, clock: SimpleNamespace) -> None:
    _journal(tmp_path)
    html_path, json_path = report.write(tmp_path, None)
    doc = json.loads(json_path.read_text())
    assert doc["series"] == {"finalized_height": [], "throughput_tps": []}
    assert "no Prometheus URL" in doc["series_error"]
    assert "no data from Prometheus: no Prometheus URL" in html_path.read_text()


def test_unreachable_prometheus_still_writes_the_report(tmp_path: Path, clock: SimpleNamespace, closed_url: str) -> None:
    _journal(tmp_path)
    html_path, json_path = report.write(tmp_path, closed_url)
    doc = json.loads(json_path.read_text())
    assert doc["series"] == {"finalized_height": [], "throughput_tps": []}
    assert closed_url in doc["series_error"] and "ConnectionError" in doc["series_error"]
    assert doc["run"]["result"] == "rollback_failed" and "no data from Prometheus" in html_path.read_text()


@pytest.mark.slow  # FakePrometheus listens on a socket
def test_prometheus_answering_an_error(tmp_path: Path, clock: SimpleNamespace, prom: FakePrometheus) -> None:
    prom.status = 400
    _journal(tmp_path)
    _, json_path = report.write(tmp_path, prom.url)
    doc = json.loads(json_path.read_text())
    assert "HTTP Status Code 400" in doc["series_error"] and not any(doc["series"].values())


def test_an_unfinished_run_is_reported_as_incomplete(tmp_path: Path, clock: SimpleNamespace) -> None:
    _journal(tmp_path, end=False)
    _, json_path = report.write(tmp_path, None)
    doc = json.loads(json_path.read_text())
    assert doc["run"]["result"] == "incomplete" and doc["run"]["error"] == "check failed: resumed"
    assert doc["run"]["ended_unix"] == T0 + 115 and doc["phases"][-1]["end"] == T0 + 115
    assert doc["measures"] == {}


def test_missing_or_empty_journal(tmp_path: Path) -> None:
    with pytest.raises(RunbookError, match="no journal"):
        report.write(tmp_path / "nope", None)
    (tmp_path / "journal.jsonl").write_text("")
    with pytest.raises(RunbookError, match="empty"):
        report.write(tmp_path, None)
    (tmp_path / "journal.jsonl").write_text('{"seq":1,"ts":1.0,"event":"memo"}\n')
    with pytest.raises(RunbookError, match="run_start"):
        report.write(tmp_path, None)
    assert not (tmp_path / "report.json").exists()


def test_range_step_keeps_long_runs_under_1500_points() -> None:
    assert report.range_step(0, 155) == 1
    assert report.range_step(0, 1500) == 1
    assert report.range_step(0, 3 * 3600) == 8
    assert 3 * 3600 / report.range_step(0, 3 * 3600) <= 1500


def _svg(text: str) -> ET.Element:
    return ET.fromstring(text)  # noqa: S314 - the module's own output, parsed to prove it well-formed


def test_svg_plot_empty_single_point_gaps_and_markers() -> None:
    empty = report.svg_plot({}, [], error="connection <refused>")
    _svg(empty)  # well-formed
    assert empty.count("no data from Prometheus: connection &lt;refused&gt;") == 2

    single = report.svg_plot({"finalized_height": [[T0, 7.0]], "throughput_tps": [[T0, 0.0]]}, [])
    root = _svg(single)
    assert len(root.findall(".//{http://www.w3.org/2000/svg}circle")) == 2
    assert "no data" not in single

    pts = [[T0 + t, float(t)] for t in (*range(10), *range(30, 40))]
    phases = [
        {"label": "a & <b>", "start": T0, "end": T0 + 20},
        {"label": "second phase", "start": T0 + 20, "end": T0 + 40},
        {"label": "failed: x<y", "start": T0 + 25, "kind": "failure"},
    ]
    svg = report.svg_plot({"finalized_height": pts, "throughput_tps": []}, phases, width=600, height=300)
    root = _svg(svg)
    assert root.get("viewBox") == "0 0 600 300"
    assert len(root.findall(".//{http://www.w3.org/2000/svg}path")) == 2  # the gap splits the line
    assert "a &amp; &lt;b&gt;" in svg and "failed: x&lt;y" in svg and "<b>" not in svg
    assert 'stroke="#c62828"' in svg  # the failure's line
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "seconds since start" in texts and "0" in texts and "40" in texts
    assert "no data from Prometheus: no samples in this time range" in texts


@pytest.mark.slow  # FakePrometheus listens on a socket
def test_rehearsal_report(tmp_path: Path, prom: FakePrometheus) -> None:
    out = tmp_path / "rehearsal"
    runs = tmp_path / "runs"
    drills: list[dict[str, Any]] = [
        {
            "name": "first-aid",
            "result": "passed",
            "duration_s": 60.0,
            "downtime_s": 12.5,
            "blocks_finalized": 20,
            "run_id": "r1",
            "started": T0,
            "ended": T0 + 60,
            "report_html": str(runs / "r1" / "report.html"),
            "error": None,
        },
        {
            "name": f"upgrade {EVIL}",
            "result": "rollback_failed",
            "duration_s": 30.0,
            "downtime_s": None,
            "blocks_finalized": None,
            "run_id": None,
            "started": T0 + 70,
            "ended": T0 + 100,
            "report_html": None,
            "error": "ROLLBACK FAILED: x",
        },
    ]
    html_path, json_path = report.write_rehearsal(out, drills, T0, T0 + 100, prom.url, extra={"inventory": "/inv/lab.yml"})
    assert (html_path, json_path) == (out / "rehearsal.html", out / "rehearsal.json")
    assert stat.S_IMODE(html_path.stat().st_mode) == stat.S_IMODE(json_path.stat().st_mode) == 0o600
    doc = json.loads(json_path.read_text())
    assert doc["drills"] == drills and doc["inventory"] == "/inv/lab.yml"
    assert doc["started"] == T0 and doc["ended"] == T0 + 100 and doc["duration_s"] == 100
    assert len(doc["series"]["finalized_height"]) == 126 and doc["series_error"] is None

    page = html_path.read_text()
    assert 'href="../runs/r1/report.html"' in page
    assert "upgrade &lt;script&gt;" in page and EVIL not in page and "script" not in _tags(page)
    assert "ROLLBACK FAILED" in page and "12.5 s" in page and "<svg" in page and "/inv/lab.yml" in page
    assert "first-aid" in page


def test_the_rehearsal_report_shows_the_lab_the_load_and_each_drills_transactions_as_text(tmp_path: Path) -> None:
    drill = {"name": "first-aid", "result": "passed", "duration_s": 20.0, "started": T0, "ended": T0 + 20,
             "offered_actions": 6900, "final_actions": 6870, "lost_actions": 0}  # fmt: skip
    extra = {
        "lab": {"mode": "local", "delegates": 4, "root": "/tmp/lab", "started_by_rehearsal": True},
        "lab_up_s": 31.5,
        "load": {"accepted": 41070, "refused": 3, "unavailable": 1170, "resyncs": 60, "offered": 41310, "behind_s": 0.2}
        | {"by_reason": {"nonce_gap": 3}},
        "load_tps": 300.0,
    }
    html_path, _ = report.write_rehearsal(tmp_path, [drill], T0, T0 + 20, None, extra)
    page = html_path.read_text()
    assert "{" not in page.split("<svg")[0].split("</style>")[-1], "no raw dict before the plot"
    assert "4 delegates on local hosts in /tmp/lab, brought up by the rehearsal" in page
    assert "41,310 offered, 41,070 accepted, 3 refused (nonce_gap: 3)" in page and "300 transfers/s offered" in page
    assert "<th>offered tx</th><th>final tx</th><th>lost tx</th>" in page
    assert "<td>6,900</td><td>6,870</td><td>0</td>" in page


def test_rehearsal_report_without_prometheus(tmp_path: Path) -> None:
    html_path, json_path = report.write_rehearsal(tmp_path, [], T0, T0 + 10, None)
    doc = json.loads(json_path.read_text())
    assert doc["drills"] == [] and doc["series_error"] and "no data from Prometheus" in html_path.read_text()
