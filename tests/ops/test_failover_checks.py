"""The failover drill's judgement without a lab: the no-double-sign check (from certificates and both nodes'
signing records), the delegate's missed slots, and the inventory's `standbys` group."""

from __future__ import annotations

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
