"""The remediation service's decisions, with a fake clock, fake pages and a fake runner (fast, deterministic):
incidents and pages, the policy's limits, the breaker, escalation, restart survival, reconciliation, the
watchdog, and the webhook's HTTP face (401/400/413 change nothing)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from iotex_ops.monitoring import MonitoringStack
from iotex_ops.remediation import daemon as daemon_mod
from iotex_ops.remediation import policy as policy_mod
from iotex_ops.remediation import server as server_mod
from iotex_ops.remediation import webhook
from iotex_ops.remediation.errors import PolicyError, WebhookRejected
from iotex_ops.remediation.server import Server
from iotex_ops.remediation.service import Outcome, Service
from iotex_ops.remediation.store import Store
from iotex_ops.runbook import journal as journal_mod
from iotex_ops.runbook.events import Result
from iotex_ops.testing import FakeClock, FakePages, FakeRunner

TOKEN = "s3cret-webhook-token"


POLICY = {
    "defaults": {"max_attempts": 3, "once_within": "20s", "resolve_after": "5s", "defer": "3s"},
    "limits": {"max_concurrent": 2, "rate": {"starts": 4, "per": "60s"}},
    "breaker": {"failures": 3, "open_for": "10m"},
    "watchdog": {"alert": "Watchdog", "timeout": "30s"},
    "remediations": {
        "DelegateDown": {"runbook": "restart-node", "params": {"host": "{host}"}},
        "DelegateLagging": {"runbook": "rebuild-node", "params": {"host": "{host}"}, "max_attempts": 1},
    },
}


def alert(name: str = "DelegateDown", host: str = "node2", status: str = "firing", **labels: str) -> webhook.Alert:
    lab = {"alertname": name, "severity": "critical", **({"host": host} if host else {}), **labels}
    fp = format(abs(hash((name, host, tuple(sorted(labels.items()))))) % (1 << 60), "x")
    return webhook.Alert(
        fp, status, lab, {"summary": f"{name} on {host}", "runbook": "restart-node"}, "2026-11-21T00:00:00Z", "", ""
    )


class Rig:
    def __init__(self, tmp: Path, runner: FakeRunner | None = None, policy: dict[str, Any] | None = None) -> None:
        self.tmp = tmp
        self.clock = FakeClock()
        self.pages = FakePages()
        self.runner = runner or FakeRunner()
        self.policy = policy_mod.parse(policy or POLICY)
        self.active: list[webhook.Alert] = []
        self.service = self.new_service()

    def new_service(self) -> Service:
        return Service(
            Store(self.tmp / "alertd.db"), self.policy, self.pages, self.runner, self.tmp / "alertd.jsonl",
            network="lab", clock=self.clock, active_alerts=lambda: list(self.active),
        )  # fmt: skip

    def settle(self) -> None:
        """Tick, then wait for the remediation threads it started, then tick again (their outcomes)."""
        self.service.tick()
        for t in list(self.service._workers.values()):
            t.join(timeout=10)
        self.service.tick()

    def journal(self) -> list[dict[str, Any]]:
        return journal_mod.read(self.tmp / "alertd.jsonl")

    def close(self) -> None:
        self.runner.hold.set()
        self.service.stop(wait_s=5)
        self.service.store.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    yield r
    r.close()


KEY = "iotex-ops/lab/DelegateDown/node2"


def test_a_down_delegate_is_paged_remediated_acknowledged_and_resolved_after_the_hold(rig: Rig) -> None:
    rig.service.observe([alert()])
    assert rig.pages.actions(KEY) == ["trigger"]
    rig.settle()
    assert rig.runner.calls[0][2] == {"host": "node2"}
    assert rig.pages.actions(KEY) == ["trigger", "trigger", "acknowledge", "trigger"]  # open, progress, ack, outcome
    assert rig.pages.events[-1]["details"]["remediation"]["state"] == "passed"
    rig.clock.advance(3)
    rig.service.observe([alert(status="resolved")])
    rig.clock.advance(4)
    rig.settle()
    assert rig.pages.actions(KEY)[-1] != "resolve"  # resolved 4 s ago: the page waits for resolve_after (5 s)
    rig.clock.advance(1.5)
    rig.settle()
    assert rig.pages.actions(KEY)[-1] == "resolve"
    kinds = [e["event"] for e in rig.journal()]
    for k in (
        "alert_firing",
        "page_trigger",
        "remediation_start",
        "page_ack",
        "remediation_end",
        "alert_resolved",
        "page_resolve",
    ):
        assert k in kinds
    assert rig.runner.runs() == 1


def test_a_flapping_alert_keeps_one_page_and_one_remediation(rig: Rig) -> None:
    for i in range(50):  # 50 notifications in 10 s, firing and resolved in turn
        rig.service.observe([alert(status="firing" if i % 2 == 0 else "resolved")])
        rig.clock.advance(0.2)
        rig.settle()
    assert rig.service.counters["incidents"] == 1
    assert rig.runner.runs() == 1
    assert rig.service.counters["flaps"] >= 20
    assert rig.pages.actions(KEY).count("resolve") == 0
    rig.clock.advance(6)
    rig.settle()
    assert rig.pages.actions(KEY).count("resolve") == 1


def test_a_storm_across_hosts_is_bounded_by_one_per_host_the_concurrency_and_the_rate(rig: Rig) -> None:
    rig.runner.hold.clear()  # runs stay running
    storm = [alert(host=f"node{i % 10}", instance=f"i{i}") for i in range(50)]
    for i in range(0, 50, 5):
        rig.service.observe(storm[i : i + 5])
        rig.service.tick()
        rig.clock.advance(1)
    running = rig.service.running()
    assert len(running) == 2  # max_concurrent
    assert len({r.host for r in running}) == 2  # never two on one host
    rig.runner.hold.set()
    for _ in range(30):
        rig.clock.advance(1)
        rig.settle()
    assert rig.runner.runs() == 4  # the rate limit: 4 starts per 60 s
    assert rig.service.counters["incidents"] == 50  # one page per incident, none twice
    notes = [e for e in rig.journal() if e["event"] == "remediation_waits"]
    assert any("rate limit" in e["reason"] for e in notes)


def test_three_failures_trip_the_breaker_and_escalate_with_what_was_tried(tmp_path: Path) -> None:
    rig = Rig(tmp_path, FakeRunner({"restart-node": [Outcome("failed", "node2 did not come back: no block for 30s")]}))
    try:
        rig.service.observe([alert()])
        for _ in range(5):
            rig.settle()
            rig.clock.advance(21)  # past once_within
        assert rig.runner.runs() == 3
        esc = [e for e in rig.pages.events if e["key"] == KEY + "/escalated"]
        assert [e["action"] for e in esc] == ["trigger"]
        assert esc[0]["severity"] == "critical"
        assert "circuit breaker" in esc[0]["summary"] or "failed" in esc[0]["summary"]
        assert [t["result"] for t in esc[0]["details"]["tried"]] == ["failed"] * 3
        assert "no block for 30s" in esc[0]["details"]["tried"][0]["error"]
        assert "breaker_open" in [e["event"] for e in rig.journal()]
        # another host's alert for the same runbook is not run while the breaker is open: it escalates
        rig.service.observe([alert(host="node3")])
        rig.settle()
        assert rig.runner.runs() == 3
        assert rig.pages.actions("iotex-ops/lab/DelegateDown/node3/escalated") == ["trigger"]
        # both pages (and the escalations) are resolved once the alerts resolve
        rig.service.observe([alert(status="resolved"), alert(host="node3", status="resolved")])
        rig.clock.advance(6)
        rig.settle()
        assert rig.pages.actions(KEY)[-1] == "resolve"
        assert rig.pages.actions(KEY + "/escalated") == ["trigger", "resolve"]
    finally:
        rig.close()


def test_a_fix_that_passes_while_the_alert_keeps_firing_escalates_only_after_the_window(tmp_path: Path) -> None:
    pol = {**POLICY, "defaults": {**POLICY["defaults"], "max_attempts": 1}}
    rig = Rig(tmp_path, policy=pol)
    try:
        rig.service.observe([alert()])
        rig.settle()
        rig.clock.advance(10)
        rig.settle()
        assert rig.pages.actions(KEY + "/escalated") == []  # the alert may still be resolving
        rig.clock.advance(11)
        rig.settle()
        [esc] = [e for e in rig.pages.events if e["key"] == KEY + "/escalated"]
        assert "still firing after 1 attempt" in esc["summary"]
    finally:
        rig.close()


def test_a_locked_network_defers_without_counting_an_attempt(tmp_path: Path) -> None:
    rig = Rig(
        tmp_path, FakeRunner({"restart-node": [Outcome("deferred", "network lab is locked by run drill-1"), Outcome("passed")]})
    )
    try:
        rig.service.observe([alert()])
        rig.settle()
        assert rig.runner.runs() == 1
        row = rig.service.store.alert(rig.service.store.alerts()[0].fingerprint)
        assert row is not None and row.attempts == 0
        rig.clock.advance(1)
        rig.settle()
        assert rig.runner.runs() == 1  # waits `defer`
        rig.clock.advance(3)
        rig.settle()
        assert rig.runner.runs() == 2
        assert rig.service.store.breaker("restart-node") == (0, None)
    finally:
        rig.close()


def test_a_page_is_acknowledged_only_when_its_remediation_really_starts(tmp_path: Path) -> None:
    """A restart-node run deferred because a drill holds the lock leaves the page triggered (nobody is on it);
    the run that later takes the lock and starts its first step acknowledges it, once."""
    rig = Rig(
        tmp_path, FakeRunner({"restart-node": [Outcome("deferred", "network lab is locked by run drill-1"), Outcome("passed")]})
    )
    try:
        rig.service.observe([alert()])
        rig.settle()
        assert rig.runner.runs() == 1
        assert "acknowledge" not in rig.pages.actions(KEY)
        row = rig.service.store.alert(rig.service.store.alerts()[0].fingerprint)
        assert row is not None and row.page == "triggered"
        assert "page_ack" not in [e["event"] for e in rig.journal()]
        rig.clock.advance(4)
        rig.settle()
        assert rig.runner.runs() == 2
        assert rig.pages.actions(KEY).count("acknowledge") == 1
        actions = rig.pages.actions(KEY)
        assert actions.index("acknowledge") > 1  # after the open and the first progress trigger
        [ack] = [e for e in rig.journal() if e["event"] == "page_ack"]
        assert ack["run_id"] == rig.runner.calls[1][1]  # the run that really started
    finally:
        rig.close()


def test_an_alertmanager_that_restarted_empty_resolves_nothing(rig: Rig) -> None:
    rig.service.observe([alert()])
    rig.settle()
    rig.clock.advance(10)
    rig.active = []
    rig.service.reconcile()  # a restarted Alertmanager lists nothing until Prometheus resends
    rig.active = [alert()]
    rig.service.reconcile()
    rig.clock.advance(10)
    rig.settle()
    assert rig.pages.actions(KEY).count("resolve") == 0
    assert rig.service.counters["incidents"] == 1


def test_a_network_locked_for_long_backs_off_and_escalates_after_defer_for(tmp_path: Path) -> None:
    locked = Outcome("deferred", "network lab is locked by run drill-9 (rehearsal)")
    pol = {**POLICY, "defaults": {**POLICY["defaults"], "defer": "2s", "defer_for": "60s"}}
    rig = Rig(tmp_path, FakeRunner({"restart-node": [locked]}), policy=pol)
    try:
        rig.service.observe([alert()])
        for _ in range(40):
            rig.settle()
            rig.clock.advance(3)
        runs = rig.runner.runs()
        assert 4 <= runs <= 12  # 2 s doubling to a minute, not every 2 s for two minutes
        assert rig.pages.actions(KEY).count("acknowledge") == 0  # no run ever started: nobody is on it
        [esc] = [e for e in rig.pages.events if e["key"] == KEY + "/escalated"]
        assert "could not start" in esc["summary"] and "drill-9" in esc["summary"]
    finally:
        rig.close()


def test_a_deferred_remediation_starts_as_soon_as_the_drill_frees_the_network(tmp_path: Path) -> None:
    """Backed off to tens of seconds while a drill held the lock, it does not wait out its backoff once the
    drill is over: the next tick that finds the lock free starts it (a killed node stayed down a minute)."""
    locked = Outcome("deferred", "network lab is locked by run drill-9 (rehearsal)")
    pol = {**POLICY, "defaults": {**POLICY["defaults"], "defer": "2s", "defer_for": "600s"}}
    rig = Rig(tmp_path, FakeRunner({"restart-node": [locked, locked, locked, locked, Outcome("passed")]}), policy=pol)
    try:
        rig.service.observe([alert()])
        for _ in range(60):  # four deferrals: 2, 4, 8 s apart, then 16 s to wait
            rig.settle()
            if rig.runner.runs() == 4:
                break
            rig.clock.advance(1)
        deferred = rig.runner.runs()
        row = rig.service.store.alert(rig.service.store.alerts()[0].fingerprint)
        assert row is not None and row.not_before is not None and row.not_before - rig.clock() > 5, row
        rig.settle()
        assert rig.runner.runs() == deferred  # still locked: it keeps its backoff
        rig.runner.free = True
        rig.clock.advance(0.5)
        rig.settle()
        assert rig.runner.runs() == deferred + 1
    finally:
        rig.close()


def test_an_alert_that_cannot_be_handled_is_escalated_and_the_others_go_on(tmp_path: Path) -> None:
    class Broken(FakeRunner):
        def known(self, runbook: str) -> bool:
            if runbook == "rebuild-node":
                raise OSError("runbooks directory unreadable")
            return super().known(runbook)

    rig = Rig(tmp_path, Broken())
    try:
        rig.service.observe([alert(name="DelegateLagging", host="node6"), alert(host="node7")])
        rig.settle()
        assert [c[2] for c in rig.runner.calls] == [{"host": "node7"}]  # the other alert is remediated
        [esc] = [e for e in rig.pages.events if e["key"].endswith("DelegateLagging/node6/escalated")]
        assert "alertd cannot handle this alert" in esc["summary"] and "unreadable" in esc["summary"]
        rig.settle()
        assert len([e for e in rig.pages.events if e["key"].endswith("/escalated")]) == 1  # once, not every tick
    finally:
        rig.close()


def test_a_page_event_the_queue_refuses_is_journaled_and_the_others_still_go(tmp_path: Path) -> None:
    class Picky(FakePages):
        def trigger(self, dedup_key: str, *a: Any) -> None:
            if "node6" in dedup_key:
                raise ValueError("the queue refuses this event")
            super().trigger(dedup_key, *a)

    rig = Rig(tmp_path)
    rig.pages = rig.service.pages = Picky()
    try:
        rig.service.observe([alert(host="node6"), alert(host="node7")])
        rig.settle()
        assert rig.pages.actions("iotex-ops/lab/DelegateDown/node7")[:2] == ["trigger", "trigger"]
        errors = [e for e in rig.journal() if e["event"] == "error"]
        assert errors and "refuses this event" in errors[0]["error"]
    finally:
        rig.close()


def test_refused_parameters_and_missing_labels_escalate_at_once_without_tripping_the_breaker(tmp_path: Path) -> None:
    rig = Rig(tmp_path, FakeRunner({"restart-node": [Outcome("refused", "restart-node: no delegate 'node9'")]}))
    try:
        rig.service.observe([alert(host="node9")])
        rig.settle()
        [esc] = [e for e in rig.pages.events if e["key"].endswith("node9/escalated")]
        assert "no delegate 'node9'" in esc["summary"]
        assert rig.service.store.breaker("restart-node")[0] == 0
        rig.service.observe([alert(host="")])  # no host label: the policy's template cannot be filled
        rig.settle()
        esc2 = [e for e in rig.pages.events if e["key"].endswith("/escalated") and "node9" not in e["key"]]
        assert "has no label 'host'" in esc2[0]["summary"]
        assert rig.runner.runs() == 1
    finally:
        rig.close()


def test_restarted_mid_remediation_it_resumes_the_run_instead_of_starting_another(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.runner.hold.clear()
    rig.service.observe([alert()])
    rig.service.tick()
    [running] = rig.service.running()
    assert rig.runner.begun.wait(30)  # its run has begun (journaled)
    # the process dies here: nothing more is written; a new service opens the same state
    svc2 = rig.new_service()
    runner = rig.runner
    svc2.runner = runner
    svc2.recover()
    for t in list(svc2._workers.values()):
        t.join(timeout=10)
    assert [c[0] for c in runner.calls] == ["run", "resume"]
    assert runner.calls[1][1] == running.run_id
    assert svc2.store.remediation(running.id).state == "passed"
    svc2.tick()
    assert runner.runs() == 1  # no second run
    assert rig.pages.actions(KEY).count("trigger") >= 2
    runner.hold.set()
    svc2.stop(wait_s=5)
    svc2.store.close()
    rig.close()


def test_a_crash_before_the_commit_leaves_no_journal_line_and_the_restart_journals_the_start_once(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.runner.hold.clear()
    rig.service.observe([alert()])
    store = rig.service.store

    class Killed(BaseException):
        """kill -9 between the decision and its COMMIT (nothing after it runs)."""

    real = store.transaction

    @contextlib.contextmanager
    def dies_at_commit() -> Iterator[Any]:
        with real() as db:
            yield db
            raise Killed  # inside the transaction: SQLite rolls it back, as a dead process's would be

    store.transaction = dies_at_commit  # type: ignore[method-assign]
    with pytest.raises(Killed):
        rig.service.tick()
    store.transaction = real  # type: ignore[method-assign]
    assert not rig.service.running()
    assert "remediation_start" not in [e["event"] for e in rig.journal()]  # the journal holds what the store holds
    svc2 = rig.new_service()
    rig.runner.hold.set()  # the new service's run goes through
    svc2.recover()
    svc2.tick()
    for t in list(svc2._workers.values()):
        t.join(timeout=10)
    starts = [e for e in rig.journal() if e["event"] == "remediation_start"]
    assert len(starts) == 1 and starts[0]["remediation"] == svc2.store.remediations("1=1")[0].id
    rig.runner.hold.set()
    svc2.stop(wait_s=5)
    svc2.store.close()
    rig.close()


def test_a_run_that_ended_while_the_service_was_down_is_recorded_not_rerun(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    try:
        rig.runner.hold.clear()
        rig.service.observe([alert()])
        rig.service.tick()
        # the run is started by the remediation's own thread: wait until it has begun (CI, a loaded machine:
        # the assertion below once came before the thread had called the runner)
        assert rig.runner.begun.wait(10), "the remediation's run never began"
        [running] = rig.service.running()
        rig.runner.ended_runs[running.run_id] = Outcome("failed", "step verify: node2 still down")
        svc2 = rig.new_service()
        try:
            svc2.recover()
            assert svc2.store.remediation(running.id).state == "failed"
            assert [c[0] for c in rig.runner.calls] == ["run"]  # recorded from the runner's answer, not run again
        finally:
            svc2.stop(wait_s=1)
            svc2.store.close()
    finally:
        rig.close()


def test_reconcile_resolves_what_alertmanager_no_longer_has_and_opens_what_we_missed(rig: Rig) -> None:
    rig.service.observe([alert()])
    rig.settle()
    rig.clock.advance(10)
    missed = alert(name="PeersLow", host="node1")
    rig.active = [missed]  # node2's "resolved" was lost while we were down; PeersLow fired meanwhile
    rig.service.reconcile()
    assert rig.pages.actions("iotex-ops/lab/PeersLow/node1") == ["trigger"]
    assert rig.service.store.alerts("status='firing' AND alertname='DelegateDown'")  # missing once is not enough
    rig.service.reconcile()
    rig.clock.advance(6)
    rig.settle()
    assert rig.pages.actions(KEY)[-1] == "resolve"
    assert rig.pages.actions("iotex-ops/lab/PeersLow/node1") == ["trigger"]


def test_the_watchdog_pages_when_alertmanager_goes_silent_and_resolves_when_it_returns(rig: Rig) -> None:
    wd = alert(name="Watchdog", host="", severity="info")
    rig.service.observe([wd])
    rig.clock.advance(20)
    rig.service.tick()
    assert rig.pages.events == []  # the watchdog itself is never paged
    rig.clock.advance(15)
    rig.service.tick()
    assert [e["action"] for e in rig.pages.events] == ["trigger"]
    assert "alerting pipeline silent" in rig.pages.events[0]["summary"]
    rig.service.observe([wd])
    rig.service.tick()
    assert [e["action"] for e in rig.pages.events] == ["trigger", "resolve"]


# -- policy ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"remediations": {"DelegateDown": {"params": {}}}}, r"remediations.DelegateDown: `runbook`"),
        ({"defaults": {"once_within": "soon"}}, r"defaults.once_within: 'soon' is not a duration"),
        ({"defaults": {"max_attempts": 0}}, r"defaults.max_attempts: expected a whole number >= 1"),
        ({"limits": {"rate": {"starts": 3, "every": "1m"}}}, r"limits.rate: unknown key\(s\) every"),
        ({"remedations": {}}, r"unknown key\(s\) remedations"),
        ({"remediations": {"X": {"runbook": "r", "params": {"host": "{host"}}}}, r"remediations.X.params: bad template"),
        ({"remediations": {"X": {"runbook": "r", "params": {"host": "{host:d}"}}}}, r"only plain label names"),
        ({"remediations": {"X": {"runbook": "r", "params": {"host": "{labels[0]}"}}}}, r"only plain label names"),
    ],
)
def test_a_bad_policy_is_refused_naming_the_key(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        policy_mod.parse(doc, "policy.yml")


def test_the_shipped_policy_parses_and_names_the_remediation_runbooks() -> None:
    pol = policy_mod.load(policy_mod.DEFAULT_POLICY)
    assert {"restart-node", "resume-delegate", "rebuild-node"} <= pol.runbooks()
    assert pol.for_alert("DelegateDown") is not None
    assert pol.for_alert("DelegateDown").render({"host": "node1"}) == {"host": "node1"}  # type: ignore[union-attr]


# -- webhook payloads and the HTTP face --------------------------------------------------------------------------


def payload(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {"version": "4", "status": "firing", "receiver": "alertd", "alerts": list(alerts)}


def am_alert(status: str = "firing", fp: str = "a1b2c3", **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "DelegateDown", "host": "node2", "severity": "critical", **labels},
        "annotations": {"summary": "node2 down"},
        "startsAt": "2026-11-21T04:00:00.123456789Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://127.0.0.1:9090/graph",
        "fingerprint": fp,
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not JSON"),
        (b"[]", "not a JSON object"),
        (json.dumps({"version": "3", "alerts": [am_alert()]}).encode(), "version '3'"),
        (json.dumps(payload()).encode(), "non-empty list"),
        (json.dumps(payload({**am_alert(), "status": "pending"})).encode(), r"alerts\[0\].status: 'pending'"),
        (json.dumps(payload({**am_alert(), "labels": {"host": "x"}})).encode(), "no alertname"),
        (json.dumps(payload({**am_alert(), "fingerprint": "../../etc"})).encode(), "not a hex fingerprint"),
        (json.dumps(payload({**am_alert(), "startsAt": "yesterday"})).encode(), "not an RFC 3339 time"),
        (json.dumps(payload({**am_alert(), "labels": {"alertname": 5}})).encode(), "expected an object of strings"),
    ],
)
def test_a_malformed_webhook_is_rejected_naming_what_is_wrong(body: bytes, message: str) -> None:
    with pytest.raises(WebhookRejected, match=message):
        webhook.parse(body)


def _post(url: str, body: bytes, token: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    req = urllib.request.Request(url, data=body, headers=headers)  # noqa: S310 - the test's own server
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.slow  # the webhook's HTTP server on a socket
def test_the_webhook_refuses_unauthenticated_and_malformed_requests_and_changes_nothing(rig: Rig) -> None:
    srv = Server(rig.service, TOKEN)
    srv.start("127.0.0.1", 0)
    try:
        url = srv.url + "/v1/alerts"
        good = json.dumps(payload(am_alert())).encode()
        assert _post(url, good, None)[0] == 401
        assert _post(url, good, "wrong")[0] == 401
        code, doc = _post(url, b'{"version": "4", "alerts": [{"status": "firing"}]}', TOKEN)
        assert code == 400 and "labels" in doc["error"]
        assert _post(url, b"x" * (2 << 20), TOKEN)[0] == 413
        assert rig.service.store.alerts() == [] and rig.pages.events == []
        assert _post(url, good, TOKEN) == (200, {"accepted": 1})
        assert [a.alertname for a in rig.service.store.alerts()] == ["DelegateDown"]
        with urllib.request.urlopen(srv.url + "/metrics", timeout=5) as resp:  # noqa: S310
            text = resp.read().decode()
        assert 'alertd_webhooks_total{code="401"} 2' in text
        assert "alertd_alerts_firing 1" in text
        assert TOKEN not in repr(srv) and TOKEN not in text
    finally:
        srv.stop()


# -- the command line ------------------------------------------------------------------------------------------


def test_check_policy_lists_the_remediations_and_refuses_a_runbook_that_does_not_exist(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from iotex_ops.cli import main

    ok = CliRunner().invoke(main, ["alertd", "check-policy", str(policy_mod.DEFAULT_POLICY)])
    assert ok.exit_code == 0, ok.output
    assert "restart-node" in ok.output and "DelegateDown" in ok.output
    bad = tmp_path / "policy.yml"
    bad.write_text("remediations:\n  DelegateDown: {runbook: reboot-the-world}\n")
    res = CliRunner().invoke(main, ["alertd", "check-policy", str(bad)])
    assert res.exit_code == 2
    assert "runbook(s) not found: reboot-the-world" in res.output and "Traceback" not in res.output


def test_status_reads_the_state_while_alertd_is_down(rig: Rig) -> None:
    from click.testing import CliRunner

    from iotex_ops.cli import main

    rig.service.observe([alert()])
    rig.settle()
    res = CliRunner().invoke(main, ["alertd", "status", "--state-dir", str(rig.tmp), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert [a["alertname"] for a in doc["alerts"]] == ["DelegateDown"]
    assert [(r["runbook"], r["state"]) for r in doc["remediations"]] == [("restart-node", "passed")]
    missing = CliRunner().invoke(main, ["alertd", "status", "--state-dir", str(rig.tmp / "nowhere")])
    assert missing.exit_code == 2 and "no alertd state" in missing.output


def test_alertd_refuses_to_start_with_a_short_webhook_token(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from iotex_ops.cli import main

    short = tmp_path / "token"
    short.write_text("abc")
    res = CliRunner().invoke(main, ["alertd", "run", "-i", str(tmp_path), "--token-file", str(short)])
    assert res.exit_code == 2 and "shorter than 16 characters" in " ".join(res.output.split())


# -- alertd under a storm (issue 17): alerts it cannot act on --


def test_alerts_for_unknown_hosts_spend_no_rate_limit_and_a_real_one_starts_at_once(tmp_path: Path) -> None:
    """Twelve alerts for hosts the inventory does not know, then a real one: the real one starts on the next tick
    (before the fix, the refused runs filled the rate limit and it waited out the window)."""
    rig = Rig(tmp_path, FakeRunner(hosts=("node0", "node1", "node2", "node3")))
    try:
        rig.service.observe([alert(host=f"ghost{i}") for i in range(12)])
        for _ in range(5):
            rig.clock.advance(1)
            rig.settle()
        assert rig.runner.runs() == 0
        assert rig.service.store.remediations("1=1") == []
        rig.service.observe([alert(host="node2")])
        rig.settle()
        assert [c[2] for c in rig.runner.calls] == [{"host": "node2"}]
        assert rig.pages.events[-1]["details"]["remediation"]["state"] == "passed"
        assert not any("rate limit" in e.get("reason", "") for e in rig.journal())
    finally:
        rig.close()


def test_an_alert_for_an_unknown_host_gives_one_page_that_says_so_and_no_escalation(tmp_path: Path) -> None:
    rig = Rig(tmp_path, FakeRunner(hosts=("node0", "node1")))
    try:
        rig.service.observe([alert(host="node9")])
        for _ in range(30):  # long past once_within and the attempts: still one page, never escalated
            rig.clock.advance(1)
            rig.settle()
        key = "iotex-ops/lab/DelegateDown/node9"
        assert rig.pages.actions() == ["trigger"]
        [page] = rig.pages.events
        assert page["key"] == key
        assert "node9" in page["summary"] and "not a delegate of the inventory" in page["summary"]
        assert page["details"]["remediation"].startswith("none: host 'node9' is not a delegate")
        assert rig.service.counters.get("escalations", 0) == 0
        refused = [e for e in rig.journal() if e["event"] == "remediation_refused"]
        assert len(refused) == 1 and refused[0]["host"] == "node9"
        rig.service.observe([alert(host="node9", status="resolved")])
        rig.clock.advance(6)
        rig.settle()
        assert rig.pages.actions() == ["trigger", "resolve"]
    finally:
        rig.close()


def test_an_alert_whose_runbook_is_not_installed_gives_one_page_and_spends_nothing(tmp_path: Path) -> None:
    rig = Rig(tmp_path)  # rebuild-node is not installed in this runner
    try:
        rig.service.observe([alert(name="DelegateLagging", host="node3")])
        rig.settle()
        [page] = rig.pages.events
        assert "runbook rebuild-node is not installed" in page["summary"]
        assert rig.service.store.starts_since(0) == []
        assert rig.service.counters.get("escalations", 0) == 0
    finally:
        rig.close()


def test_runs_refused_by_the_runner_do_not_count_for_the_rate_limit(tmp_path: Path) -> None:
    """A refusal only the run itself finds (its preflight) is recorded, escalated, and not counted as a start."""
    refused = [Outcome("refused", "restart-node: preflight says no")] * 6
    rig = Rig(tmp_path, FakeRunner({"restart-node": [*refused, Outcome(Result.PASSED)]}))
    try:
        for i in range(6):
            rig.service.observe([alert(host=f"node{i}")])
            rig.settle()
        assert rig.runner.runs() == 6
        assert rig.service.store.starts_since(0) == []  # the rate limit (4 per 60 s) is untouched
        rig.service.observe([alert(host="node7")])
        rig.settle()
        assert rig.runner.runs() == 7
    finally:
        rig.close()


# -- alertd's log and its links (issue 17) --

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


@contextlib.contextmanager
def alertd_log() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    hook = threading.excepthook
    handler = daemon_mod.configure_logging(buf)
    try:
        yield buf
    finally:
        logging.getLogger().removeHandler(handler)
        threading.excepthook = hook
        logging.captureWarnings(False)


def test_every_log_line_has_a_timestamp_and_a_traceback_stays_on_its_line() -> None:
    with alertd_log() as buf:
        logging.getLogger("iotex_ops.paging.pager").info("pager: delivered %s after %d attempts", "trigger x", 2)
        try:
            raise ValueError("boom\nsecond line")
        except ValueError:
            logging.getLogger("alertd").exception("sender error")
        threading.Thread(target=lambda: 1 / 0, name="worker-x").start()  # an uncaught error in a thread
        time.sleep(0.2)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 3, lines
    assert all(STAMP.match(line) for line in lines), lines
    assert "Traceback" in lines[1] and " | " in lines[1]


def test_a_client_resetting_its_connection_is_one_line_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    with alertd_log() as buf:
        for exc in (ConnectionResetError(104, "Connection reset by peer"), BrokenPipeError(32, "Broken pipe")):
            try:
                raise exc
            except OSError:
                server_mod._Server.handle_error(object.__new__(server_mod._Server), None, ("127.0.0.1", 40123))
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2 and all(STAMP.match(line) for line in lines), lines
    assert "client 127.0.0.1:40123 closed its connection" in lines[0] and "ConnectionResetError" in lines[0]
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.slow  # the webhook's HTTP server on a socket
def test_a_real_connection_reset_mid_request_is_logged_as_one_line(rig: Rig, capfd: pytest.CaptureFixture[str]) -> None:
    srv = Server(rig.service, TOKEN)
    srv.start("127.0.0.1", 0)
    try:
        with alertd_log() as buf:
            host, port = srv.url.removeprefix("http://").split(":")
            for _ in range(3):
                s = socket.create_connection((host, int(port)), timeout=5)
                s.sendall(b'POST /v1/alerts HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{"version"')
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()  # RST while the server reads the body
            deadline = time.monotonic() + 10
            while buf.getvalue().count("\n") < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            # the server still answers
            with urllib.request.urlopen(srv.url + "/healthz", timeout=5) as resp:  # noqa: S310
                assert resp.status == 200
        lines = buf.getvalue().splitlines()
        assert len(lines) == 3 and all("closed its connection" in x and STAMP.match(x) for x in lines), lines
        assert "Traceback" not in capfd.readouterr().err
    finally:
        srv.stop()


def test_prometheus_and_alertmanager_links_name_the_address_they_listen_on(tmp_path: Path) -> None:
    stack = MonitoringStack(tmp_path, [], 19090, 19093)
    prom, am = stack.command("prometheus"), stack.command("alertmanager")
    assert "--web.listen-address=127.0.0.1:19090" in prom and "--web.external-url=http://127.0.0.1:19090" in prom
    assert "--web.listen-address=127.0.0.1:19093" in am and "--web.external-url=http://127.0.0.1:19093" in am


def test_a_page_links_to_the_alerts_generator_url(rig: Rig) -> None:
    a = alert()
    rig.service.observe([webhook.Alert(a.fingerprint, a.status, a.labels, a.annotations, a.starts_at, a.ends_at,
                                       "http://127.0.0.1:19090/graph?g0.expr=up")])  # fmt: skip
    links = rig.pages.events[0]["links"]
    assert {"href": "http://127.0.0.1:19090/graph?g0.expr=up", "text": "the alert's query in Prometheus"} in links
