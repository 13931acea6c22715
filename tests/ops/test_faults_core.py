"""The fault drills' pure core (iotex_ops/faults/core.py) and the drill route's marking: no process, no socket."""

from __future__ import annotations

from pathlib import Path

import pytest

from iotex_ops.faults import core
from iotex_ops.faults.core import FaultError, FiringAlert, Limits, Observation
from iotex_ops.paging import drill_route

NODES = ["node0", "node1", "node2", "node3"]


def test_f_bound_is_floor_of_n_minus_one_over_three() -> None:
    assert [core.f_bound(n) for n in (1, 2, 3, 4, 6, 7, 10, 24)] == [0, 0, 0, 1, 1, 2, 3, 7]


def test_opted_in_reads_the_inventory_var() -> None:
    hv = {
        "node0": {"iotex_gameday_opt_in": True},
        "node1": {},
        "node2": {"iotex_gameday_opt_in": "yes"},
        "node3": {"iotex_gameday_opt_in": "false"},
    }
    assert core.opted_in(hv) == ["node0", "node2"]


def test_the_victim_is_drawn_from_the_opted_in_and_the_seed_replays_it() -> None:
    draws = {core.choose_victims(NODES, ["node1", "node2", "node3"], seed=s).victims for s in range(1, 60)}
    assert draws == {("node1",), ("node2",), ("node3",)}  # never node0 (not opted in); every candidate drawn
    a = core.choose_victims(NODES, NODES, seed=1234)
    assert core.choose_victims(NODES, NODES, seed=1234) == a and a.seed == 1234 and a.f == 1 and not a.forced
    assert a.to_json()["candidates"] == NODES


def test_the_f_bound_and_one_fault_at_a_time() -> None:
    with pytest.raises(FaultError, match="one fault at a time unless asked"):
        core.choose_victims(NODES, NODES, seed=1, count=2)
    with pytest.raises(FaultError, match=r"2 of 4 delegates out at once.*f = floor\(\(n-1\)/3\) = 1"):
        core.choose_victims(NODES, NODES, seed=1, count=2, allow_concurrent=True)
    with pytest.raises(FaultError, match="1 already out: node3"):
        core.choose_victims(NODES, NODES, seed=1, already_out=["node3"])
    seven = [f"n{i}" for i in range(7)]
    two = core.choose_victims(seven, seven, seed=5, count=2, allow_concurrent=True)
    assert len(set(two.victims)) == 2 and two.f == 2
    with pytest.raises(FaultError, match="at most f"):
        core.choose_victims(seven, seven, seed=5, count=2, allow_concurrent=True, already_out=["n0"])
    with pytest.raises(FaultError, match="at most f"):
        core.choose_victims(["a", "b", "c"], ["a", "b", "c"], seed=1)  # 3 delegates: f = 0, no fault at all


def test_a_named_host_must_be_opted_in_and_in() -> None:
    assert core.choose_victims(NODES, NODES, seed=1, host="node2").victims == ("node2",)
    with pytest.raises(FaultError, match="not opted in"):
        core.choose_victims(NODES, ["node1"], seed=1, host="node2")
    with pytest.raises(FaultError, match="not a delegate"):
        core.choose_victims(NODES, NODES, seed=1, host="controller")
    with pytest.raises(FaultError, match="eligible: opt delegates in"):
        core.choose_victims(NODES, [], seed=1)


LIMITS = Limits(stall_s=4.0, missed_budget=3)


def test_stop_conditions() -> None:
    quiet = Observation(10.0, 100)
    assert core.stop_reason(quiet, 1.0, ["node2"], NODES, LIMITS) is None
    # the victim's own alerts are the drill's purpose; Watchdog and alerts on non-delegates never stop it
    own = Observation(10.0, 100, (FiringAlert("DelegateDown", "node2"), FiringAlert("Watchdog"), FiringAlert("X", "controller")))
    assert core.stop_reason(own, 1.0, ["node2"], NODES, LIMITS) is None
    other = Observation(10.0, 100, (FiringAlert("DelegateDown", "node1"), FiringAlert("DelegateDown", "node2")))
    assert core.stop_reason(other, 1.0, ["node2"], NODES, LIMITS) == "an alert fired on another delegate: DelegateDown on node1"
    assert core.stop_reason(other, 1.0, ["node2"], NODES, LIMITS, baseline=[FiringAlert("DelegateDown", "node1")]) is None
    stalled = core.stop_reason(quiet, 4.0, ["node2"], NODES, LIMITS)
    assert stalled is not None and stalled.startswith("the chain stopped finalizing: no new block for 4.0s")
    over = Observation(10.0, 100, missed={"node2": 4})
    assert core.stop_reason(over, 0.0, ["node2"], NODES, LIMITS) == "missed-slot budget exceeded: node2 missed 4 slots (budget 3)"
    assert core.stop_reason(Observation(10.0, 100, missed={"node2": 3}), 0.0, ["node2"], NODES, LIMITS) is None


def test_the_stall_clock_follows_the_top() -> None:
    clock = core.StallClock(0.0, 100)
    assert clock.feed(Observation(1.0, 100)) == 1.0
    assert clock.feed(Observation(2.0, 101)) == 0.0
    assert clock.feed(Observation(3.0, None)) == 1.0  # nobody answers: the top did not move
    assert clock.feed(Observation(6.5, 101)) == 4.5


def test_missed_slots_across_an_epoch_boundary() -> None:
    assert core.missed_since((3, 1), (3, 4)) == 3
    assert core.missed_since((3, 1), (4, 2), end_of_before_epoch=3) == 4
    assert core.missed_since((3, 1), (4, 2)) == 2  # the old epoch's end unknown: its share counts 0


def test_scorecard_and_timeline() -> None:
    moments = {"alert": 102.5, "page": 102.75, "remediation": 103.0, "recovered": 106.25}
    card = core.scorecard(100.0, moments, missed_slots=2, lost_actions=0, escalated=False, ended_at=108.0)
    assert card["time_to_detect_s"] == 2.5 and card["time_to_page_s"] == 2.75
    assert card["time_to_acknowledge_s"] == 3.0 and card["time_to_recover_s"] == 6.25 and card["fault_s"] == 8.0
    assert card["within_targets"] == {"time_to_detect_s": True, "time_to_recover_s": True}
    slow = core.scorecard(100.0, {"alert": 104.0}, missed_slots=None, lost_actions=None, escalated=True)
    assert slow["time_to_recover_s"] is None and slow["within_targets"] == {"time_to_detect_s": False, "time_to_recover_s": False}
    rows = core.timeline(100.0, moments, ended_at=108.0)
    assert [r["key"] for r in rows] == ["fault", "alert", "page", "remediation", "recovered", "fault_end"]
    assert core.median([3.0, None, 1.0, 2.0]) == 2.0 and core.median([1.0, 2.0]) == 1.5 and core.median([None]) is None


def test_the_drill_route_marks_pages_while_a_drill_is_on(tmp_path: Path) -> None:
    marker = drill_route.marker_path(tmp_path, "lab")
    assert drill_route.read(marker) is None
    drill_route.write(marker, "r1", "fault-kill", ["node2"], until=2000.0)
    on = drill_route.read(marker, now=1000.0)
    assert on is not None and drill_route.read(marker, now=2001.0) is None  # a dead drill's marker expires
    summary, details = drill_route.mark("node2 is down", {"host": "node2"}, on)
    assert summary == "[DRILL r1] node2 is down" and details["drill"]["victims"] == ["node2"] and details["host"] == "node2"
    assert drill_route.is_drill_page(summary, details) and not drill_route.is_drill_page("node2 is down", {})
    assert drill_route.mark("s", {"a": 1}, None) == ("s", {"a": 1})
    drill_route.remove(marker, "someone-else")
    assert marker.exists()
    drill_route.remove(marker, "r1")
    assert not marker.exists()


def test_the_partition_blackholes_the_peers_and_heals() -> None:
    from iotex_ops.faults import edge

    peers = ["10.247.0.3", "10.247.0.4"]
    assert edge.partition_commands(peers) == ["ip route add blackhole 10.247.0.3/32", "ip route add blackhole 10.247.0.4/32"]
    assert edge.heal_commands(peers) == ["ip route del blackhole 10.247.0.3/32", "ip route del blackhole 10.247.0.4/32"]
    assert edge.partition_commands(["1.2.3.4; rm"]) == ["ip route add blackhole '1.2.3.4; rm'/32"]  # quoted for the shell


def test_open_pages_and_remediations_from_alertd_s_state() -> None:
    from iotex_ops.faults import edge

    state = {
        "alerts": [
            {"alertname": "DelegateDown", "host": "node2", "page": "acknowledged", "escalated": False, "last_seen": 105.0},
            {"alertname": "DelegateDown", "host": "node1", "page": "resolved", "escalated": True, "last_seen": 90.0},
            {"alertname": "Watchdog", "host": "", "page": "triggered"},
        ],
        "remediations": [
            {"host": "node2", "created": 103.5, "state": "passed", "runbook": "restart-node", "run_id": "r2"},
            {"host": "node2", "created": 50.0, "state": "passed", "runbook": "restart-node", "run_id": "old"},
            {"host": "node2", "created": 104.0, "state": "deferred", "runbook": "restart-node", "run_id": "d"},
        ],
    }
    assert edge.open_pages(state, NODES) == ["DelegateDown on node2"] and edge.open_pages(None, NODES) == []
    first, rows = edge.remediation_started(state, ["node2"], since=100.0)
    assert first == 103.5 and [r["run_id"] for r in rows] == ["r2"]
    assert not edge.escalated(state, ["node2"], since=100.0) and not edge.escalated(state, ["node1"], since=100.0)
    assert edge.escalated(state, ["node1"], since=80.0)
