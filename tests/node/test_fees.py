"""The minimum fee, end to end: the genesis rule blocks are validated against, the node's admission
minimum (config), and what the API, gossip and block building do with an action below it or from a key
that cannot pay it. A fresh key that holds nothing never gets an action into a mempool or a block, and
never an account entry into the state (issue 11: "fee 0 is never refused")."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner

from iotex_node import actions, config
from iotex_node import execution as ex
from iotex_node import genesis as genesis_mod
from iotex_node.chain import Chain
from iotex_node.cli import main
from iotex_node.crypto.keys import PrivateKey
from iotex_node.errors import ConfigError, InvalidBlock, Rejected
from iotex_node.mempool import FEE_TOO_LOW, INSUFFICIENT_BALANCE, Mempool, MempoolLimits
from iotex_node.node import Node
from iotex_node.store import Store
from iotex_node.testing import certify, one_delegate_genesis
from tests.node.test_api import FEE, Client, NetHomes, make_testnet, metric, openapi_doc, start_node, transfer, wait_height


def _key(name: str) -> PrivateKey:
    return PrivateKey(hashlib.sha256(f"fees-{name}".encode()).digest())


DELEGATE, OWNER, RICH, BOB = _key("delegate"), _key("owner"), _key("rich"), _key("bob")
MIN_FEE = genesis_mod.DEFAULT_MIN_FEE


def _genesis(min_fee: int | None = MIN_FEE) -> genesis_mod.Genesis:
    return one_delegate_genesis(
        DELEGATE, OWNER, funded={RICH.address: 10**24, OWNER.address: 10**24}, self_stake=1000, age_ms=60_000,
        epoch_length=10, block_reward=16, epoch_reward=0, min_fee=min_fee,
    )  # fmt: skip


def _chain(path: Path, g: genesis_mod.Genesis, limits: MempoolLimits | None = None) -> Chain:
    """A node's chain on its own database (initialized for `g` the first time)."""
    if not path.exists():
        Chain.initialize(g, path)
    return Chain(g, Store(path, durable=False), mempool_limits=limits)


def _sign(key: PrivateKey, fee: int, nonce: int = 1, to: str = BOB.address) -> actions.Action:
    return actions.sign(key, chain_id=77, nonce=nonce, fee=fee, type="transfer", payload={"to": to, "amount": 1})


def _build(chain: Chain) -> Any:
    return chain.build_block(0, DELEGATE.address, int(time.time() * 1000))


def _commit(chain: Chain, built: Any) -> None:
    chain.commit(built.block, certify(DELEGATE, 77, built.block))


def _cheating_proposer(tmp_path: Path, g: genesis_mod.Genesis, *wrong: actions.Action) -> Any:
    """A block for height 1 built by a node that runs without the genesis minimum (an old release, or a
    modified one), carrying `wrong` actions an honest node's mempool would never admit."""
    lax = _chain(tmp_path / "lax.db", dataclasses.replace(g, min_fee=0))
    lax.mempool = Mempool(g.chain_id, MempoolLimits(min_fee=0))
    for a in wrong:
        lax.mempool.add(a, 0, 10**30)  # past the balance check too
    built = _build(lax)
    assert [a.hash for a in built.block.actions] == [a.hash for a in wrong]
    return built


# --- the chain: admission and the consensus rule ---------------------------------------------------


def test_the_admission_minimum_is_the_genesis_minimum_or_a_higher_one(tmp_path: Path) -> None:
    g = _genesis()
    assert _chain(tmp_path / "a.db", g).mempool.limits.min_fee == MIN_FEE
    assert _chain(tmp_path / "b.db", g, MempoolLimits(min_fee=1)).mempool.limits.min_fee == MIN_FEE  # raised
    assert _chain(tmp_path / "c.db", g, MempoolLimits(min_fee=3 * MIN_FEE)).mempool.limits.min_fee == 3 * MIN_FEE
    legacy = _genesis(None)
    assert _chain(tmp_path / "d.db", legacy, MempoolLimits(min_fee=0)).mempool.limits.min_fee == 1  # never free


@pytest.mark.parametrize("fee", [0, 1, MIN_FEE - 1])
def test_submit_refuses_a_fee_below_the_minimum(tmp_path: Path, fee: int) -> None:
    chain = _chain(tmp_path / "c.db", _genesis())
    with pytest.raises(Rejected) as err:
        chain.submit(_sign(RICH, fee))
    assert err.value.code == FEE_TOO_LOW
    assert err.value.reason == f"fee {fee} is below this node's minimum fee {MIN_FEE}"
    assert len(chain.mempool) == 0


def test_a_fresh_key_gets_nothing_in_and_no_account_entry(tmp_path: Path) -> None:
    chain = _chain(tmp_path / "c.db", _genesis())
    fresh = PrivateKey()
    for fee in (0, MIN_FEE, 10**24):
        with pytest.raises(Rejected) as err:
            chain.submit(_sign(fresh, fee))
        assert err.value.code == (FEE_TOO_LOW if fee < MIN_FEE else INSUFFICIENT_BALANCE)
    chain.submit(_sign(RICH, MIN_FEE))
    built = _build(chain)
    assert len(built.block.actions) == 1
    _commit(chain, built)
    assert chain.state.get("a/" + fresh.address) is None
    assert ex.account(chain.state, RICH.address) == (10**24 - MIN_FEE - 1, 1)


def test_a_block_with_an_action_below_the_minimum_is_invalid(tmp_path: Path) -> None:
    g = _genesis()
    built = _cheating_proposer(tmp_path, g, _sign(RICH, MIN_FEE - 1))
    honest = _chain(tmp_path / "honest.db", g)
    with pytest.raises(InvalidBlock, match=f"not admissible: fee {MIN_FEE - 1} is below the chain's minimum fee {MIN_FEE}"):
        honest.execute(built.block, check_clock=True)
    assert honest.height == 0


def test_a_block_with_a_free_action_from_an_empty_key_is_invalid(tmp_path: Path) -> None:
    """The issue's case: fee 0 from a key that holds nothing, in a block by a node that let it in."""
    g = _genesis()
    fresh = PrivateKey()
    built = _cheating_proposer(tmp_path, g, _sign(fresh, 0))
    honest = _chain(tmp_path / "honest.db", g)
    with pytest.raises(InvalidBlock, match="below the chain's minimum fee"):
        honest.execute(built.block, check_clock=True)


def test_a_block_whose_sender_cannot_pay_the_fee_is_invalid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    g = _genesis()
    honest = _chain(tmp_path / "honest.db", g)
    with monkeypatch.context() as m:  # a proposer that skips the inclusion check altogether
        m.setattr(ex, "check_admissible", lambda *a, **k: None)
        built = _cheating_proposer(tmp_path, g, _sign(PrivateKey(), MIN_FEE))
    with pytest.raises(InvalidBlock, match=f"not admissible: balance 0 cannot pay fee {MIN_FEE}"):
        honest.execute(built.block, check_clock=True)


def test_block_building_leaves_out_what_the_chain_would_refuse(tmp_path: Path) -> None:
    """Even when the mempool holds an action below the genesis minimum (here put there by hand), the
    proposer's block does not include it: build_block runs the inclusion check on each action."""
    g = _genesis()
    chain = _chain(tmp_path / "c.db", g)
    chain.mempool = Mempool(g.chain_id, MempoolLimits(min_fee=0))
    cheap, fresh_one = _sign(RICH, MIN_FEE - 1), _sign(PrivateKey(), MIN_FEE)
    chain.mempool.add(cheap, 0, 10**30)
    chain.mempool.add(fresh_one, 0, 10**30)
    chain.mempool.add(_sign(OWNER, MIN_FEE), 0, 10**30)
    built = _build(chain)
    assert [a.sender for a in built.block.actions] == [OWNER.address]
    _commit(chain, built)
    assert chain.mempool.get(cheap.hash) == cheap  # left pending, never included
    assert chain.state.get("a/" + fresh_one.sender) is None


def test_a_genesis_without_min_fee_keeps_its_rule_but_this_node_admits_no_free_action(tmp_path: Path) -> None:
    """An existing network's genesis has no `min_fee`: its blocks with fee-0 actions stay valid (a node
    syncing from genesis must replay them), while an upgraded node's mempool refuses fee 0."""
    g = _genesis(None)
    chain = _chain(tmp_path / "c.db", g)
    fresh = PrivateKey()
    with pytest.raises(Rejected, match="fee 0 is below this node's minimum fee 1"):
        chain.submit(_sign(fresh, 0))
    with pytest.raises(Rejected, match="balance 0 cannot pay fee 1"):
        chain.submit(_sign(fresh, 1))
    built = _cheating_proposer(tmp_path, g, _sign(fresh, 0))
    assert chain.execute(built.block, check_clock=True).receipts[0].status == ex.FAILED


# --- the node: config, API, gossip -----------------------------------------------------------------


@pytest.fixture
def net(tmp_path: Path) -> NetHomes:
    return make_testnet(tmp_path / "net")  # a testnet's genesis has the default minimum fee


@pytest.fixture
async def node(net: NetHomes) -> AsyncIterator[Node]:
    n = await start_node(net.homes[0], rate_limit_per_second=10_000.0, rate_limit_burst=10_000)
    try:
        yield n
    finally:
        await n.stop()


@pytest.fixture
async def client(node: Node) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
        yield Client(http, node, openapi_doc())


def _config_with(home: Path, line: str) -> None:
    path = home / config.CONFIG_FILE
    path.write_text(path.read_text().replace("[mempool]\n", f"[mempool]\n{line}\n"))


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("min_fee = 5", 5),
        ('min_fee = "10000000000000000"', 10**16),
        (f'min_fee = "{10**25}"', 10**25),  # past TOML's 64-bit integers
    ],
)
def test_config_min_fee_is_an_amount(net: NetHomes, line: str, expected: int) -> None:
    home = net.homes[0]
    _config_with(home, line)
    cfg = config.load(home)
    assert cfg.mempool_min_fee == expected
    cfg.write()
    assert config.load(home).mempool_min_fee == expected


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("min_fee = 0", "mempool.min_fee must be at least 1"),
        ('min_fee = "-1"', "mempool.min_fee: must not be negative"),
        ('min_fee = "0.01"', "mempool.min_fee: '0.01' is not a decimal integer"),
        ("min_fee = 1.5", "mempool.min_fee: must be a decimal string"),
    ],
)
def test_config_min_fee_refuses_bad_values_naming_the_key(net: NetHomes, line: str, message: str) -> None:
    _config_with(net.homes[0], line)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        config.load(net.homes[0])


def test_config_without_min_fee_writes_none() -> None:
    assert "min_fee" not in config.NodeConfig(home=Path("/nonexistent")).to_toml()["mempool"]


async def test_a_node_refuses_to_lower_the_genesis_minimum(net: NetHomes) -> None:
    with pytest.raises(ConfigError, match=f"mempool.min_fee {MIN_FEE - 1} is below the chain's minimum fee {MIN_FEE}"):
        await start_node(net.homes[0], mempool_min_fee=MIN_FEE - 1)


@pytest.mark.slow  # nodes in this process on real sockets
async def test_api_refuses_with_codes_counts_them_and_leaves_no_account(client: Client, node: Node, net: NetHomes) -> None:
    status, chain = await client.get("/v1/chain")
    assert status == 200 and chain["min_fee"] == str(FEE)
    fresh = PrivateKey()
    status, body = await client.post("/v1/actions", transfer(fresh, net.accounts[0].address, 1, fee=0))
    assert status == 422 and body["error"]["code"] == "fee_too_low" and body["error"]["field"] == "fee"
    assert f"fee 0 is below this node's minimum fee {FEE}" in body["error"]["message"]
    free = transfer(fresh, net.accounts[0].address, 1, fee=FEE)
    status, body = await client.post("/v1/actions", free)
    assert status == 422 and body["error"]["code"] == "insufficient_balance" and body["error"]["field"] == "fee"
    status, batch = await client.post(
        "/v1/actions/batch", {"actions": [transfer(net.accounts[1], fresh.address, 1, fee=FEE - 1)]}
    )
    assert status == 200 and batch["accepted"] == 0 and batch["results"][0]["error"]["code"] == "fee_too_low"
    assert metric(node, "iotex_api_rejections_total", reason="fee_too_low") == 2
    assert metric(node, "iotex_api_rejections_total", reason="insufficient_balance") == 1
    h = actions.parse(free).hash_hex
    status, seen = await client.get(f"/v1/actions/{h}", "/v1/actions/{hash}")
    assert status == 200 and seen["status"] == "rejected" and seen["code"] == "insufficient_balance"
    await wait_height(node, node.chain.height + 2)
    assert node.chain.state.get("a/" + fresh.address) is None
    assert len(node.chain.mempool) == 0


@pytest.mark.slow  # nodes in this process on real sockets
async def test_a_node_with_a_higher_min_fee_admits_only_that(net: NetHomes) -> None:
    n = await start_node(net.homes[0], mempool_min_fee=3 * FEE)
    try:
        assert n.chain.mempool.limits.min_fee == 3 * FEE
        a, b = net.accounts[0], net.accounts[1]
        with pytest.raises(Rejected, match=f"below this node's minimum fee {3 * FEE}"):
            n.submit(transfer(a, b.address, 1, fee=FEE))
        n.submit(transfer(a, b.address, 1, fee=3 * FEE))
    finally:
        await n.stop()


@pytest.mark.slow  # nodes in this process on real sockets
async def test_gossip_admits_and_relays_only_what_pays(node: Node, net: NetHomes, monkeypatch: pytest.MonkeyPatch) -> None:
    relayed: list[dict[str, Any]] = []

    def broadcast(msg: dict[str, Any], exclude: object = None) -> bytes:
        relayed.append(msg)
        return b""

    monkeypatch.setattr(node, "_broadcast", broadcast)
    a, b, fresh = net.accounts[0], net.accounts[1], PrivateKey()
    good = transfer(a, b.address, 1)
    wires = [transfer(b, a.address, 1, fee=FEE - 1), transfer(fresh, a.address, 1, fee=0), transfer(fresh, a.address, 1), good]
    node._dispatch(object(), {"t": "txs", "a": wires}, b"")  # type: ignore[arg-type]
    assert len(node.chain.mempool) == 1 and node.chain.mempool.get(actions.parse(good).hash) is not None
    assert [m for m in relayed if m["t"] == "txs"] == [{"t": "txs", "a": [good]}]
    assert node.chain.state.get("a/" + fresh.address) is None


@pytest.mark.parametrize(("args", "expected"), [([], str(10**16)), (["--min-fee", "5"], "5"), (["--min-fee", "0"], None)])
def test_testnet_cli_writes_the_minimum_fee(tmp_path: Path, args: list[str], expected: str | None) -> None:
    res = CliRunner().invoke(main, ["testnet", "--delegates", "1", "--out", str(tmp_path / "tn"), *args])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "tn" / "genesis.json").read_text())
    assert doc.get("min_fee") == expected


def test_testnet_cli_refuses_a_negative_minimum_fee(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["testnet", "--out", str(tmp_path / "tn"), "--min-fee", "-1"])
    assert res.exit_code == 2 and "--min-fee" in res.output
