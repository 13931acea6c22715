"""A non-compatible upgrade on a 4-delegate network: halt at H, install a release with protocol 2,
resume on it; a node left on the old release stops with "upgrade required" and never forks."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from iotex_node import artifact
from tests.helpers import admin

pytestmark = [pytest.mark.slow, pytest.mark.network]

NEW_REWARD = 3 * 10**18


def _releases(tmp_path: Path) -> tuple[Path, Path]:
    out, root = tmp_path / "dist", tmp_path / "opt"
    out.mkdir()
    old = artifact.build("1.0.0", (1,), out)
    new = artifact.build("1.1.0", (1, 2), out)
    return artifact.install(old.artifact, root).path, artifact.install(new.artifact, root).path


def test_halt_upgrade_resume_on_protocol_2_and_the_old_release_stops_without_forking(localnet_factory, tmp_path) -> None:
    old, new = _releases(tmp_path)
    net = localnet_factory(4)
    for i in range(4):
        net.start_node(i, release=old)
    net.wait_height(3, timeout=60)
    assert net.chain(0)["node_version"] == "1.0.0"
    assert net.chain(0)["supported_protocols"] == [1]
    halt = max(h for h in net.heights() if h is not None) + 4
    for i in range(4):
        admin(net, i, "/halt", {"height": halt})
        s = admin(net, i, "/protocols", {"version": 2, "height": halt + 1, "block_reward": str(NEW_REWARD)})
        assert {"version": 2, "height": halt + 1, "block_reward": str(NEW_REWARD)} in s["protocol_schedule"]
    net.wait_height(halt, timeout=60)
    time.sleep(3)
    assert net.heights() == [halt] * 4, "every node stops with finalized height exactly H"

    # Three delegates move to the new release; the fourth stays behind.
    for i in range(3):
        net.kill(i, signal.SIGTERM)
        net.start_node(i, release=new)
    net.wait_for("restarted nodes answering", lambda: all(net.chain(i) is not None for i in range(3)), 30)
    for i in range(4):
        admin(net, i, "/halt", {"clear": True})
    net.wait_height(halt + 3, nodes=[0, 1, 2], timeout=90)

    first = net.get(0, f"/v1/blocks/{halt + 1}")["header"]
    assert first["protocol"] == 2 and "delegates_root" in first
    assert "delegates_root" not in net.get(0, f"/v1/blocks/{halt}")["header"]
    assert net.chain(0)["protocol_version"] == 2 and net.chain(0)["node_version"] == "1.1.0"
    proposer = first["proposer"]
    owner = next(c["owner"] for c in net.get(0, "/v1/delegates")["candidates"] if c["operator"] == proposer)
    before = int(net.get(0, f"/v1/rewards/{owner}")["unclaimed"])
    assert before > 0

    # The node on the old release stops at H, says why, and agrees with the others up to H.
    why = f"upgrade required: protocol 2 active at height {halt + 1}"
    net.wait_for("node3 to say it needs the upgrade", lambda: admin(net, 3, "/status")["halted"] == why, 60)
    s3 = admin(net, 3, "/status")
    assert s3["finalized_height"] == halt
    assert net.block_hash(3, halt) == net.block_hash(0, halt)

    # Restarted on the new release, it catches up on protocol 2.
    net.kill(3, signal.SIGTERM)
    net.start_node(3, release=new)
    top = max(h for h in net.heights()[:3] if h is not None)
    net.wait_height(top, nodes=[3], timeout=60)
    assert net.block_hash(3, top) == net.block_hash(0, top)
    assert admin(net, 3, "/status")["halted"] is None
