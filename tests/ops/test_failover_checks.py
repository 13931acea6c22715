"""The failover drill's judgement without a lab: the no-double-sign check (from certificates and both nodes'
signing records), the delegate's missed slots, and the inventory's `standbys` group."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from iotex_ops import inventory as inv_mod
from iotex_ops.nodeapi import Block
from iotex_ops.runbook import loader

ADDR = "io1delegate3"
OTHERS = ("io1a", "io1b", "io1c")


def _globals() -> dict[str, Any]:
    rb = loader.find("failover")
    return rb.step("verify-no-double-sign").verify[0].probe.__globals__  # the module's namespace


def _block(h: int, voters: tuple[str, ...], round_: int = 0) -> Block:
    return Block(h, f"{h:064x}", round_, 1_000 * h, "io1x", 0, 1, 0, voters)


class _Ctx:
    def __init__(self, memory: dict[str, Any], params: dict[str, Any] | None = None) -> None:
        self.memory = dict(memory)
        self.params = params or {}

    def recall(self, key: str, default: Any = None) -> Any:
        return self.memory.get(key, default)

    def remember(self, key: str, value: Any) -> None:
        self.memory[key] = value


def _setup(
    monkeypatch: pytest.MonkeyPatch, blocks: list[Block], signed: dict[str, set[int]], active: tuple[str, ...] = ()
) -> dict[str, Any]:
    g = _globals()
    api = SimpleNamespace(
        blocks=lambda a, b, timeout=None: [x for x in blocks if a <= x.height <= b],
        delegates=lambda epoch, timeout=None: SimpleNamespace(active=active),
    )
    monkeypatch.setitem(g, "_observer", lambda ctx: SimpleNamespace(api=api))
    monkeypatch.setitem(g, "_tip", lambda ctx: max(x.height for x in blocks))
    monkeypatch.setitem(g, "_by_name", lambda ctx, name: SimpleNamespace(name=name))
    monkeypatch.setitem(g, "_signed_heights", lambda d, a, b: {h for h in signed[d.name] if a <= h <= b})
    return g


MEM = {"address": ADDR, "start_height": 25, "primary": "node3", "standby": "node3-standby"}


def test_each_certified_height_signed_by_one_holder_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = [_block(h, (*OTHERS, ADDR) if h not in (11, 12) else OTHERS) for h in range(5, 21)]
    g = _setup(monkeypatch, blocks, {"node3": set(range(5, 11)), "node3-standby": set(range(13, 21))})
    ctx = _Ctx(MEM)
    res = g["no_double_sign"](ctx)
    assert res.ok, res
    assert res.value["signed_by"] == {"node3": 6, "node3-standby": 8} and ctx.memory["double_signed_heights"] == 0


def test_a_height_signed_by_both_holders_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = [_block(h, (*OTHERS, ADDR)) for h in range(5, 21)]
    g = _setup(monkeypatch, blocks, {"node3": set(range(5, 13)), "node3-standby": set(range(12, 21))})
    ctx = _Ctx(MEM)
    res = g["no_double_sign"](ctx)
    assert not res.ok and res.value["signed_by_both"] == [12] and "signed by both" in res.detail
    assert ctx.memory["double_signed_heights"] == 1


def test_a_certificate_neither_node_recorded_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = [_block(h, (*OTHERS, ADDR)) for h in range(5, 21)]
    g = _setup(monkeypatch, blocks, {"node3": set(range(5, 11)), "node3-standby": set(range(12, 21))})
    res = g["no_double_sign"](_Ctx(MEM))
    assert not res.ok and res.value["unexplained"] == [11] and "neither node recorded" in res.detail


def test_missed_slots_are_the_delegates_own(monkeypatch: pytest.MonkeyPatch) -> None:
    active = ("io1a", "io1b", "io1c", ADDR)
    # the proposer at (h, r) is active[(h + r) % 4]: 21/0 -> io1b (its slot passed, not ours); 22/0 -> io1c,
    # 22/1 -> ADDR (ours passed: the block came in round 2); 23/0 -> ADDR (ours passed: round 1)
    blocks = [_block(21, OTHERS, 1), _block(22, OTHERS, 2), _block(23, OTHERS, 1), _block(24, (*OTHERS, ADDR), 0)]
    g = _setup(monkeypatch, blocks, {"node3": set(), "node3-standby": {24}}, active)
    ctx = _Ctx({**MEM, "fault_height": 20, "first_signed_height": 24})
    assert g["_missed_slots"](ctx) == 2


def _inventory(tmp_path: Path, standby_of: str) -> inv_mod.Inventory:
    key = tmp_path / "key.json"
    key.write_text("{}")

    def host(port: int, name: str) -> dict[str, Any]:
        return {
            "ansible_host": "127.0.0.1", "ansible_user": "u", "ansible_port": 22, "node_p2p_port": port,
            "node_api_port": port + 1, "delegate_name": name, "node_key_file": str(key), "node_data_dir": "/d",
            "node_service_manager": "supervisord",
        }  # fmt: skip

    doc = {
        "all": {
            "children": {
                "delegates": {"hosts": {"node3": host(4000, "node3"), "node2": host(4010, "node2")}},
                "standbys": {
                    "hosts": {
                        "node3-standby": {**host(4020, "node3-standby"), "node_role": "standby", "node_standby_of": standby_of}
                    }
                },
            }
        }
    }
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(doc))
    return inv_mod.load(path)


def test_the_inventory_knows_standbys_and_checks_whose(tmp_path: Path) -> None:
    inv = _inventory(tmp_path, "node3")
    assert [h.name for h in inv.standbys] == ["node3-standby"]
    assert sorted(h.name for h in inv.delegates) == ["node2", "node3"]
    assert inv.standby_of("node3") is not None and inv.standby_of("node2") is None
    assert inv_mod.check(inv) == []
    bad = _inventory(tmp_path, "node9")
    problems = [str(p) for p in inv_mod.check(bad)]
    assert any("node_standby_of must name a host of group 'delegates'" in p for p in problems), problems


# --- mode=partition: the pure parts --------------------------------------------------------------------


def _host(name: str, address: str, **vars_: Any) -> SimpleNamespace:
    return SimpleNamespace(name=name, spec=SimpleNamespace(ansible_host=address), vars=vars_)


def test_a_partition_is_refused_unless_each_cut_host_has_a_namespace_of_its_own() -> None:
    from iotex_ops.faults import edge

    netns = [_host(f"node{i}", f"10.246.0.{i + 2}") for i in range(4)] + [_host("node3-standby", "10.246.0.6")]
    assert edge.without_own_namespace(netns) == []  # type: ignore[arg-type]
    assert edge.partition_refusal("failover mode=partition", netns[3:], netns) == []  # type: ignore[arg-type]
    local = [_host(f"node{i}", "127.0.0.1", ansible_connection="local") for i in range(4)]
    local.append(_host("node3-standby", "127.0.0.1", ansible_connection="local"))
    problems = edge.partition_refusal("failover mode=partition", local[3:], local)  # type: ignore[arg-type]
    assert len(problems) == 1 and "node3, node3-standby" in problems[0] and "--hosts netns" in problems[0]
    # two hosts on one address cannot be cut apart by a route; the others are not the drill's concern
    shared = [*netns[:3], _host("node3", "10.246.0.9"), _host("node3-standby", "10.246.0.9")]
    assert edge.without_own_namespace(shared) == ["node3", "node3-standby"]  # type: ignore[arg-type]
    assert edge.partition_refusal("x", shared[:1], shared) == []  # type: ignore[arg-type]


def test_the_partition_cuts_the_primary_off_every_delegate_and_the_standby() -> None:
    g = _globals()
    hosts = [_host(f"node{i}", f"10.246.0.{i + 2}") for i in range(4)] + [_host("node3-standby", "10.246.0.6")]
    assert g["peer_addresses"](hosts[3], hosts) == ["10.246.0.2", "10.246.0.3", "10.246.0.4", "10.246.0.6"]
    # after a failover the standby's host is the primary: its peers include the delegate host of its pair
    assert g["peer_addresses"](hosts[4], hosts) == ["10.246.0.2", "10.246.0.3", "10.246.0.4", "10.246.0.5"]


def test_the_load_of_a_partition_drill_avoids_the_pair_s_host() -> None:
    g = _globals()
    ds = [SimpleNamespace(name=f"node{i}", api_url=f"http://n{i}") for i in range(4)]
    assert g["load_apis"](ds, "kill", "node3") == ["http://n0", "http://n1", "http://n2", "http://n3"]
    assert g["load_apis"](ds, "partition", "node3") == ["http://n0", "http://n1", "http://n2"]


class _FakeNode:
    """A delegate host as the rollback sees it: its commands and admin calls are recorded in `log`."""

    def __init__(self, name: str, role: str, log: list[str], fail_run: bool = False) -> None:
        self.name, self.role, self.log, self.fail_run = name, role, log, fail_run
        self.spec = SimpleNamespace(ansible_host="10.246.0.5")

    def run(self, cmd: str, check: bool = True) -> Any:
        from iotex_ops.hosts import HostError

        if self.fail_run:
            raise HostError(self.name, "unreachable")
        self.log.append(f"{self.name}: {cmd}")
        return SimpleNamespace(ok=True, stdout="0\n", tail=lambda n=2: "")

    def admin(self, *args: str, timeout: float = 10) -> dict[str, Any]:
        self.log.append(f"{self.name}: admin {' '.join(args)}")
        if args[0] == "status":
            return {"role": self.role, "finalized_height": 100}
        self.role = {"demote": "standby", "promote": "primary"}.get(args[0], self.role)
        return {}

    def service_status(self) -> Any:
        return SimpleNamespace(alive=True)

    def try_chain(self, timeout: float) -> dict[str, Any]:
        return {"finalized_height": 100}


def _rollback_setup(monkeypatch: pytest.MonkeyPatch, fail_run: bool = False) -> tuple[dict[str, Any], list[str], _Ctx]:
    g = _globals()
    log: list[str] = []
    nodes = {"node3": _FakeNode("node3", "primary", log, fail_run), "node3-standby": _FakeNode("node3-standby", "primary", log)}
    monkeypatch.setitem(g, "_by_name", lambda ctx, name: nodes[name])
    monkeypatch.setitem(g, "_tip", lambda ctx: 100)
    memory = {"primary": "node3", "standby": "node3-standby", "cut_peers": ["10.246.0.2", "10.246.0.6"]}
    ctx = _Ctx(memory | {"rp_filter_before": 0}, {"mode": "partition"})
    ctx.log = lambda msg: None  # type: ignore[attr-defined]
    ctx.event = lambda kind, **kw: log.append(f"event {kind}")  # type: ignore[attr-defined]
    return g, log, ctx


def test_the_partition_rollback_heals_first_then_hands_the_key_back(monkeypatch: pytest.MonkeyPatch) -> None:
    g, log, ctx = _rollback_setup(monkeypatch)
    g["restore_pair"](ctx)
    assert log[:4] == [
        "node3: ip route del blackhole 10.246.0.2/32",
        "node3: ip route del blackhole 10.246.0.6/32",
        "node3: sysctl -qw net.ipv4.conf.all.rp_filter=0",
        "event partition_healed",
    ]
    # the promoted standby stops before the old primary is given the key back (above its own fence)
    demote = log.index("node3-standby: admin demote")
    assert demote < log.index("node3: admin promote --force") and log[-1] == "node3: admin promote --force"


def test_a_partition_rollback_that_cannot_heal_leaves_the_standby_signing(monkeypatch: pytest.MonkeyPatch) -> None:
    from iotex_ops.errors import OpsError

    g, log, ctx = _rollback_setup(monkeypatch, fail_run=True)
    nodes = {n: g["_by_name"](ctx, n) for n in ("node3", "node3-standby")}
    nodes["node3-standby"].role = "standby"
    with pytest.raises(OpsError, match=r"routes could not be removed.*node3-standby signs for the delegate"):
        g["restore_pair"](ctx)
    assert "node3-standby: admin promote --force" in log and not any(x.startswith("node3: admin") for x in log)


def test_a_partition_measures_who_demoted_the_old_primary_and_how_long_it_was_cut_off(monkeypatch: pytest.MonkeyPatch) -> None:
    g, log, ctx = _rollback_setup(monkeypatch)
    ctx.params = {"mode": "partition", "demote_before_heal": True}
    g["bring_back"](ctx)
    assert log.index("node3: admin demote") < log.index("node3: ip route del blackhole 10.246.0.2/32")
    assert ctx.memory["old_primary_demoted_by"] == "drill" and "healed_at" in ctx.memory
    # without the fence first the node's own guard demotes it; the check says so once it answers as a standby
    g2, log2, ctx2 = _rollback_setup(monkeypatch)
    ctx2.params = {"mode": "partition", "demote_before_heal": False}
    ctx2.memory["fault_at"] = time.time() - 1.0  # cut off 1 s ago: shorter than the guard needs to notice
    slept: list[float] = []
    monkeypatch.setattr(g2["time"], "sleep", lambda s: (slept.append(s), log2.append("sleep")))
    g2["bring_back"](ctx2)
    assert not any("admin demote" in x for x in log2)
    # held until GUARD_PARTITION_S from the cut, then healed
    assert len(slept) == 1 and 2.5 < slept[0] <= g2["GUARD_PARTITION_S"] - 1.0 + 0.05
    assert log2.index("sleep") < log2.index("node3: ip route del blackhole 10.246.0.2/32")
    # a partition already longer than that is healed at once
    g3, log3, ctx3 = _rollback_setup(monkeypatch)
    ctx3.params = {"mode": "partition", "demote_before_heal": False}
    ctx3.memory["fault_at"] = time.time() - 10.0
    slept.clear()
    g3["bring_back"](ctx3)
    assert slept == [] and "node3: ip route del blackhole 10.246.0.2/32" in log3
    g2["_by_name"](ctx2, "node3").role = "standby"
    assert g2["old_primary_is_standby"](ctx2).ok and ctx2.memory["old_primary_demoted_by"] == "itself"
