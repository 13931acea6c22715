"""The dashboard's pure parts, without a process or a socket: the view models (colours for what is wrong),
the login, sessions and CSRF tokens, the bind rules, and the templates rendering the views (escaped)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from iotex_ops.dashboard import auth, views
from iotex_ops.dashboard.app import _safe_next, make_env
from iotex_ops.dashboard.errors import DashboardError
from iotex_ops.nodeapi import Block, ChainInfo, Delegate, Delegates
from iotex_ops.runbook.events import Result, RunEnd, RunStart, StepEnd, StepStart, Verify
from iotex_ops.runbook.state import fold
from iotex_ops.runbook.store import RunDir, RunSummary
from iotex_ops.schedule.history import RunRow
from iotex_ops.testing import FakeClock

NOW = 1_800_000_000.0


def chain(addr: str, height: int = 100, **over: Any) -> ChainInfo:
    doc = {"address": addr, "chain_id": 1, "height": height, "finalized_height": height, "finalized_hash": "ab" * 32,
           "node_version": "0.1.0", "protocol_version": 1, "epoch": 5, "peers": 3,
           "finalized_timestamp_ms": int((NOW - 1) * 1000), **over}  # fmt: skip
    return ChainInfo.from_json(doc)


def books() -> Delegates:
    cands = tuple(
        Delegate(f"d{i}", f"own{i}", f"op{i}", 1, True, 0, expected=3, produced=3 - (i == 2), missed=int(i == 2))
        for i in range(4)
    )
    return Delegates(5, tuple(f"op{i}" for i in range(4)), cands)


def block(h: int, proposer: str, actions: int = 0) -> Block:
    return Block(h, f"h{h}", 0, int((NOW - 20 + h) * 1000), proposer, 5, 1, actions)


# -- the network view --------------------------------------------------------------------------------------


def test_a_healthy_network_is_green_with_height_tps_productivity_and_last_proposed() -> None:
    ds = [(f"node{i}", "127.0.0.1", chain(f"op{i}"), None) for i in range(4)]
    ds[2] = ("node2", "127.0.0.1", chain("op2"), None)
    blocks = [block(h, f"op{h % 4}", actions=10) for h in range(90, 101)]
    v = views.network_view("lab", ds, now=NOW, books=books(), blocks=blocks)
    assert v.height == 100 and v.epoch == 5 and v.tps == 10.0
    rows = {r.name: r for r in v.rows}
    assert rows["node0"].level == "ok" and rows["node0"].produced == 3 and rows["node0"].last_proposed == 100
    assert rows["node2"].level == "warn" and rows["node2"].missed == 1 and "missed 1 slot(s) this epoch" in rows["node2"].problems
    assert v.level == "warn" and "all 4 delegates answer" in v.summary


def test_a_dead_node_is_red_and_named_in_the_summary() -> None:
    ds = [(f"node{i}", "h", chain(f"op{i}"), None) for i in range(3)] + [("node3", "h", None, "connection refused")]
    v = views.network_view("lab", ds, now=NOW)
    dead = v.rows[3]
    assert (dead.level, dead.answering, dead.state, dead.error) == ("bad", False, "down", "connection refused")
    assert v.level == "bad" and "node3" in v.summary
    # its peers see 2 of 3 peers: a warning on each, not an alarm
    assert all(r.level == "ok" for r in v.rows[:3])
    lonely = views.delegate_row("n", "h", chain("op0", peers=0), top=100, delegates=4, now=NOW)
    assert lonely.level == "bad" and "no peer" in lonely.problems


@pytest.mark.parametrize(
    ("over", "top", "level", "text"),
    [
        ({"halted": "halted at 100: scheduled"}, 100, "bad", "halted: halted at 100: scheduled"),
        ({"paused": True}, 100, "info", "paused"),
        ({"standby": True}, 100, "info", "a standby (not signing until activated)"),
        ({}, 104, "warn", "4 blocks behind"),
        ({}, 130, "bad", "30 blocks behind"),
        ({"peers": 2}, 100, "warn", "2 of 3 peers"),
        ({"finalized_timestamp_ms": int((NOW - 60) * 1000)}, 100, "bad", "newest finalized block 60s old"),
        ({"node_version": "0.0.9"}, 100, "warn", "runs 0.0.9, most run 0.1.0"),
    ],
)
def test_each_wrong_state_has_its_colour_and_words(over: dict[str, Any], top: int, level: str, text: str) -> None:
    r = views.delegate_row("n", "h", chain("op0", **over), top=top, delegates=4, now=NOW, majority_version="0.1.0")
    assert r.level == level and text in r.problems
    assert r.state == (
        "halted" if "halted" in over else "paused" if "paused" in over else "standby" if "standby" in over else "ok"
    )


def test_tps_needs_two_blocks_and_time_between_them() -> None:
    assert views.tps([]) is None and views.tps([block(1, "a", 5)]) is None
    assert views.tps([block(2, "a", 4), block(1, "a", 100), block(3, "b", 6)]) == 5.0


# -- runs ------------------------------------------------------------------------------------------------


def _run(*extra: Any) -> tuple[RunSummary, Any]:
    evs = [RunStart(seq=1, ts=NOW - 10, run_id="r1", runbook="first-aid", user="ann"),
           StepStart(seq=2, ts=NOW - 9, step="pause", host=None),
           Verify(seq=3, ts=NOW - 8, step="pause", host=None, check="paused", ok=True, value=4),
           StepEnd(seq=4, ts=NOW - 7, step="pause", host=None, ok=True, duration_s=2.0),
           StepStart(seq=5, ts=NOW - 6, step="resume", host="node1"), *extra]  # fmt: skip
    st = fold(evs)
    return RunSummary.of(st, RunDir(Path("/nonexistent/r1"))), st


def test_a_running_run_shows_its_current_step_and_verification_values() -> None:
    summary, st = _run()
    v = views.run_view(summary, st, store="runs", now=NOW, alive=True, has_report=False)
    assert (v.status, v.level, v.current) == ("running", "info", "resume on node1")
    assert [(s.step, s.state) for s in v.steps] == [("pause", "passed"), ("resume", "running")]
    assert v.steps[0].checks == ({"check": "paused", "ok": True, "value": 4, "detail": ""},)
    assert v.duration_s == 10.0
    # nobody runs it any more: unfinished, for `runbook resume`
    assert views.run_view(summary, st, store="runs", now=NOW, alive=False, has_report=False).status == "unfinished"


def test_a_finished_run_has_its_result_colour_and_report() -> None:
    summary, st = _run(StepEnd(seq=6, ts=NOW - 3, step="resume", host="node1", ok=False, duration_s=3, error="boom"),
                       RunEnd(seq=7, ts=NOW - 2, result=Result.FAILED, error="resume failed", duration_s=8.0))  # fmt: skip
    v = views.run_view(summary, st, store="alertd", now=NOW, alive=False, has_report=True)
    assert (v.status, v.level, v.current, v.has_report, v.error) == ("failed", "warn", None, True, "resume failed")
    assert v.steps[1].state == "failed" and v.steps[1].error == "boom"


# -- alerts ------------------------------------------------------------------------------------------------


def test_alerts_view_from_prometheus_alertd_and_the_receiver() -> None:
    firing = [{"metric": {"alertname": "DelegateDown", "host": "node3", "severity": "critical"}},
              {"metric": {"alertname": "PeersLow", "host": "node1", "severity": "warning"}}]  # fmt: skip
    state = {
        "alerts": [
            {
                "alertname": "DelegateDown",
                "host": "node3",
                "status": "firing",
                "page": "triggered",
                "page_key": "k1",
                "severity": "critical",
                "first_seen": NOW - 5,
                "last_seen": NOW,
                "deferred_since": NOW - 3,
                "deferrals": 2,
                "note": "lock held",
            }
        ],
        "remediations": [{"id": 1, "runbook": "restart-node", "run_id": "r9", "state": "running", "created": NOW - 2}],
        "breakers": {"restart-node": {"failures": 3, "open_until": NOW + 60}, "other": {"failures": 0, "open_until": None}},
    }
    incidents = [{"id": "Q1", "status": "triggered", "summary": "DelegateDown on node3", "dedup_key": "k1", "created_at": "2026"}]
    v = views.alerts_view(firing, state, incidents, now=NOW, alertd_configured=True)
    assert [a["alertname"] for a in v.firing] == ["DelegateDown", "PeersLow"]
    assert v.pages[0]["dedup_key"] == "k1" and v.remediations[0]["run_id"] == "r9"
    assert [b["runbook"] for b in v.breakers] == ["restart-node"] and v.deferred[0]["note"] == "lock held"
    assert (v.level, v.alertd, v.prometheus) == ("bad", "answering", "answering")
    # no receiver (production): alertd's own pages; alertd down and Prometheus down are said
    v = views.alerts_view(None, state, None, now=NOW, alertd_configured=True)
    assert v.pages[0]["id"] == "k1" and v.prometheus == "not answering"
    assert views.alerts_view([], None, None, now=NOW, alertd_configured=True).alertd == "not answering"
    assert views.alerts_view([], None, None, now=NOW, alertd_configured=False).level == "ok"
    # the Watchdog heartbeat fires all the time: blue, not a warning
    heartbeat = [{"metric": {"alertname": "Watchdog", "severity": "info"}}]
    v = views.alerts_view(heartbeat, {}, [], now=NOW, alertd_configured=True)
    assert (v.level, v.firing[0]["level"]) == ("info", "info")


# -- drills ------------------------------------------------------------------------------------------------


def test_pending_approvals_are_the_unapproved_undecided_runs_of_schedules_that_need_one() -> None:
    runs: list[dict[str, Any]] = [{"run_id": "a", "schedule": "s1", "status": "waiting", "approval": None},
            {"run_id": "b", "schedule": "s1", "status": "waiting", "approval": {"by": "ann"}},
            {"run_id": "c", "schedule": "s2", "status": "waiting", "approval": None},
            {"run_id": "d", "schedule": "s1", "status": "ended", "approval": None}]  # fmt: skip
    assert [r["run_id"] for r in views.pending_approvals(runs, {"s1"})] == ["a"]


def test_drill_plots_put_each_finished_run_on_its_drills_plot() -> None:
    rows = [RunRow("r2", "first-aid", 20.0, 30.0, Result.PASSED, "u", {"duration_s": 10.0}),
            RunRow("r1", "first-aid", 10.0, 15.0, Result.FAILED, "u", {"duration_s": 5.0}),
            RunRow("r3", "first-aid", 40.0, None, None, "u", {})]  # fmt: skip
    assert views.drill_plots(rows) == {"first-aid": {"t": [10.0, 20.0], "duration_s": [5.0, 10.0], "passed": [0, 1]}}


def test_series_aligns_prometheus_matrices_on_one_time_axis() -> None:
    rows = [{"metric": {"delegate": "node1"}, "values": [[2, "5"], [3, "6"]]},
            {"metric": {"delegate": "node0"}, "values": [[1, "1"], [2, "NaN"]]}]  # fmt: skip
    s = views.series("h", rows)
    assert s.labels == ("node0", "node1") and s.data == [[1.0, 2.0, 3.0], [1.0, None, None], [None, 5.0, 6.0]]
    assert views.series("tps", [{"metric": {}, "values": [[1, "2"]]}], name="TPS").labels == ("TPS",)
    assert views.chart_step(300) == 1.0 and views.chart_step(86400) == 288


# -- login, sessions, CSRF, binds --------------------------------------------------------------------------


def test_the_token_file_must_be_private_and_long_enough(tmp_path: Path) -> None:
    p = auth.write_token_file(tmp_path / "d" / "login.token")
    assert oct(p.stat().st_mode & 0o777) == "0o600" and len(auth.read_token_file(p)) >= auth.MIN_TOKEN_CHARS
    assert auth.write_token_file(p).read_text() == p.read_text()  # made once
    os.chmod(p, 0o644)
    with pytest.raises(DashboardError, match=r"mode 0644: others may read it; `chmod 600"):
        auth.read_token_file(p)
    short = tmp_path / "short"
    short.write_text("abc\n")
    short.chmod(0o600)
    with pytest.raises(DashboardError, match="holds 3 characters"):
        auth.read_token_file(short)
    with pytest.raises(DashboardError, match="No such file"):
        auth.read_token_file(tmp_path / "missing")


def test_a_session_needs_the_token_and_expires() -> None:
    clock = FakeClock(NOW)
    s = auth.Sessions("t" * 20, ttl_s=60, clock=clock)
    assert s.login("wrong", "ann") is None and s.login("", "ann") is None
    sess = s.login("t" * 20 + "\n", "ann\x1b[31m")
    assert sess is not None and sess.user == "ann[31m" and s.get(sess.id) == sess
    assert s.get("forged") is None and s.get(None) is None
    clock.advance(61)
    assert s.get(sess.id) is None
    assert auth.Sessions(None).login("anything", "ann") is None and not auth.Sessions(None).enabled


def test_csrf_tokens_belong_to_their_session_and_a_forged_one_is_refused() -> None:
    s = auth.Sessions("t" * 20)
    a, b = s.login("t" * 20, "a"), s.login("t" * 20, "b")
    assert a is not None and b is not None and a.id != b.id
    assert s.check_csrf(a, s.csrf(a)) and not s.check_csrf(a, s.csrf(b))
    assert not s.check_csrf(a, "") and not s.check_csrf(a, None) and not s.check_csrf(a, "0" * 64)
    # another process (a restart) has another key: yesterday's page's token is no good
    assert not auth.Sessions("t" * 20).check_csrf(a, s.csrf(a))
    s.logout(a.id)
    assert s.get(a.id) is None


def test_sessions_are_bounded() -> None:
    s = auth.Sessions("t" * 20)
    first = s.login("t" * 20, "x")
    for _ in range(auth.MAX_SESSIONS):
        s.login("t" * 20, "x")
    assert first is not None and s.get(first.id) is None


@pytest.mark.parametrize(
    ("listen", "tls", "login", "error"),
    [
        ("127.0.0.1:8470", False, False, None),
        ("[::1]:0", False, False, None),
        ("localhost:1", False, False, None),
        ("0.0.0.0:8470", False, False, "without TLS (--tls-cert and --tls-key) and a login (--token-file)"),
        ("10.0.0.5:8470", True, False, "without a login (--token-file)"),
        ("10.0.0.5:8470", False, True, "without TLS"),
        ("10.0.0.5:8470", True, True, None),
    ],
)
def test_only_loopback_binds_without_tls_and_a_login(listen: str, tls: bool, login: bool, error: str | None) -> None:
    host, _ = auth.parse_listen(listen)
    if error is None:
        auth.check_bind(host, tls=tls, auth=login)
    else:
        with pytest.raises(DashboardError, match="refusing to listen on .*" + error.replace("(", r"\(").replace(")", r"\)")):
            auth.check_bind(host, tls=tls, auth=login)


@pytest.mark.parametrize("bad", ["8470", ":8470", "host:port", "127.0.0.1:70000"])
def test_a_bad_listen_is_said(bad: str) -> None:
    with pytest.raises(DashboardError, match="--listen"):
        auth.parse_listen(bad)


def test_after_login_only_a_path_of_this_dashboard() -> None:
    assert _safe_next("/drills") == "/drills"
    assert _safe_next("//evil.example/") == "/" and _safe_next("https://evil.example/") == "/" and _safe_next("/\\x") == "/"


# -- templates ---------------------------------------------------------------------------------------------


def test_the_fragments_escape_what_nodes_and_journals_say() -> None:
    env = make_env()
    evil = "<script>alert(1)</script>"
    ds = [(evil, "h", chain("op0", halted=evil), None), ("node1", "h", None, evil)]
    html = env.get_template("_network.html").render(v=views.network_view("lab", ds, now=NOW).as_dict(), now=NOW)
    assert evil not in html and "&lt;script&gt;" in html
    assert 'class="row-bad" data-delegate="node1"' in html
    summary, st = _run()
    html = env.get_template("_runs.html").render(
        v={"runs": [views.run_view(summary, st, store="runs", now=NOW, alive=True, has_report=False).as_dict()]}, now=NOW
    )
    assert 'data-run="r1" data-status="running"' in html and "resume on node1" in html and "paused=4" in html
    waiting = {"run_id": "x", "schedule": "s", "drill": "d", "scheduled_at": NOW, "status": "waiting", "reason": evil}
    drills = views.DrillsView((), (waiting,), (), (), (), {"d": {"t": [1], "duration_s": [evil], "passed": [1]}}, ())
    html = env.get_template("_drills.html").render(v=drills.as_dict(), now=NOW)
    assert evil not in html and 'action="/actions/approve"' in html


def test_the_command_refuses_a_public_bind_without_tls_and_login_before_reading_anything(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from iotex_ops.cli import main

    res = CliRunner().invoke(main, ["dashboard", "-i", str(tmp_path / "none.yml"), "--listen", "0.0.0.0:8470"])
    assert res.exit_code == 2 and "refusing to listen on 0.0.0.0" in res.output and "Traceback" not in res.output
    token = tmp_path / "t"
    token.write_text("x" * 32)
    token.chmod(0o640)
    res = CliRunner().invoke(main, ["dashboard", "-i", str(tmp_path / "none.yml"), "--token-file", str(token)])
    assert res.exit_code == 2 and "mode 0640" in res.output
    res = CliRunner().invoke(main, ["dashboard", "-i", str(tmp_path / "none.yml"), "--tls-cert", str(token)])
    assert res.exit_code == 2 and "both --tls-cert and --tls-key" in res.output


def test_a_public_bind_with_tls_and_a_login_is_accepted_and_a_bad_certificate_is_said(tmp_path: Path) -> None:
    from iotex_ops.dashboard import server
    from iotex_ops.paging.tls import LabCA

    ca = LabCA.create(tmp_path / "ca")
    token = auth.write_token_file(tmp_path / "login.token")
    opts = server.Options(inventory=tmp_path / "none.yml", state_dir=tmp_path, listen="0.0.0.0:8470", token_file=token,
                          tls_cert=ca.cert_file, tls_key=ca.key_file)  # fmt: skip
    host, port, tls, sessions = server.prepare(opts)  # checks only: nothing is bound or read
    assert (host, port, tls is not None, sessions.enabled) == ("0.0.0.0", 8470, True, True)  # noqa: S104 - a string compared
    bad = server.Options(inventory=tmp_path / "none.yml", state_dir=tmp_path, tls_cert=token, tls_key=token)
    with pytest.raises(DashboardError, match="cannot load the TLS certificate"):
        server.prepare(bad)
