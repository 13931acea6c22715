"""Operator controls on a 4-delegate network of real processes: pause, resume, halt-at, standby."""

from __future__ import annotations

import shutil
import signal
import time

import pytest

from iotex_node import admin as admin_mod
from iotex_node import config as config_mod
from tests.helpers import accounts, admin, metrics_text, settled_heights, submit, transfers

pytestmark = [pytest.mark.slow, pytest.mark.network]


def _finalized(net) -> list[int | None]:
    return net.heights()


def _status(net, i: int, h: str) -> dict:
    return net.get(i, f"/v1/actions/{h}")


def test_pause_all_stops_finality_and_resume_continues_with_every_action_final_once(localnet_factory) -> None:
    net = localnet_factory(4, accounts=2)
    net.start()
    net.wait_height(3, timeout=60)
    alice, bob = accounts(net)
    before_pause = submit(net, 0, transfers(net, alice, bob.address, 1, 20))
    for i in range(4):
        s = admin(net, i, "/pause")
        assert s["paused"] and not s["participating"]
    stalled = settled_heights(net, [0, 1, 2, 3])  # a block already endorsed may still finish; then all agree
    time.sleep(5.0)
    assert _finalized(net) == stalled, "the chain finalized while every delegate was paused"
    during_pause = submit(net, 1, transfers(net, alice, bob.address, 21, 5))
    t0 = time.monotonic()
    for i in range(4):
        assert not admin(net, i, "/resume")["paused"]
    h = stalled[0]
    net.wait_height(h + 3, timeout=60)
    assert time.monotonic() - t0 < 30
    hashes = {net.block_hash(i, h + 3) for i in range(4)}
    assert len(hashes) == 1
    # every action is final exactly once: receipts exist and each hash appears in one block only
    seen: dict[str, int] = {}
    top = min(x for x in _finalized(net) if x is not None)
    for height in range(1, top + 1):
        for a in net.get(0, f"/v1/blocks/{height}")["actions"]:
            seen[a["signature"]] = seen.get(a["signature"], 0) + 1
    assert all(n == 1 for n in seen.values())
    net.wait_for(
        "all actions final",
        lambda: all(_status(net, 0, x)["status"] == "finalized" for x in before_pause + during_pause),
        60,
    )
    assert net.get(0, f"/v1/accounts/{alice.address}")["nonce"] == 25
    # block production is back at its normal rate: 1 s blocks
    t1 = net.heights()[0]
    time.sleep(6)
    assert net.heights()[0] - t1 >= 4


def test_one_paused_delegate_costs_its_slots_only_and_rejoins(localnet_factory) -> None:
    net = localnet_factory(4, propose_timeout_ms=800)
    net.start()
    net.wait_height(2, timeout=60)
    paused_addr = net.nodes[3].address
    admin(net, 3, "/pause")
    h0 = net.heights()[0]
    net.wait_height(h0 + 8, timeout=90)
    produced_while_paused = [net.get(0, f"/v1/blocks/{h}")["header"]["proposer"] for h in range(h0 + 2, h0 + 9)]
    assert paused_addr not in produced_while_paused, "a paused delegate proposed a block"
    assert admin(net, 3, "/status")["finalized_height"] >= h0 + 6, "the paused node stopped syncing"
    admin(net, 3, "/resume")
    h1 = net.heights()[0]
    net.wait_for(
        "the resumed delegate to propose again",
        lambda: any(
            net.get(0, f"/v1/blocks/{h}")["header"]["proposer"] == paused_addr
            for h in range(h1 + 1, (net.heights()[0] or h1) + 1)
        ),
        60,
    )
    epoch = net.chain(0)["epoch"]
    missed = 0
    for e in range(1, epoch + 1):
        for c in net.get(0, f"/v1/delegates?epoch={e}")["candidates"]:
            if c["operator"] == paused_addr:
                missed += c["productivity"]["missed"]
    assert missed > 0, "the paused delegate's slots were not counted as missed"


def test_pause_survives_a_restart(localnet_factory) -> None:
    net = localnet_factory(4)
    net.start()
    net.wait_height(2, timeout=60)
    admin(net, 2, "/pause")
    net.kill(2, signal.SIGTERM)
    net.start_node(2)
    net.wait_for("node2 back", lambda: net.chain(2) is not None, 30)
    assert admin(net, 2, "/status")["paused"] is True


def test_halt_at_height_on_all_nodes_stops_every_one_at_exactly_that_height(localnet_factory) -> None:
    net = localnet_factory(4)
    net.start()
    net.wait_height(2, timeout=60)
    target = max(h for h in net.heights() if h is not None) + 4
    for i in range(4):
        assert admin(net, i, "/halt", {"height": target})["halt_height"] == target
    net.wait_height(target, timeout=60)
    time.sleep(4)
    assert net.heights() == [target] * 4
    for i in range(4):
        s = admin(net, i, "/status")
        assert s["halted"] == f"halted at {target}: scheduled"
    assert len({net.block_hash(i, target) for i in range(4)}) == 1
    assert "iotex_node_halted 1.0" in metrics_text(net, 0)
    assert f"iotex_node_halt_height {float(target)}" in metrics_text(net, 0)
    # clearing the halt everywhere lets the chain continue
    for i in range(4):
        admin(net, i, "/halt", {"clear": True})
    net.wait_height(target + 2, timeout=60)


def test_a_relative_halt_is_resolved_by_the_node_itself(localnet_factory) -> None:
    """`halt-at +N`: the node picks finalized + N when it gets the command, so a fast chain cannot pass the
    height between the operator reading it and the command landing (which an absolute H races)."""
    net = localnet_factory(1)
    net.start()
    net.wait_height(3, timeout=60)
    s = admin(net, 0, "/halt", {"after": 1})
    target = s["result"]
    assert s["halt_height"] == target and target >= 4
    net.wait_for("node0 halted", lambda: admin(net, 0, "/status")["halted"] == f"halted at {target}: scheduled", 60)
    assert net.heights() == [target]
    for body, message in (
        ({"after": 0}, "give at least 1"),
        ({"after": "2"}, "integer number of blocks"),
        ({"height": target + 5, "after": 1}, "give"),
    ):
        with pytest.raises(admin_mod.AdminError, match=message):
            admin(net, 0, "/halt", body)
    assert admin(net, 0, "/status")["halt_height"] == target
    admin(net, 0, "/halt", {"clear": True})
    net.wait_height(target + 1, timeout=60)


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/halt", {"height": -5}, "must be positive"),
        ("/halt", {"height": 1}, "at or below the finalized height"),
        ("/halt", {"height": "ten"}, "must be an integer"),
        ("/halt", {"heigth": 100}, "unknown field"),
    ],
)
def test_controls_with_bad_arguments_are_refused_and_change_nothing(localnet_factory, path, body, message) -> None:
    net = localnet_factory(1)
    net.start()
    net.wait_height(3, timeout=60)
    before = admin(net, 0, "/status")
    with pytest.raises(admin_mod.AdminError, match=message):
        admin(net, 0, path, body)
    after = admin(net, 0, "/status")
    assert (after["halt_height"], after["paused"], after["standby"]) == (
        before["halt_height"],
        before["paused"],
        before["standby"],
    )


def test_wrong_admin_token_is_refused(localnet_factory) -> None:
    net = localnet_factory(1)
    net.start()
    net.wait_height(1, timeout=60)
    cfg = config_mod.load(net.nodes[0].home)
    with pytest.raises(admin_mod.AdminError, match="wrong or missing admin token"):
        admin_mod.call(cfg, "POST", "/pause", {}, token="guess")
    assert admin(net, 0, "/status")["paused"] is False


def test_standby_refuses_to_activate_while_the_primary_signs_then_takes_over(localnet_factory) -> None:
    net = localnet_factory(4, full_nodes=1)
    standby_home = net.nodes[4].home
    # The standby holds delegate node3's key (its own P2P identity stays distinct).
    for f in ("keystore.json", "keystore.pass"):
        shutil.copy(net.nodes[3].home / f, standby_home / f)
    cfg = config_mod.load(standby_home)
    cfg.standby = True
    cfg.standby_guard_seconds = 4.0
    cfg.write()
    net.start()
    net.wait_height(3, timeout=60)
    net.wait_for("standby synced", lambda: (c := net.chain(4)) is not None and c["finalized_height"] >= 3, 30)
    s = admin(net, 4, "/status")
    assert s["standby"] and not s["participating"]
    with pytest.raises(admin_mod.AdminError, match="another node signed with delegate key"):
        admin(net, 4, "/activate")
    assert admin(net, 4, "/status")["standby"] is True
    net.kill(3, signal.SIGKILL)  # the primary dies
    time.sleep(5.0)
    assert admin(net, 4, "/activate")["standby"] is False
    h = net.heights()[0]
    key_addr = net.nodes[3].address
    net.wait_for(
        "the standby to propose as the delegate",
        lambda: any(
            net.get(0, f"/v1/blocks/{x}")["header"]["proposer"] == key_addr for x in range(h + 1, (net.heights()[0] or h) + 1)
        ),
        60,
    )
    # The old primary comes back with the same key: they see each other's signatures and stop signing.
    net.start_node(3)
    net.wait_for(
        "a second signer detected",
        lambda: admin(net, 4, "/status")["standby"] or (net.chain(3) is not None and admin(net, 3, "/status")["standby"]),
        60,
    )
    assert any("iotex_other_signer_detected_total 0.0" not in metrics_text(net, i) for i in (3, 4))
    top = min(h for h in net.heights()[:3] if h is not None)
    assert len({net.block_hash(i, top) for i in range(3)}) == 1


def test_staggered_pause_and_resume_cycles_always_resume_without_a_fork(localnet_factory) -> None:
    net = localnet_factory(4, propose_timeout_ms=600)
    net.start()
    net.wait_height(2, timeout=60)
    for cycle in range(3):
        for i in range(4):
            admin(net, i, "/pause")
            time.sleep(0.4 * (cycle + 1))  # pauses land at different moments of a height, and of its rounds
        time.sleep(2)
        stalled = max(h for h in net.heights() if h is not None)
        for i in reversed(range(4)):
            admin(net, i, "/resume")
            time.sleep(0.3 * cycle)
        net.wait_height(stalled + 2, timeout=30)
    top = min(h for h in net.heights() if h is not None)
    assert len({net.block_hash(i, top) for i in range(4)}) == 1
