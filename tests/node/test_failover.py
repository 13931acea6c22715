"""Hot standby and failover, without processes: the sign log's fence, a standby that signs nothing, promotion
that never signs where the key's other holder can have signed, demotion, the certificate check, the offline
`set-standby`. In-process nodes of a one-delegate chain (`iotex_node.testing.OneDelegate`): the node is the
only delegate, so "the other holder" is a block certified with the same key and applied as a synced block."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client import generate_latest

from iotex_node import admin as admin_mod
from iotex_node import block as blk
from iotex_node import cli as cli_mod
from iotex_node import config as config_mod
from iotex_node import maintenance
from iotex_node.block import Block
from iotex_node.controls import ActivationRefused
from iotex_node.node import Node, holder_claim_digest
from iotex_node.privval import SignLog, Verdict
from iotex_node.testing import OneDelegate, certify

H = bytes.fromhex("ab" * 32)


# --- the sign log's fence -------------------------------------------------------------------------


def test_nothing_is_signed_below_the_fence_and_the_fence_survives_a_restart() -> None:
    disk: dict[str, Any] = {}
    log = SignLog.in_memory(disk)
    log.record("prevote", 5, 0, H, {"t": "vote"})
    assert log.fence(8) == 8
    assert log.fence(3) == 8  # never lowered
    for h in (5, 6, 7):
        assert log.check("prevote", h, 3, None) == (Verdict.CONFLICT, None) or h == 5
    assert log.check("precommit", 7, 0, H)[0] is Verdict.CONFLICT
    assert log.check("prevote", 8, 0, H) == (Verdict.NEW, None)
    again = SignLog.in_memory(disk)
    assert again.floor == 8 and again.check("proposal", 7, 9, H)[0] is Verdict.CONFLICT
    # a fence set before anything was signed is kept too
    fresh: dict[str, Any] = {}
    SignLog.in_memory(fresh).fence(4)
    assert SignLog.in_memory(fresh).floor == 4 and SignLog.in_memory(fresh).last is None


def test_what_another_holder_signed_is_remembered_with_the_next_write() -> None:
    disk: dict[str, Any] = {}
    log = SignLog.in_memory(disk)
    assert log.note_seen(10, 1) and not log.note_seen(9, 4) and log.note_seen(10, 2)
    log.fence(12)
    assert SignLog.in_memory(disk).seen == (10, 2)


def test_own_tells_ours_from_anothers_where_it_can() -> None:
    log = SignLog.in_memory({})
    assert log.own("precommit", 3, 0) is False  # nothing signed: not ours
    log.record("precommit", 5, 1, H, {"t": "vote"})
    assert log.own("precommit", 5, 1) is True
    assert log.own("precommit", 6, 0) is False and log.own("precommit", 5, 2) is False
    assert log.own("precommit", 4, 0) is None  # below what it keeps: cannot tell


def test_an_unreadable_fence_is_refused_not_guessed() -> None:
    with pytest.raises(ValueError, match="fence"):
        SignLog.in_memory({"privval": {"floor": "x"}})


# --- an in-process node -----------------------------------------------------------------------------


def _node(tmp_path: Path, *, standby: bool, guard: float = 30.0) -> tuple[OneDelegate, Node]:
    net = OneDelegate.new()
    cfg = net.init_home(tmp_path / "home")
    cfg.standby = standby
    cfg.standby_guard_seconds = guard
    cfg.write()
    return net, Node(config_mod.load(cfg.home), net.delegate, net.genesis)


def _drive(node: Node, seconds: float, until: Any = None) -> None:
    """Run the node's consensus (no network) for a while, or until `until()`."""

    async def go() -> None:
        node._start_height()
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end and not (until and until()):
            await asyncio.sleep(0.02)
        for t in node._timers:
            t.cancel()

    asyncio.run(go())


def _in_loop(fn: Any) -> Any:
    """Call `fn` as the admin channel does: on the node's event loop (promotion restarts consensus)."""

    async def go() -> Any:
        return fn()

    return asyncio.run(go())


def _other_holder_signs(net: OneDelegate, node: Node) -> Block:
    """The key's other holder (a primary elsewhere) finalizes the next block; this node syncs it."""
    built = node.chain.build_block(0, net.delegate.address, int(time.time() * 1000)).block
    block = Block(built.header, built.actions, certify(net.delegate, net.chain_id, built))
    node.chain.apply_synced(block)
    node._check_certificate(block.height, block.certificate)
    return block


def _signed(node: Node) -> list[int]:
    return [h for h, *_ in node.store.signed_between(0, 10**9)]


def test_a_standby_follows_and_signs_nothing(tmp_path: Path) -> None:
    net, node = _node(tmp_path, standby=True)
    try:
        _drive(node, 1.5)
        assert node.chain.height == 0 and node.signlog.last is None and _signed(node) == []
        assert node.status()["role"] == "standby" and not node.participating
        _other_holder_signs(net, node)
        _other_holder_signs(net, node)
        assert node.chain.height == 2 and node.signlog.seen == (2, 0)  # learnt from the certificates
        assert node.controls.standby  # still a standby: a standby is not demoted further, nor promoted
        text = generate_latest(node.metrics.registry).decode()
        assert 'iotex_node_role{role="standby"} 1.0' in text and 'iotex_node_role{role="primary"} 0.0' in text
        assert "iotex_node_other_signer_height 2.0" in text
    finally:
        node.store.close()


def test_promotion_is_refused_while_the_key_signs_elsewhere_and_fenced_after(tmp_path: Path) -> None:
    net, node = _node(tmp_path, standby=True)
    try:
        for _ in range(3):
            _other_holder_signs(net, node)
        with pytest.raises(ActivationRefused, match="another node signed with delegate key"):
            _in_loop(node.activate)
        assert node.controls.standby
        node.cfg.standby_guard_seconds = 0.0  # the primary went quiet (killed or cut off)
        assert _in_loop(node.activate) == {"fence": 5}  # tip 3: the old primary can have signed at most at 4
        assert node.status()["role"] == "primary" and node.status()["sign_fence"] == 5
        _drive(node, 1.5)
        assert node.chain.height == 3 and _signed(node) == []  # height 4 is below the fence: not signed
        # the old primary's block 4 (it had got that far): below the fence, noted, not a reason to stop
        _other_holder_signs(net, node)
        assert not node.controls.standby and node.signlog.seen == (4, 0)
        _drive(node, 6.0, until=lambda: node.chain.height >= 6)
        assert node.chain.height >= 6 and min(_signed(node)) == 5  # signs from the fence on
        # the other holder signing at a live height (at or above the fence) stops this one: safety first
        _other_holder_signs(net, node)
        assert node.controls.standby and "another signer" in node.status()["role_changes"][-1]["why"]
    finally:
        node.store.close()


def test_a_primary_signs_and_a_demoted_one_stops(tmp_path: Path) -> None:
    _net, node = _node(tmp_path, standby=False)
    try:
        _drive(node, 5.0, until=lambda: node.chain.height >= 2)
        assert node.chain.height >= 2 and _signed(node)
        node.to_standby("demoted by the operator")
        height, count = node.chain.height, len(_signed(node))
        _drive(node, 1.5)
        assert (node.chain.height, len(_signed(node))) == (height, count)
        assert _in_loop(lambda: node.activate(force=True)) == {"fence": height + 2}  # its own promotion is fenced too
    finally:
        node.store.close()


def test_a_primary_that_finds_its_key_in_a_certificate_it_did_not_sign_stops(tmp_path: Path) -> None:
    net, node = _node(tmp_path, standby=False)
    try:
        _drive(node, 5.0, until=lambda: node.chain.height >= 1)
        assert not node.controls.standby
        _other_holder_signs(net, node)  # a block above what it signed: it was replaced while away
        assert node.controls.standby and node.metrics.other_signer._value.get() >= 1
    finally:
        node.store.close()


def test_set_standby_makes_a_stopped_node_a_standby_and_refuses_a_running_one(tmp_path: Path) -> None:
    net, node = _node(tmp_path, standby=False)
    home = node.cfg.home
    node.store.close()
    assert maintenance.set_standby(home)["was_standby"] is False
    again = Node(config_mod.load(home), net.delegate, net.genesis)
    try:
        assert again.controls.standby
    finally:
        again.store.close()
    with maintenance.NodeLock(home):
        res = CliRunner().invoke(cli_mod.main, ["set-standby", "--home", str(home)])
    assert res.exit_code == 2 and "is running" in res.output and "Traceback" not in res.output


@pytest.mark.parametrize(("args", "route", "body"), [(["promote"], "/promote", {"force": False}), (["demote"], "/demote", {})])
def test_promote_and_demote_commands(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, args: list[str], route: str, body: Any
) -> None:
    sent: list[tuple[str, str, Any]] = []

    def call(cfg: object, method: str, path: str, doc: Any = None) -> dict[str, Any]:
        sent.append((method, path, doc))
        standby = route == "/demote"
        return {"halted": None, "paused": False, "standby": standby, "halt_height": None, "name": "n", "finalized_height": 9}

    monkeypatch.setattr(admin_mod, "call", call)
    monkeypatch.setattr("iotex_node.config.load", lambda home: object())
    res = CliRunner().invoke(cli_mod.main, ["admin", *args, "--home", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert sent == [("POST", route, body)]
    assert ("standby" if route == "/demote" else "active") in res.output


def test_a_snapshot_leaves_the_signing_history_behind_and_a_backup_keeps_it(tmp_path: Path) -> None:
    import sqlite3

    from iotex_node.store import Store, copy_database

    store = Store(tmp_path / "chain.db", create=True)
    try:
        store.record_signed({"h": 7, "r": 0, "s": 2, "hash": "ab"}, 7, 0, 2, "ab", 1)
        assert store.signed_between(0, 10) == [(7, 0, 2, "ab", 1)] and store.get_meta("privval")["h"] == 7
        copy_database(store._db, tmp_path / "snap.db", ("privval",))
        copy_database(store._db, tmp_path / "backup.db")
    finally:
        store.close()
    for name, rows in (("snap.db", 0), ("backup.db", 1)):
        db = sqlite3.connect(tmp_path / name)
        try:
            assert db.execute("SELECT COUNT(*) FROM signed").fetchone()[0] == rows, name
        finally:
            db.close()


# --- the holder claim: two signing holders of one key, even when their votes are the same ------------


def _claim(key: Any, chain_id: int, node_id: str, fence: int) -> dict[str, Any]:
    return {"node": node_id, "fence": fence, "sig": key.sign(holder_claim_digest(chain_id, node_id, fence)).hex()}


def _vote_of(node: Node, height: int) -> dict[str, Any]:
    v = blk.sign_vote(node.key, node.genesis.chain_id, blk.PREVOTE, height, 0, None)
    return {"t": "vote", **v.to_wire()}


def test_a_holder_that_hears_a_later_fence_stops_even_when_the_vote_is_its_own(tmp_path: Path) -> None:
    net, node = _node(tmp_path, standby=False)
    try:
        _drive(node, 5.0, until=lambda: node.chain.height >= 2)
        h = node.chain.height + 1
        msg = _vote_of(node, h)
        mine = {**msg, "holder": node._holder_claim()}
        assert mine["holder"]["node"] == node.node_key.address and mine["holder"]["fence"] == 0
        # our own vote relayed back, with our claim: not another holder
        assert not node._claimed_by_other_holder("vote", h, 0, mine, node.key.address)
        # a claim signed by another key than ours is no claim at all
        forged = {**msg, "holder": _claim(net.owner, net.chain_id, "0xtwin", 9)}
        assert not node._claimed_by_other_holder("vote", h, 0, forged, node.key.address) and not node.controls.standby
        # the same vote (byte for byte what this node signs), claimed by a node promoted with a later fence
        twin = {**msg, "holder": _claim(net.delegate, net.chain_id, "0xtwin", h)}
        assert node._claimed_by_other_holder("vote", h, 0, twin, node.key.address)
        assert node.controls.standby and "0xtwin" in node.status()["role_changes"][-1]["why"]
        assert node.signlog.seen == (h, 0)
    finally:
        node.store.close()


def test_the_later_holder_keeps_signing_when_it_hears_the_older_one(tmp_path: Path) -> None:
    net, node = _node(tmp_path, standby=True, guard=0.0)
    try:
        _other_holder_signs(net, node)
        fence = _in_loop(lambda: node.activate(force=True))["fence"]
        assert node._holder_claim()["fence"] == fence
        # the old primary (fence 0), healed, still signs at a live height, even something else than we do
        old = {**_vote_of(node, fence), "holder": _claim(net.delegate, net.chain_id, "0xold", 0)}
        assert node._claimed_by_other_holder("vote", fence, 0, old, node.key.address)
        assert node._note_own_key("prevote", fence, 0, None, claimed=True)
        assert not node.controls.standby  # the later promotion keeps the key; the old one stops when it hears us
        # the same claim in a peer's status: the same verdict; a later fence in a status stops this one
        peer: Any = type("P", (), {"node_id": "0xold", "height": 1})()
        node._note_claim(peer, {"t": "status", "height": 1, "holder": _claim(net.delegate, net.chain_id, "0xold", 0)})
        assert not node.controls.standby
        node._note_claim(peer, {"t": "status", "height": 1, "holder": _claim(net.delegate, net.chain_id, "0xnew", fence + 5)})
        assert node.controls.standby
    finally:
        node.store.close()
