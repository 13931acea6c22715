"""The node's books: an epoch's delegates, votes, buckets and rewards, an address's actions, a transfer's memo.

In-process node on loopback sockets (slow tier); every answer is checked against the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from iotex_node import actions
from iotex_node.node import Node
from tests.node.test_api import CHAIN_ID, FEE, Client, NetHomes, assert_error, make_testnet, openapi_doc, start_node, wait_height

pytestmark = pytest.mark.slow
EPOCH = 5


@pytest.fixture
async def booked(tmp_path: Path) -> AsyncIterator[tuple[Client, NetHomes, Node]]:
    net = make_testnet(tmp_path / "net", epoch_length=EPOCH)
    node = await start_node(net.homes[0], rate_limit_per_second=10_000.0, rate_limit_burst=10_000)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
            yield Client(http, node, openapi_doc()), net, node
    finally:
        await node.stop()


def _sign(key: Any, nonce: int, type_: str, payload: dict[str, Any]) -> dict[str, Any]:
    return actions.sign(key, chain_id=CHAIN_ID, nonce=nonce, fee=FEE, type=type_, payload=payload).to_wire()


async def test_an_epochs_books_hold_its_votes_buckets_and_every_reward_granted(booked: tuple[Client, NetHomes, Node]) -> None:
    client, net, node = booked
    voter, payee = net.accounts[0], net.accounts[1]
    status, sub = await client.post(
        "/v1/actions", _sign(voter, 1, "stake_create", {"candidate": "delegate0", "amount": str(10**18), "duration_days": 0})
    )
    assert status == 202, sub
    status, memo = await client.post(
        "/v1/actions", _sign(voter, 2, "transfer", {"to": payee.address, "amount": "7", "memo": "delegate0 epochs 1-1"})
    )
    assert status == 202, memo
    await client.wait_final(memo["hash"])
    epoch = node.genesis.epoch_of(node.chain.height)
    status, body = await client.get(f"/v1/epochs/{epoch}/books", "/v1/epochs/{epoch}/books")
    assert_error(status, body, 409, "epoch_not_over", "epoch")
    await wait_height(node, epoch * EPOCH, timeout=20)
    status, books = await client.get(f"/v1/epochs/{epoch}/books", "/v1/epochs/{epoch}/books")
    assert status == 200, books
    assert books["delegates"] == [node.key.address] and books["last_height"] == epoch * EPOCH
    (cand,) = books["candidates"]
    mine = [b for b in books["buckets"] if b["owner"] == voter.address]
    assert len(mine) == 1 and int(cand["votes"]) == sum(int(b["votes"]) for b in books["buckets"])
    (rew,) = books["rewards"]
    g = node.genesis
    assert rew["owner"] == cand["owner"] and int(rew["block"]) == EPOCH * g.block_reward
    assert int(rew["epoch"]) == g.epoch_reward and int(rew["fee"]) == 2 * FEE
    assert int(rew["total"]) == int(rew["block"]) + int(rew["fee"]) + int(rew["epoch"])
    status, only = await client.get(f"/v1/epochs/{epoch}/books?candidate={voter.address}", "/v1/epochs/{epoch}/books")
    assert status == 200 and only["buckets"] == []

    # the payee sees the transfer, memo included; the voter sees both of its actions, a page at a time
    status, got = await client.get(f"/v1/accounts/{payee.address}/actions", "/v1/accounts/{address}/actions")
    assert status == 200 and [a["payload"].get("memo") for a in got["actions"]] == ["delegate0 epochs 1-1"]
    status, page = await client.get(f"/v1/accounts/{voter.address}/actions?limit=1", "/v1/accounts/{address}/actions")
    assert status == 200 and page["next"] == 1 and page["actions"][0]["type"] == "stake_create"
    status, page2 = await client.get(f"/v1/accounts/{voter.address}/actions?start=1&limit=1", "/v1/accounts/{address}/actions")
    assert page2["next"] is None and page2["actions"][0]["hash"] == memo["hash"]
    status, one = await client.get(f"/v1/actions/{memo['hash']}", "/v1/actions/{hash}")
    assert status == 200 and one["action"]["payload"]["memo"] == "delegate0 epochs 1-1"
    status, body = await client.get("/v1/epochs/0/books", "/v1/epochs/{epoch}/books")
    assert_error(status, body, 400, "invalid_epoch", "epoch")
    status, body = await client.get(f"/v1/accounts/{voter.address}/actions?limit=0", "/v1/accounts/{address}/actions")
    assert_error(status, body, 400, "invalid_limit", "limit")
