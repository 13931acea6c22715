"""The background load pays the fee the node asks for (`min_fee` of /v1/chain), never less."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from iotex_node import sdk
from iotex_ops.errors import OpsError
from iotex_ops.traffic import background as load_mod


class FakeNode:
    """A NodeApi (iotex_ops.traffic.transport) answering as one node would."""

    def __init__(self, chain: dict[str, Any]) -> None:
        self.chain = chain
        self.posted: list[dict[str, Any]] = []

    def get(self, api: str, path: str, *, timeout: float) -> Any:
        if path == "/v1/chain":
            return self.chain
        assert path.startswith("/v1/accounts/"), path
        return {"pending_nonce": 1}

    def post(self, api: str, path: str, body: Any, *, timeout: float) -> Any:
        assert path == "/v1/actions/batch", path
        self.posted += body["actions"]
        return {"results": [{"hash": sdk.action_hash(w)} for w in body["actions"]]}


def _accounts(tmp_path: Path) -> Path:
    path = tmp_path / "accounts.secret.json"
    path.write_text(json.dumps([sdk.PrivateKey().secret().hex() for _ in range(3)]))
    return path


@pytest.mark.parametrize(
    ("chain", "fee", "paid"),
    [
        ({"chain_id": 9, "min_fee": "30000000000000000"}, None, 3 * 10**16),  # the node's minimum
        ({"chain_id": 9, "min_fee": "30000000000000000"}, 5, 3 * 10**16),  # a lower fee is raised to it
        ({"chain_id": 9, "min_fee": "1"}, 7, 7),  # a higher one is kept
        ({"chain_id": 9}, None, load_mod.FALLBACK_FEE),  # a node that does not say: the default genesis minimum
    ],
)
def test_transfers_pay_at_least_the_nodes_min_fee(tmp_path: Path, chain: dict[str, Any], fee: int | None, paid: int) -> None:
    node = FakeNode(chain)
    bg = load_mod.BackgroundLoad(["http://node"], _accounts(tmp_path), batch=4, fee=fee, api=node)
    bg._send_batch(0)
    assert len(node.posted) == 4 and bg.stats.accepted == 4
    assert {int(w["fee"]) for w in node.posted} == {paid}


def test_a_free_load_is_refused_up_front(tmp_path: Path) -> None:
    with pytest.raises(OpsError, match="fee must be at least 1"):
        load_mod.BackgroundLoad(["http://node"], _accounts(tmp_path), fee=0)
