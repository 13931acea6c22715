"""No accepted action is lost when its node restarts: real node processes, actions held in the mempool (the
only delegate paused, or halted at a height, so that nothing is included), then a kill -9 or a halt and a
stop, a restart, and every accepted transfer final exactly once.

One delegate, so that no peer holds a copy: what comes back can only come from the node's own journal.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from iotex_node import actions, artifact
from iotex_node.sdk import ChainParams, transfer
from iotex_ops.lab.localnet import LocalNet
from iotex_ops.traffic import read_accounts
from tests.helpers import admin

SENDERS = 4
PER_SENDER = 60  # 240 transfers held in the mempool


def _submit(net: LocalNet, nonces: dict[str, int]) -> list[str]:
    """PER_SENDER transfers of each funded account, in batches; the hashes the node accepted (202)."""
    params = ChainParams.from_chain_info(net.get(0, "/v1/chain"))
    keys = read_accounts(net.root)[:SENDERS]
    hashes = []
    for k in keys:
        start = nonces.get(k.address, 0)
        batch = [
            transfer(k, chain_id=params.chain_id, nonce=start + i, fee=params.min_fee, to=keys[0].address, amount=1)
            for i in range(1, PER_SENDER + 1)
        ]
        res = net.client(0).submit_batch(batch, timeout=30)
        assert res.accepted == PER_SENDER, [r for r in res.results if r.hash is None][:3]
        hashes += [r.hash for r in res.results if r.hash is not None]
        nonces[k.address] = start + PER_SENDER
    return hashes


def _all_final_once(net: LocalNet, hashes: list[str], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    pending = list(hashes)
    where: dict[str, tuple[int, int]] = {}
    while pending and time.monotonic() < deadline:
        still = []
        for h in pending:
            st = net.client(0).action(h, timeout=5)
            assert st is not None, f"the node no longer knows accepted action {h}: lost"
            assert st.status != "rejected", f"accepted action {h} was dropped: {st.code} {st.reason}"
            if st.final:
                assert st.receipt is not None
                where[h] = (st.receipt.height, st.receipt.index)
            else:
                still.append(h)
        pending = still
        if pending:
            time.sleep(0.5)
    assert not pending, f"{len(pending)} of {len(hashes)} accepted actions not final after {timeout:.0f} s"
    # Exactly once: each in one place of one block, and no block carries any of them twice.
    assert len(set(where.values())) == len(hashes)
    top = max(h for h, _i in where.values())
    seen: Counter[str] = Counter()
    for height in range(1, top + 1):
        for w in net.get(0, f"/v1/blocks/{height}")["actions"]:
            seen[actions.parse(w, verify=False).hash_hex] += 1
    assert [h for h in hashes if seen[h] != 1] == []


def _mempool(net: LocalNet) -> int:
    return int(admin(net, 0, "/status")["mempool"])


@pytest.mark.slow
@pytest.mark.network
@pytest.mark.timeout(240)
def test_kill9_of_a_node_holding_accepted_transfers_then_each_is_final_once(localnet_factory) -> None:
    net = localnet_factory(1, accounts=SENDERS)
    net.start()
    net.wait_height(1, timeout=60)
    admin(net, 0, "/pause")
    hashes = _submit(net, {})
    assert _mempool(net) == len(hashes)
    net.kill(0, signal.SIGKILL)
    net.start_node(0)
    net.wait_for("the node to answer", lambda: net.chain(0) is not None, 60)
    assert _mempool(net) == len(hashes), "the restarted node's mempool lost accepted actions"
    assert "mempool journal: 240 action(s) restored" in (net.nodes[0].log_path.read_text() if net.nodes[0].log_path else "")
    admin(net, 0, "/resume")
    _all_final_once(net, hashes)


@pytest.mark.slow
@pytest.mark.network
@pytest.mark.timeout(300)
def test_halt_at_a_height_and_restart_on_another_release_then_each_accepted_transfer_is_final_once(
    localnet_factory, tmp_path: Path
) -> None:
    """The non-compatible hotfix's path: halt at H on release 1.0.0, stop, start release 1.1.0 on the same home,
    clear the halt."""
    out, root = tmp_path / "dist", tmp_path / "opt"
    out.mkdir()
    old = artifact.install(artifact.build("1.0.0", (1,), out).artifact, root).path
    new = artifact.install(artifact.build("1.1.0", (1, 2), out).artifact, root).path
    net = localnet_factory(1, accounts=SENDERS)
    net.start_node(0, release=old)
    net.wait_height(1, timeout=60)
    halt = (net.heights()[0] or 0) + 2
    admin(net, 0, "/halt", {"height": halt})
    net.wait_for("the halt", lambda: admin(net, 0, "/status")["halted"] is not None, 60)
    hashes = _submit(net, {})  # accepted while halted: held until the network resumes
    assert _mempool(net) == len(hashes)
    net.stop_node(0)  # the hotfix stops every node once halted
    net.start_node(0, release=new)
    net.wait_for("the node to answer", lambda: net.chain(0) is not None, 60)
    assert net.get(0, "/v1/chain")["node_version"] == "1.1.0"
    assert _mempool(net) == len(hashes)
    admin(net, 0, "/halt", {"clear": True})
    _all_final_once(net, hashes)
