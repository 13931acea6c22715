"""Alerts end to end on a real local lab: the nodes, the real Prometheus and Alertmanager with the generated
rules and routes, `iotex-ops alertd` and the HTTPS PagerDuty-compatible receiver, as `lab up` starts them.

kill -9 and SIGSTOP a delegate and watch the incident go triggered -> acknowledged -> resolved while the
restart runbook brings the node back; restart alertd in the middle of a remediation; a storm of flapping
alerts (while the receiver answers 429 and 500) runs a bounded number of remediations and pages once per
incident, with every event delivered afterwards in order; a remediation that fails three times trips the
breaker and escalates."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from iotex_ops.lab import lab as lab_mod
from iotex_ops.lab import ops_services
from iotex_ops.paging.receiver import LabClient
from iotex_ops.runbook import journal as journal_mod
from iotex_ops.runbook.checks import wait_for as until  # polls; a timeout fails the test naming what
from tests.ops import lab_checks
from tests.ops.conftest import SharedLab
from tests.ops.drill_lab import chains

pytestmark = [
    pytest.mark.slow,
    pytest.mark.network,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="the lab needs the Debian prometheus package"),
]

FIXTURE_RUNBOOKS = Path(__file__).parent / "alertd_fixture"


@pytest.fixture(scope="module")
def lab(shared_lab: SharedLab) -> lab_mod.LabState:
    return shared_lab.get()


def test_lab_up_brings_up_the_nodes_monitoring_alertd_and_the_pager(shared_lab: SharedLab, lab: lab_mod.LabState) -> None:
    shared_lab.footprint = lab_checks.check_up(lab)
    with urllib.request.urlopen(lab.alertd_url + "/healthz", timeout=5) as resp:  # noqa: S310 - the lab's alertd
        assert json.loads(resp.read())["ok"] is True
    with urllib.request.urlopen(lab.alertd_url + "/metrics", timeout=5) as resp:  # noqa: S310
        assert "alertd_alerts_firing" in resp.read().decode()
    assert LabClient.for_dir(lab.pager_dir).incidents() == []  # a healthy lab pages nobody
    rendered = Path(lab.monitoring_dir)
    assert {"prometheus.yml", "rules.yml", "rules.test.yml", "alertmanager.yml"} <= {p.name for p in rendered.iterdir()}
    prom = json.loads(urllib.request.urlopen(lab.prometheus_url + "/api/v1/rules", timeout=5).read())  # noqa: S310
    names = {r["name"] for g in prom["data"]["groups"] for r in g["rules"]}
    assert {"DelegateDown", "ChainStalled", "DelegatePausedUnexpectedly", "Watchdog"} <= names


def journal(lab: lab_mod.LabState) -> list[dict[str, Any]]:
    path = Path(lab.alertd_state_dir) / "alertd.jsonl"
    return journal_mod.read(path) if path.exists() else []


def incident(pager: LabClient, key_suffix: str, status: str | None = None) -> dict[str, Any] | None:
    found = [i for i in pager.incidents() if i["dedup_key"].endswith(key_suffix)]
    if status is not None:
        found = [i for i in found if i["status"] == status]
    return found[-1] if found else None


def finalizing_with_peers(lab: lab_mod.LabState, name: str) -> bool:
    try:
        cs = {n.name: c["finalized_height"] for n, c in zip(lab.nodes, chains(lab), strict=True)}
    except Exception:  # a node still starting
        return False
    return cs[name] >= max(cs.values()) - 2


def kill_node(lab: lab_mod.LabState, name: str, sig: int) -> int:
    pid = lab.node_pid(name)
    assert pid is not None, f"{name} is not running"
    os.kill(pid, sig)
    return pid


def healthy(lab: lab_mod.LabState) -> None:
    """Every node finalizing and every incident resolved: the state each test starts from."""
    pager = LabClient.for_dir(lab.pager_dir)
    until("every node finalizing", lambda: all(finalizing_with_peers(lab, n.name) for n in lab.nodes), 60)
    until("no open incident", lambda: all(i["status"] == "resolved" for i in pager.incidents()), 60)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP], ids=["kill-9", "sigstop"])
def test_a_dead_or_frozen_delegate_is_paged_restarted_and_resolved(lab: lab_mod.LabState, sig: int) -> None:
    healthy(lab)
    name = lab.nodes[1].name if sig == signal.SIGKILL else lab.nodes[2].name
    pager = LabClient.for_dir(lab.pager_dir)
    before = len(journal(lab))
    pid = kill_node(lab, name, sig)
    try:
        t0 = time.monotonic()
        opened = until("an incident for DelegateDown", lambda: incident(pager, f"/DelegateDown/{name}"), 30)
        t_page = time.monotonic() - t0
        until("the node finalizing with its peers", lambda: finalizing_with_peers(lab, name), 40)
        t_back = time.monotonic() - t0
        resolved = until("the incident resolved", lambda: incident(pager, f"/DelegateDown/{name}", "resolved"), 60)
    finally:
        if sig == signal.SIGSTOP:
            with_suppressed_kill(pid)
    assert resolved["id"] == opened["id"]  # one incident, paged once
    assert resolved["acknowledged_at"], "the page was acknowledged when the remediation started"
    evs = journal(lab)[before:]
    mine = [e for e in evs if e.get("host") == name or e.get("fingerprint") == _fp(evs, name)]
    kinds = [e["event"] for e in mine]
    expected = ("alert_firing", "page_trigger", "remediation_start", "page_ack", "remediation_end")
    expected += ("alert_resolved", "page_resolve")
    assert [k for k in expected if k not in kinds] == [], kinds
    [end] = [e for e in mine if e["event"] == "remediation_end"]
    assert end["result"] == "passed", end
    run = journal_mod.read(Path(end["journal"]))
    assert run[0]["runbook"] == "restart-node" and run[0]["params"]["host"] == name
    assert run[-1]["event"] == "run_end" and run[-1]["result"] == "passed"
    [diagnosis] = [e for e in run if e.get("name") == "diagnosis"]
    assert diagnosis["condition"] == ("frozen" if sig == signal.SIGSTOP else "crashed"), diagnosis
    assert t_page < 15 and t_back < 25, (t_page, t_back)


def with_suppressed_kill(pid: int) -> None:
    """A stopped process left behind would outlive the test: continue it (it is killed by the lab later)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)


def _fp(evs: list[dict[str, Any]], host: str) -> str | None:
    for e in evs:
        if e["event"] == "alert_firing" and e.get("host") == host:
            return str(e["fingerprint"])
    return None


def test_alertd_restarted_in_the_middle_of_a_remediation_neither_repeats_it_nor_loses_the_page(lab: lab_mod.LabState) -> None:
    healthy(lab)
    name = lab.nodes[3].name
    pager = LabClient.for_dir(lab.pager_dir)
    before = len(journal(lab))
    kill_node(lab, name, signal.SIGKILL)
    until("the remediation started", lambda: any(e["event"] == "remediation_start" for e in journal(lab)[before:]), 30, 0.05)
    ops_services.stop_alertd(Path(lab.root), kill=True)  # kill -9 in the middle of it
    ops_services.restart_alertd(lab)
    until("the node finalizing with its peers", lambda: finalizing_with_peers(lab, name), 60)
    until("the incident resolved", lambda: incident(pager, f"/DelegateDown/{name}", "resolved"), 60)
    evs = journal(lab)[before:]
    starts = [e for e in evs if e["event"] == "remediation_start" and e["host"] == name]
    assert len(starts) == 1, starts  # not started again
    assert any(e["event"] == "recovered" for e in evs)
    runs = [p for p in (Path(lab.alertd_state_dir) / "runs").iterdir() if p.name == starts[0]["run_id"]]
    assert len(runs) == 1
    run = journal_mod.read(runs[0] / "journal.jsonl")
    assert sum(1 for e in run if e["event"] == "run_start") <= 1
    assert run[-1]["event"] == "run_end" and run[-1]["result"] == "passed"
    assert len([i for i in pager.incidents() if i["dedup_key"].endswith(f"/DelegateDown/{name}")]) >= 1


def _post(url: str, token: str, alerts: list[dict[str, Any]]) -> int:
    body = json.dumps({"version": "4", "status": "firing", "receiver": "alertd", "alerts": alerts}).encode()
    req = urllib.request.Request(  # noqa: S310 - the lab's loopback alertd
        url + "/v1/alerts", data=body, headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
        return int(resp.status)


def _storm_alert(name: str, host: str, status: str, fp: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": name, "host": host, "severity": "warning", "storm": "yes"},
        "annotations": {"summary": f"storm {name} on {host}"},
        "startsAt": "2026-11-21T00:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": fp,
    }


def test_a_flapping_storm_while_pagerduty_throttles_runs_bounded_remediations_and_delivers_every_page_in_order(
    lab: lab_mod.LabState,
) -> None:
    healthy(lab)
    pager = LabClient.for_dir(lab.pager_dir)
    status_before = pager.stats()["by_status"]
    token = (Path(lab.root) / "alertd" / "webhook.token").read_text().strip()
    before = len(journal(lab))
    seen_before = len(pager.events())
    pager.set_fault(429, seconds=3)
    pager.set_fault(500, count=3)
    hosts = [n.name for n in lab.nodes]
    # 50 notifications in 10 s: DelegatePausedUnexpectedly for every host, flapping firing/resolved
    t0 = time.monotonic()
    for i in range(50):
        host = hosts[i % len(hosts)]
        status = "firing" if (i // len(hosts)) % 2 == 0 else "resolved"
        fp = f"5707{i % len(hosts):04x}"
        assert _post(lab.alertd_url, token, [_storm_alert("DelegatePausedUnexpectedly", host, status, fp)]) == 200
        time.sleep(max(0.0, t0 + (i + 1) * 0.2 - time.monotonic()))
    for i, host in enumerate(hosts):  # the storm ends resolved
        _post(lab.alertd_url, token, [_storm_alert("DelegatePausedUnexpectedly", host, "resolved", f"5707{i:04x}")])
    keys = [f"/DelegatePausedUnexpectedly/{h}" for h in hosts]
    until("every storm incident resolved", lambda: all(incident(pager, k, "resolved") for k in keys), 90)
    evs = journal(lab)[before:]
    starts = [e for e in evs if e["event"] == "remediation_start"]
    assert len(starts) <= len(hosts)  # once within the window per alert and host: at most one each
    for k in keys:
        assert len([i for i in pager.incidents() if i["dedup_key"].endswith(k)]) == 1  # paged once per incident
    got = [e for e in pager.events()[seen_before:] if any(e["dedup_key"].endswith(k) for k in keys)]
    for k in keys:  # in the order alertd sent them, despite 429s and 500s
        actions = [e["event_action"] for e in got if e["dedup_key"].endswith(k)]
        assert actions[0] == "trigger" and actions[-1] == "resolve", actions
        if "acknowledge" in actions:
            assert actions.index("acknowledge") < actions.index("resolve")
    by_status = pager.stats()["by_status"]
    n429 = int(by_status.get("429", 0)) - int(status_before.get("429", 0))
    n500 = int(by_status.get("500", 0)) - int(status_before.get("500", 0))
    assert n429 >= 1 and n500 == 3, by_status  # the outage happened, and was ridden out


def test_a_remediation_that_fails_three_times_trips_the_breaker_and_escalates(lab: lab_mod.LabState, tmp_path: Path) -> None:
    """A second alertd with a fixture runbook that always fails, paging the lab's receiver."""
    receiver = json.loads((Path(lab.pager_dir) / "receiver.json").read_text())
    token = tmp_path / "token"
    token.write_text("t" * 32)
    policy = tmp_path / "policy.yml"
    policy.write_text(
        "defaults: {max_attempts: 5, once_within: 1s, resolve_after: 1s}\n"
        "breaker: {failures: 3, open_for: 10m}\n"
        "remediations:\n  BrokenThing: {runbook: always-fails, params: {host: '{host}'}}\n"
    )
    from iotex_node.testnet import free_ports

    [port] = free_ports(1)
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "iotex-ops"), "alertd", "run", "-i", lab.inventory, "--token-file", str(token),
         "--policy", str(policy), "--listen", f"127.0.0.1:{port}", "--state-dir", str(tmp_path / "state"),
         "--pager-url", receiver["url"], "--routing-key-file", receiver["routing_key_file"],
         "--pager-ca-file", receiver["ca_file"], "--runbooks", str(FIXTURE_RUNBOOKS)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "alertd listening" in line, line + proc.stdout.read()
        url = f"http://127.0.0.1:{port}"
        host = lab.nodes[0].name
        _post(url, "t" * 32, [_storm_alert("BrokenThing", host, "firing", "b0b0")])
        pager = LabClient.for_dir(lab.pager_dir)
        esc = until("the escalation", lambda: incident(pager, f"/BrokenThing/{host}/escalated"), 60)
        assert esc["status"] == "triggered" and esc["severity"] == "critical"
        evs = journal_mod.read(tmp_path / "state" / "alertd.jsonl")
        ends = [e for e in evs if e["event"] == "remediation_end"]
        assert [e["result"] for e in ends] == ["failed"] * 3
        assert any(e["event"] == "breaker_open" for e in evs)
        tried = esc.get("custom_details", {}).get("tried") or []
        assert len(tried) == 3 and "always fails" in tried[0]["error"]
        _post(url, "t" * 32, [_storm_alert("BrokenThing", host, "resolved", "b0b0")])
        until("both pages resolved", lambda: incident(pager, f"/BrokenThing/{host}/escalated", "resolved"), 30)
        assert incident(pager, f"/BrokenThing/{host}", "resolved")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
