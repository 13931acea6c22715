"""Real node processes on loopback: finality, agreement, crash tolerance, sync."""

from __future__ import annotations

import signal
import time

import pytest

from tests.helpers import settled_heights

pytestmark = [pytest.mark.slow, pytest.mark.network]


def _agree(net, height: int, nodes: list[int]) -> None:
    hashes = {net.block_hash(i, height) for i in nodes}
    roots = {net.state_root_at(i, height) for i in nodes}
    assert len(hashes) == 1, f"nodes disagree on block {height}: {hashes}"
    assert len(roots) == 1, f"nodes disagree on state root at {height}: {roots}"


def test_four_delegates_finalize_and_agree(localnet_factory) -> None:
    net = localnet_factory(4)
    net.start()
    net.wait_height(5, timeout=60)
    for h in (1, 3, 5):
        _agree(net, h, [0, 1, 2, 3])
    chain = net.chain(0)
    assert chain["finalized_height"] >= 5
    assert len(chain["active_delegates"]) == 4


def test_one_down_keeps_finalizing_two_down_stops_then_recovers(localnet_factory) -> None:
    net = localnet_factory(4, propose_timeout_ms=800)
    net.start()
    net.wait_height(3, timeout=60)
    net.kill(3, signal.SIGKILL)
    h1 = max(h for h in net.heights() if h is not None)
    net.wait_height(h1 + 6, nodes=[0, 1, 2], timeout=60)  # 3 of 4 is a quorum: the chain goes on
    _agree(net, h1 + 6, [0, 1, 2])

    net.kill(2, signal.SIGKILL)  # 2 of 4 cannot reach more than two-thirds: finality stops
    stalled = settled_heights(net, [0, 1])  # the two live nodes agree on where it stopped
    time.sleep(5.0)
    assert net.heights()[:2] == stalled, "the chain finalized without a quorum"

    net.start_node(2)
    net.start_node(3)
    top = stalled[0] + 3
    net.wait_height(top, nodes=[0, 1, 2, 3], timeout=90)
    _agree(net, top, [0, 1, 2, 3])


def test_full_node_joining_late_catches_up(localnet_factory) -> None:
    net = localnet_factory(4, full_nodes=1)
    net.start([0, 1, 2, 3])
    net.wait_height(8, nodes=[0, 1, 2, 3], timeout=60)
    net.start_node(4)
    target = max(h for h in net.heights() if h is not None) + 2
    net.wait_height(target, nodes=[4], timeout=60)
    _agree(net, target, [0, 4])
    assert net.chain(4)["synced"]


def _startup_moments(net, i: int) -> dict[str, float]:
    text = net.client(i).metrics()
    out = {}
    for line in text.splitlines():
        if line.startswith('iotex_node_startup_seconds{phase="'):
            name, value = line.split('"')[1], line.rsplit(" ", 1)[1]
            out[name] = float(value)
    return out


def test_a_restarted_delegate_joins_before_its_api_and_endorses_again(localnet_factory) -> None:
    net = localnet_factory(4)
    net.start()
    net.wait_height(4, timeout=60)
    net.kill(1, signal.SIGTERM)
    assert net.nodes[1].proc is not None and net.nodes[1].proc.returncode == 0  # a clean stop, fast exit included
    stopped = net.chain(0)["finalized_height"]
    net.wait_height(stopped + 2, nodes=[0, 2, 3], timeout=60)  # it misses blocks while down
    net.start_node(1)

    def endorsed() -> bool:
        try:
            return "endorsement" in _startup_moments(net, 1)
        except OSError:
            return False

    net.wait_for("node1 to endorse again", endorsed, timeout=60)
    m = _startup_moments(net, 1)
    # It was on the network, in consensus and catching up before its API served; the moments come in order.
    assert m["interpreter"] <= m["config"] <= m["imports"] <= m["database"] <= m["p2p"] <= m["consensus"] <= m["api"]
    assert m["caught_up"] <= m["endorsement"]
    log = net.nodes[1].log_path.read_text()
    assert "caught up to" in log and "first endorsement since start" in log and "stopped in" in log
    # It signs in certificates again (its own, of the blocks it decides), on the same chain as the others.
    top = net.chain(1)["finalized_height"]
    net.wait_height(top + 3, timeout=60)
    blocks = net.client(1).blocks(top, top + 3)
    assert any(net.nodes[1].address in b.voters for b in blocks)
    _agree(net, top + 3, [0, 1, 2, 3])
