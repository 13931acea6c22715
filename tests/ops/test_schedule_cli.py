"""`iotex-ops schedule ...` and `inventory check` over drills.yml, through click's runner (no process, no node:
--no-chain; the chain's calendar is read through fakes of the node client), and the lab's drills file."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from iotex_ops.cli import main
from iotex_ops.inventory import check as inventory_check
from iotex_ops.inventory import load as inventory_load
from iotex_ops.lab.lab import lab_drills
from iotex_ops.nodeapi import ChainInfo, NodeApiError
from iotex_ops.runbook import loader
from iotex_ops.schedule import edge, parse
from iotex_ops.schedule.check import check

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

DRILLS = {
    "defaults": {"timezone": "Europe/Paris"},
    "schedules": [
        {"name": "fa", "drill": "first-aid", "cron": "0 4 * * tue", "timeout": "20m", "params": {"hold_s": 2}},
        {"name": "hc", "drill": "hotfix-compatible", "cron": "0 4 * * thu", "params": {"version": "0.1.1"}, "approval": True},
    ],
}


def write_inventory(tmp_path: Path, drills: Any = DRILLS, delegates: int = 4, api_port: int = 14100) -> Path:
    inv = tmp_path / "inv"
    inv.mkdir(parents=True)
    hosts = {}
    for i in range(delegates):
        key = inv / f"d{i}.json"
        key.write_text("{}")
        hosts[f"d{i}"] = {
            "ansible_host": "127.0.0.1",
            "ansible_user": "iotex",
            "ansible_port": 22,
            "ansible_connection": "local",
            "node_p2p_port": 4700 + i,
            "node_api_port": api_port + i,
            "delegate_name": f"d{i}",
            "node_key_file": str(key),
            "node_data_dir": f"/var/lib/iotex-node{i}",
            "node_service_manager": "systemd",
        }
    (inv / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"delegates": {"hosts": hosts}}}}))
    assert inventory_check(inventory_load(inv)) == []
    if drills is not None:
        (inv / "drills.yml").write_text(drills if isinstance(drills, str) else yaml.safe_dump(drills))
    return inv


def run(*args: str, state: Path | None = None) -> Result:
    env = {"IOTEX_OPS_STATE_DIR": str(state)} if state else {}
    return CliRunner().invoke(main, list(args), env=env)


def test_list_shows_schedules_next_runs_and_blast_radius(tmp_path: Path) -> None:
    inv = write_inventory(tmp_path)
    res = run("schedule", "list", "-i", str(inv), "--json", "--at", "2026-12-01T12:00:00+00:00", state=tmp_path / "state")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["delegates"] == 4 and doc["f"] == 1 and doc["problems"] == []
    rows = {r["name"]: r for r in doc["schedules"]}
    assert rows["fa"]["blast_radius"] == "whole chain" and rows["hc"]["blast_radius"] == "1"
    assert rows["hc"]["approval"] is True and rows["fa"]["suspended"] is None
    assert rows["fa"]["next"] == "2026-12-08T04:00:00+01:00" and rows["hc"]["next_utc"] == "2026-12-03T03:00:00+00:00"
    text = run("schedule", "list", "-i", str(inv), state=tmp_path / "state").output
    assert "first-aid" in text and "at most f = 1 out of consensus" in text


def test_check_names_each_problem_and_exits_1(tmp_path: Path) -> None:
    bad = {
        "schedules": [
            {"name": "a", "drill": "first-aid", "cron": "0 4 * * tue", "timezone": "Europe/Pari"},
            {"name": "b", "drill": "first-aid", "cron": "0 4 * * 8", "timezone": "UTC"},
            {"name": "c", "drill": "no-such", "cron": "0 4 * * *", "timezone": "UTC"},
            {"name": "d", "drill": "first-aid", "cron": "0 5 * * *", "timezone": "UTC", "params": {"hold": 3}},
        ]
    }
    inv = write_inventory(tmp_path, bad)
    res = run("schedule", "check", "-i", str(inv), "--no-chain", "--json")
    assert res.exit_code == 1, res.output
    doc = json.loads(res.output)
    fields = [p["field"] for p in doc["problems"]]
    assert fields == ["schedules[0].timezone", "schedules[1].cron", "schedules[2].drill", "schedules[3].params.hold"]
    assert doc["chain_note"] == "not checked (--no-chain)"
    text = run("schedule", "check", "-i", str(inv), "--no-chain").output
    assert f"{inv / 'drills.yml'}: schedules[0].timezone: unknown timezone 'Europe/Pari'" in text
    ok = run("schedule", "check", "-i", str(write_inventory(tmp_path / "ok")), "--no-chain")
    assert ok.exit_code == 0 and "2 valid schedule(s), ok" in ok.output


def test_the_blast_radius_depends_on_the_inventory_s_size(tmp_path: Path) -> None:
    # a rolling hotfix (1 out at once) on 3 delegates: f = 0
    inv = write_inventory(tmp_path, delegates=3)
    res = run("schedule", "check", "-i", str(inv), "--no-chain", "--json")
    assert res.exit_code == 1
    (p,) = json.loads(res.output)["problems"]
    assert p["field"] == "schedules[1].drill" and "at most f = floor((3-1)/3) = 0 out" in p["message"]


def test_inventory_check_also_checks_drills(tmp_path: Path) -> None:
    inv = write_inventory(
        tmp_path, {"schedules": [{"name": "a", "drill": "first-aid", "cron": "0 4 * * *", "timezone": "Mars/Olympus"}]}
    )
    res = run("inventory", "check", "-i", str(inv), "--json")
    assert res.exit_code == 1
    (p,) = json.loads(res.output)["problems"]
    assert p["file"] == str(inv / "drills.yml") and p["message"].startswith(
        "schedules[0].timezone: unknown timezone 'Mars/Olympus'"
    )
    clean = run("inventory", "check", "-i", str(write_inventory(tmp_path / "none", drills=None)))
    assert clean.exit_code == 0


def test_next_lists_runs_in_time_order_with_why_not(tmp_path: Path) -> None:
    drills = {**DRILLS, "blackouts": [{"days": "thu", "reason": "no thursdays"}]}
    inv = write_inventory(tmp_path, drills)
    res = run("schedule", "next", "-i", str(inv), "--days", "14", "--at", "2026-12-01T12:00Z", "--json", state=tmp_path / "state")
    assert res.exit_code == 0, res.output
    runs = json.loads(res.output)["runs"]
    assert [r["utc"] for r in runs] == sorted(r["utc"] for r in runs) and len(runs) == 4
    assert {r["schedule"]: r["skip"] is None for r in runs} == {"fa": True, "hc": False}
    assert all("no thursdays" in r["skip"] for r in runs if r["schedule"] == "hc")
    assert (runs[0]["schedule"], runs[0]["at"], runs[0]["utc"]) == (
        "hc",
        "2026-12-03T04:00:00+01:00",
        "2026-12-03T03:00:00+00:00",
    )
    bad = run("schedule", "next", "-i", str(inv), "--at", "2026-12-01T12:00")
    assert bad.exit_code == 2 and "give an offset" in bad.output


def test_suspend_and_resume_are_state_not_inventory_edits(tmp_path: Path) -> None:
    inv = write_inventory(tmp_path)
    before = (inv / "drills.yml").read_text()
    state = tmp_path / "state"
    res = run("schedule", "suspend", "fa", "-i", str(inv), "--reason", "game day", "--json", state=state)
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["suspended"]["reason"] == "game day"
    assert (inv / "drills.yml").read_text() == before
    assert list((state / "schedules").glob("net-*.json"))
    listed = json.loads(run("schedule", "list", "-i", str(inv), "--json", state=state).output)
    assert {r["name"]: bool(r["suspended"]) for r in listed["schedules"]} == {"fa": True, "hc": False}
    nxt = json.loads(run("schedule", "next", "-i", str(inv), "--days", "8", "--json", state=state).output)["runs"]
    assert all(r["skip"] == "suspended" for r in nxt if r["schedule"] == "fa")
    assert json.loads(run("schedule", "resume", "fa", "-i", str(inv), "--json", state=state).output)["lifted"]["by"]
    assert json.loads(run("schedule", "resume", "fa", "-i", str(inv), "--json", state=state).output)["lifted"] is None
    unknown = run("schedule", "suspend", "nope", "-i", str(inv), state=state)
    assert unknown.exit_code == 2 and "no schedule 'nope'; schedules: fa, hc" in unknown.output


def test_no_drills_file_is_an_error_that_says_where(tmp_path: Path) -> None:
    inv = write_inventory(tmp_path, drills=None)
    res = run("schedule", "list", "-i", str(inv))
    assert res.exit_code == 2 and f"{inv / 'drills.yml'} does not exist" in res.output


# -- the chain's calendar, read through node clients ----------------------------------------------------------


def info(finalized: int, halt: int | None = None, schedule: Any = (), interval_ms: int = 5000) -> ChainInfo:
    return ChainInfo.from_json(
        {
            "address": "a",
            "chain_id": 1,
            "height": finalized + 1,
            "finalized_height": finalized,
            "finalized_hash": "h",
            "node_version": "0.1.0",
            "protocol_version": 1,
            "halt_height": halt,
            "block_interval_ms": interval_ms,
            "protocol_schedule": list(schedule),
        }
    )


class FakeNode:
    def __init__(self, name: str, answer: ChainInfo | None) -> None:
        self.name, self.answer = name, answer

    def chain(self, *, timeout: float | None = None) -> ChainInfo:
        if self.answer is None:
            raise NodeApiError(f"{self.name}: connection refused")
        return self.answer


def test_read_chain_takes_halts_and_activations_from_the_nodes() -> None:
    nodes = [
        FakeNode("d0", info(1000, halt=1500, schedule=[{"version": 1, "height": 0}, {"version": 2, "height": 1800}])),
        FakeNode("d1", info(1002)),
        FakeNode("d2", None),
    ]
    chain, errors = edge.read_chain(nodes, NOW)
    assert chain is not None and errors == ["d2: connection refused"]
    assert (chain.height, chain.block_interval_s, chain.halt_heights, chain.activations) == (1002, 5.0, (1500,), (1800,))
    assert chain.time_of(1002 + 720) == datetime(2026, 12, 1, 13, 0, tzinfo=UTC)
    none, errors = edge.read_chain([FakeNode("d0", None)], NOW)
    assert none is None and errors == ["d0: connection refused"]


def test_a_halt_read_from_the_nodes_refuses_a_run_next_to_it(tmp_path: Path) -> None:
    drills, problems = parse(DRILLS)
    assert problems == []
    # Tuesday 2026-12-08 04:00 Paris is 03:00 UTC: 6 days 15 hours after NOW at 5 s blocks
    halt = 1000 + (6 * 86400 + 15 * 3600) // 5
    chain, _ = edge.read_chain([FakeNode("d0", info(1000, halt=halt))], NOW)
    found = [str(p) for p in check(drills, loader.discover(), delegates=4, now=NOW, chain=chain)]
    assert len(found) == 1 and found[0].startswith("drills.yml: schedules[0].cron: its run at 2026-12-08 04:00 CET is within 100")


@pytest.mark.parametrize("n", [4, 7])
def test_the_lab_s_drills_file_is_valid_and_runs_nothing(n: int) -> None:
    drills, problems = parse(yaml.safe_load(lab_drills()), "lab drills.yml")
    assert problems == [] and {s.drill for s in drills.schedules} == {"first-aid", "hotfix-compatible"}
    assert not any(s.enabled for s in drills.schedules)
    assert check(drills, loader.discover(), delegates=n, now=NOW) == []


def test_runbook_show_gives_the_blast_radius() -> None:
    doc = json.loads(run("runbook", "show", "first-aid", "--json").output)
    assert doc["blast_radius"] == {"out_of_consensus": 1, "stops_chain": True}
    assert "blast radius: 1 delegate(s) out of consensus at once" in run("runbook", "show", "hotfix-compatible").output


def test_check_says_when_the_chain_could_not_be_read(tmp_path: Path) -> None:
    inv = write_inventory(tmp_path, api_port=1)  # its delegates' APIs on loopback ports 1-4: nothing listens there
    res = run("schedule", "check", "-i", str(inv), "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["chain"] is None and doc["chain_note"].startswith("not checked: ") and len(doc["chain_errors"]) == 4
    assert "d0" in doc["chain_note"]
