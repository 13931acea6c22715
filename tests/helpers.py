"""Small helpers shared by the integration tests: test accounts and signed transfers."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from iotex_node import admin as admin_mod
from iotex_node import config as config_mod
from iotex_node.sdk import ChainParams, PrivateKey
from iotex_node.testing import signed_transfers
from iotex_ops.lab import LocalNet
from iotex_ops.traffic import read_accounts


def accounts(net: LocalNet) -> list[PrivateKey]:
    return read_accounts(net.root)


def transfers(net: LocalNet, key: PrivateKey, to: str, first_nonce: int, count: int) -> list[dict[str, Any]]:
    """Signed transfers of 1 rau paying the genesis minimum fee (what every action the tests expect to be
    admitted pays)."""
    chain = ChainParams.from_testnet(net.root)
    made = signed_transfers(key, chain_id=chain.chain_id, first_nonce=first_nonce, count=count, to=to, fee=chain.min_fee)
    return [a.to_wire() for a in made]


def submit(net: LocalNet, i: int, wires: list[dict[str, Any]]) -> list[str]:
    """Submit signed actions to node i; return their hashes (all must be accepted)."""
    res = net.post(i, "/v1/actions/batch", {"actions": wires})
    assert res["accepted"] == len(wires), res
    return [r["hash"] for r in res["results"]]


def admin(net: LocalNet, i: int, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    home: Path = net.nodes[i].home
    method = "GET" if path == "/status" else "POST"
    return dict(admin_mod.call(config_mod.load(home), method, path, body if method == "POST" else None))


def metrics_text(net: LocalNet, i: int) -> str:
    return net.client(i).metrics(timeout=5)


def settled_heights(net: LocalNet, nodes: list[int], steady_s: float = 2.0, timeout: float = 60.0) -> list[int | None]:
    """The finalized heights of `nodes` once they agree and have not moved for `steady_s` (a block already
    endorsed when finality stopped may still land, and a slow machine takes longer to land it): waits on
    that, not on a fixed guess. Fails after `timeout`."""
    deadline = time.monotonic() + timeout
    last: list[int | None] = []
    since = time.monotonic()
    while True:
        hs = net.heights()
        now = [hs[i] for i in nodes]
        if now != last:
            last, since = now, time.monotonic()
        elif len(set(now)) == 1 and None not in now and time.monotonic() - since >= steady_s:
            return now
        assert time.monotonic() < deadline, f"heights of nodes {nodes} did not settle within {timeout:.0f}s: {now}"
        time.sleep(0.25)
