"""Alertmanager silences for drills: scoped (never a match-all), created, listed by createdBy, expired; against
iotex_ops.testing.FakeAlertmanager (no socket), and once against the real Alertmanager (slow)."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from iotex_ops.alerting.silences import Matcher, SilenceError, Silences, scope_problem, scoped, silence_doc
from iotex_ops.testing import FakeAlertmanager

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_scoped_matchers_name_the_alerts_and_hosts() -> None:
    (one,) = scoped(["DelegateDown"], None)
    assert one == Matcher("alertname", "DelegateDown")
    names, hosts = scoped(["DelegateDown", "DelegateLagging", "DelegateDown"], ["node2", "node1"])
    assert names == Matcher("alertname", "DelegateDown|DelegateLagging", is_regex=True)
    assert hosts == Matcher("host", "node1|node2", is_regex=True)
    (_, dotted) = scoped(["A"], ["a.b"])
    assert dotted.value == "a.b" and not dotted.is_regex  # one host: an equality matcher, no regex
    (_, many) = scoped(["A"], ["a.b", "c"])
    assert many.value == re.escape("a.b") + "|c"  # literal: the dot does not match any character


@pytest.mark.parametrize(
    ("matchers", "why"),
    [
        ([], "without matchers would silence every alert"),
        ([Matcher("host", "node1")], "needs an alertname matcher"),
        ([Matcher("alertname", ".*", is_regex=True)], "needs an alertname matcher"),
        ([Matcher("alertname", "A|.+", is_regex=True)], "needs an alertname matcher"),
        ([Matcher("alertname", "", is_regex=False)], "needs an alertname matcher"),
        ([Matcher("alertname", "A", is_equal=False)], "needs an alertname matcher"),
        ([Matcher("alertname", "A"), Matcher("host", ".*", is_regex=True)], "host=~'.*' matches every value"),
    ],
)
def test_a_match_all_is_refused_before_any_request(matchers: list[Matcher], why: str) -> None:
    problem = scope_problem(matchers)
    assert problem is not None and why in problem
    am = FakeAlertmanager(NOW)
    with pytest.raises(SilenceError, match=re.escape(why)):
        Silences(am).create(matchers, starts=NOW, ends=NOW + timedelta(minutes=5), comment="run r1")
    assert am.calls == []


def test_scoped_refuses_empty_scopes() -> None:
    with pytest.raises(SilenceError, match="at least one alert name"):
        scoped([], ["node1"])
    with pytest.raises(SilenceError, match="at least one host"):
        scoped(["A"], [])


def test_silence_doc_has_times_creator_and_comment() -> None:
    doc = silence_doc(
        scoped(["DelegateDown"], ["node2"]), starts=NOW, ends=NOW + timedelta(minutes=7), comment="iotex-ops drill run r1"
    )
    assert doc == {
        "matchers": [{"name": "alertname", "value": "DelegateDown", "isRegex": False, "isEqual": True},
                     {"name": "host", "value": "node2", "isRegex": False, "isEqual": True}],
        "startsAt": "2026-12-01T12:00:00.000Z", "endsAt": "2026-12-01T12:07:00.000Z",
        "createdBy": "iotex-ops", "comment": "iotex-ops drill run r1",
    }  # fmt: skip
    with pytest.raises(SilenceError, match="must end after it starts"):
        silence_doc(scoped(["A"], None), starts=NOW, ends=NOW, comment="x")
    with pytest.raises(SilenceError, match="needs a comment"):
        silence_doc(scoped(["A"], None), starts=NOW, ends=NOW + timedelta(seconds=1), comment=" ")


def test_a_drill_s_silences_are_created_listed_as_ours_and_expired() -> None:
    am = FakeAlertmanager(NOW)
    silences = Silences(am)
    a = silences.for_drill("r1", ["DelegateDown"], ["node1", "node2"], now=NOW, timeout_s=300)
    b = silences.for_drill("r1", ["ChainStalled"], None, now=NOW, timeout_s=300)
    other = silences.for_drill("r2", ["DelegateDown"], ["node3"], now=NOW, timeout_s=300)
    hour = (NOW + timedelta(hours=1)).isoformat()
    am.silences["theirs"] = {"id": "theirs", "matchers": [{"name": "alertname", "value": "X"}], "createdBy": "alice",
                             "comment": "maintenance", "startsAt": NOW.isoformat(), "endsAt": hour}  # fmt: skip
    assert am.silences[a]["endsAt"] == "2026-12-01T12:07:00.000Z"  # timeout + the 2-minute grace
    assert "iotex-ops drill run r1" in am.silences[a]["comment"]
    assert sorted(s.id for s in silences.ours("r1")) == sorted([a, b])
    assert sorted(s.id for s in silences.ours()) == sorted([a, b, other])  # not alice's
    assert sorted(silences.expire_ours("r1")) == sorted([a, b])
    assert [s.id for s in silences.ours()] == [other]
    assert {s.id: s.state for s in silences.current(include_expired=True)}[a] == "expired"
    silences.expire(a)  # again: fine
    silences.expire("no-such-id")  # gone: fine
    am.advance(10 * 60)  # past every end
    assert silences.ours() == [] and [s.id for s in silences.current()] == ["theirs"]


def test_alertmanager_errors_name_the_server() -> None:
    assert Silences("http://127.0.0.1:1").created_by == "iotex-ops"  # a URL makes an HTTP transport; nothing is sent yet

    def broken(method: str, path: str, body: object) -> object:
        return {"unexpected": True}

    with pytest.raises(SilenceError, match="no silenceID"):
        Silences(broken).create(scoped(["A"], None), starts=NOW, ends=NOW + timedelta(minutes=1), comment="r")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("prometheus-alertmanager") is None, reason="prometheus-alertmanager is not installed")
def test_against_the_real_alertmanager(tmp_path: Path) -> None:
    port = _free_port()
    (tmp_path / "am.yml").write_text("route:\n  receiver: none\nreceivers:\n  - name: none\n")
    proc = subprocess.Popen(
        ["prometheus-alertmanager", f"--config.file={tmp_path / 'am.yml'}", f"--storage.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/-/ready", timeout=1):  # noqa: S310 - loopback test server
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        silences = Silences(url)
        now = datetime.now(UTC)
        sid = silences.for_drill("r-real", ["DelegateDown", "DelegateLagging"], ["node1"], now=now, timeout_s=60)
        (mine,) = silences.ours("r-real")
        assert mine.id == sid and mine.state == "active" and mine.created_by == "iotex-ops"
        assert {m.name for m in mine.matchers} == {"alertname", "host"}
        with pytest.raises(SilenceError, match="needs an alertname matcher"):
            silences.create([Matcher("alertname", ".*", is_regex=True)], starts=now, ends=now + timedelta(minutes=1), comment="x")
        assert silences.expire_ours("r-real") == [sid]
        assert silences.ours() == []
        assert {s.id: s.state for s in silences.current(include_expired=True)}[sid] == "expired"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
