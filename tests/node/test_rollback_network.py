"""Rollback and snapshot/restore on a 4-delegate network of real node processes, through the CLI.

Every node is rolled back to a height a few blocks back (with transfers in the removed blocks) and
restarted: the chain goes on from that height, all nodes agree, and the removed actions, put back in each
node's mempool journal by the rollback, are final again exactly once (re-submitting them from the
rollback's file is refused as known). A crashed, lagging delegate and a brand-new full node are
rebuilt from a running peer's online snapshot.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from iotex_node import actions
from tests.helpers import accounts, submit, transfers

pytestmark = [pytest.mark.slow, pytest.mark.network]


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "iotex_node", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def _hash(wire: dict[str, Any]) -> str:
    return actions.parse(wire, verify=False).hash_hex


def _status(net: Any, i: int, h: str) -> str | None:
    st = net.client(i).action(h)
    return None if st is None else str(st.status)


def _included(net: Any, i: int, top: int) -> dict[str, list[int]]:
    """Every action hash in blocks 1..top of node i, with the heights of the blocks holding it."""
    seen: dict[str, list[int]] = {}
    for height in range(1, top + 1):
        for w in net.get(i, f"/v1/blocks/{height}")["actions"]:
            seen.setdefault(_hash(w), []).append(height)
    return seen


def _meta(db: Path, key: str) -> Any:
    conn = sqlite3.connect(db)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else orjson.loads(row[0])
    finally:
        conn.close()


@pytest.mark.timeout(170)
def test_rollback_of_every_node_resumes_from_h_and_the_removed_actions_are_final_again_once(localnet_factory) -> None:
    net = localnet_factory(4, accounts=2)
    net.start()
    net.wait_height(2, timeout=60)
    alice, bob = accounts(net)
    batches: list[list[str]] = []
    for k in range(3):  # three batches, each final before the next: they land in different blocks
        hashes = submit(net, k, transfers(net, alice, bob.address, 1 + 8 * k, 8))
        net.wait_for(f"batch {k} final", lambda hs=hashes: all(_status(net, 0, h) == "finalized" for h in hs), 60)
        batches.append(hashes)
    at = {h: net.get(0, f"/v1/actions/{h}")["receipt"]["height"] for b in batches for h in b}
    target = max(at[h] for h in batches[0])  # H: keeps the first batch, removes the blocks of the others
    later = batches[1] + batches[2]
    assert min(at[h] for h in later) > target
    net.wait_height(target + 4, timeout=60)
    homes = [str(n.home) for n in net.nodes]

    # Offline only: refused while the node runs, and nothing changes.
    res = _cli("rollback", "--home", homes[3], "--to", str(target), "--yes")
    assert res.returncode == 2 and res.stderr.startswith(f"error: node at {homes[3]} is running (pid "), res.stderr
    assert "stop it first" in res.stderr and res.stdout == ""
    assert _status(net, 3, later[-1]) == "finalized"

    kept_hash = net.block_hash(0, target)
    removed_first = net.block_hash(0, target + 1)
    for i in range(4):
        net.stop_node(i)
    reports = []
    for i in range(4):
        res = _cli("rollback", "--home", homes[i], "--to", str(target), "--yes", "--json")
        assert res.returncode == 0, res.stderr
        r = json.loads(res.stdout)
        assert (r["to_height"], r["tip_hash"]) == (target, kept_hash)
        assert r["from_height"] >= target + 4 and r["removed_blocks"] == r["from_height"] - target
        assert Path(r["backup"]).is_file()
        reports.append(r)
    top_report = max(reports, key=lambda r: r["from_height"])
    wires = [json.loads(line) for line in Path(top_report["actions_file"]).read_text().splitlines()]
    removed = [_hash(w) for w in wires]
    assert set(later) <= set(removed) and len(removed) == len(set(removed))
    assert not set(batches[0]) & set(removed)

    net.start()
    net.wait_height(target + 3, timeout=90)
    for i in range(4):
        assert net.block_hash(i, target) == kept_hash
    assert len({net.block_hash(i, target + 3) for i in range(4)}) == 1, "the nodes disagree after the restart"
    assert net.block_hash(0, target + 1) != removed_first, "block H+1 was not produced again"
    # The rollback put the removed actions back in each node's mempool journal (issue 15): the nodes re-admit
    # them at start and they become final again by themselves, each once.
    net.wait_for(
        "every removed action final again on every node",
        lambda: all(_status(net, i, h) == "finalized" for i in range(4) for h in removed),
        60,
    )
    # Re-submitting them, as rollback-recovery does, is harmless: each is refused (known or its nonce used).
    for start in range(0, len(wires), 500):
        res = net.post(0, "/v1/actions/batch", {"actions": wires[start : start + 500]})
        assert res["accepted"] == 0, res
        assert {r["error"]["code"] for r in res["results"]} <= {"duplicate", "nonce_too_low"}
    top = min(h for h in net.heights() if h is not None)
    assert len({net.block_hash(i, top) for i in range(4)}) == 1
    included = _included(net, 0, top)
    twice = {h: hs for h, hs in included.items() if len(hs) > 1}
    assert not twice, f"actions final twice: {twice}"
    assert all(h in included for h in batches[0] + removed), "an action was lost"
    assert net.get(0, f"/v1/accounts/{alice.address}")["nonce"] == 24
    print(
        f"rolled back 4 nodes from {[r['from_height'] for r in reports]} to {target}: {len(removed)} actions "
        f"put back by the rollback, final once each by height {top}"
    )


@pytest.mark.timeout(170)
def test_a_lagging_node_and_a_new_node_are_rebuilt_from_a_running_peers_snapshot(localnet_factory, tmp_path: Path) -> None:
    net = localnet_factory(4, full_nodes=1)
    net.start([0, 1, 2, 3])
    net.wait_height(3, timeout=60)
    homes = [str(n.home) for n in net.nodes]
    net.kill(3, signal.SIGKILL)  # node3 crashes and falls behind
    db3 = net.nodes[3].home / "data" / "chain.db"
    behind = _meta(db3, "tip")["height"]
    own_privval = _meta(db3, "privval")
    assert own_privval is not None
    net.wait_height(behind + 6, nodes=[0, 1, 2], timeout=60)

    # A second node on a running home is refused.
    res = _cli("run", "--home", homes[0], timeout=60)
    assert res.returncode == 2 and f"error: node at {homes[0]} is running (pid " in res.stderr, res.stderr

    snap = tmp_path / "snaps" / "node0.db"
    snap.parent.mkdir()
    res = _cli("snapshot", "--home", homes[0], "--out", str(snap), "--json")
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["online"] is True and info["height"] >= behind + 6
    assert net.block_hash(0, info["height"]) == info["tip_hash"]
    assert _meta(snap, "privval") is None and _meta(snap, "lock") is None, "the snapshot carries node0's signing records"
    res = _cli("snapshot", "--home", homes[0], "--out", str(snap))
    assert res.returncode == 2 and "exists" in res.stderr
    res = _cli("restore", "--home", homes[0], "--from", str(snap))
    assert res.returncode == 2 and "is running" in res.stderr

    res = _cli("restore", "--home", homes[3], "--from", str(snap), "--json")
    assert res.returncode == 0, res.stderr
    r = json.loads(res.stdout)
    assert (r["height"], r["previous_height"], r["sha256_checked"]) == (info["height"], behind, True)
    assert "privval" in r["kept_meta"] and _meta(db3, "privval") == own_privval
    res = _cli("restore", "--home", homes[4], "--from", str(snap), "--json")  # a new full node
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["previous_height"] == 0

    net.start_node(3)
    net.start_node(4)
    for i in (3, 4):
        net.wait_for(f"node {i} up", lambda i=i: net.chain(i) is not None, 30)
        assert net.chain(i)["finalized_height"] >= info["height"], "the node did not start from the snapshot"
    top = max(h for h in net.heights() if h is not None) + 2
    net.wait_height(top, nodes=[0, 1, 2, 3, 4], timeout=60)
    assert len({net.block_hash(i, top) for i in range(5)}) == 1
    print(f"node3 rebuilt at {info['height']} from node0's online snapshot ({info['bytes']} bytes), was at {behind}")
    address3 = net.nodes[3].address
    net.wait_for(
        "the restored delegate to propose a block",
        lambda: any(
            net.get(0, f"/v1/blocks/{h}")["header"]["proposer"] == address3 for h in range(top, (net.heights()[0] or top) + 1)
        ),
        60,
    )
