"""The node's HTTP API, in-process against a 1-delegate network: every endpoint, every client mistake.

A client mistake is always a 4xx with {"error": {"code", "message", "field"?}} (never a 5xx), and every
response body matches the OpenAPI document the node serves. The helpers here (a testnet, a started node,
a small OpenAPI schema checker) are also used by test_api_fuzz.py and test_p2p.py.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import logging
import random
import re
import time
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from iotex_node import actions, api, config, testnet
from iotex_node import genesis as genesis_mod
from iotex_node.crypto.keys import PrivateKey
from iotex_node.node import Node, load_key
from iotex_ops.traffic import read_accounts

pytestmark = pytest.mark.slow  # each test runs a node in this process (HTTP API, admin socket)

CHAIN_ID = 4690
BLOCK_MS = 200
FEE = genesis_mod.DEFAULT_MIN_FEE  # the testnet's genesis minimum fee
JSON = {"Content-Type": "application/json"}


# --- helpers shared with the other API and P2P tests ----------------------------------------------


@dataclass
class NetHomes:
    out: Path
    homes: list[Path]
    accounts: list[PrivateKey]
    genesis: genesis_mod.Genesis


def make_testnet(out: Path, **spec: Any) -> NetHomes:
    spec.setdefault("delegates", 1)
    spec.setdefault("accounts", 3)
    spec.setdefault("block_interval_ms", BLOCK_MS)
    spec.setdefault("chain_id", CHAIN_ID)
    homes = testnet.generate(testnet.TestnetSpec(out=out, **spec))
    accounts = read_accounts(out) if spec["accounts"] else []
    return NetHomes(out, homes, accounts, genesis_mod.load(out / "genesis.json"))


async def start_node(home: Path, **overrides: Any) -> Node:
    """Start the node of `home` in this event loop, on ephemeral loopback ports, with config overrides."""
    cfg = config.load(home)
    cfg.api_listen = "127.0.0.1:0"
    cfg.p2p_listen = "127.0.0.1:0"
    for k, v in overrides.items():
        assert hasattr(cfg, k), k
        setattr(cfg, k, v)
    cfg.write()
    cfg = config.load(home)  # what the node reads is what passed validation
    node = Node(cfg, load_key(cfg), genesis_mod.load(cfg.path(cfg.genesis)))
    await node.start()
    return node


async def wait_for(predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


async def wait_height(node: Node, height: int, timeout: float = 10.0) -> None:
    await wait_for(lambda: node.chain.height >= height, timeout, f"height {height} (at {node.chain.height})")


def transfer(key: PrivateKey, to: str, nonce: int, amount: int = 1, fee: int = FEE, chain_id: int = CHAIN_ID) -> dict[str, Any]:
    a = actions.sign(key, chain_id=chain_id, nonce=nonce, fee=fee, type="transfer", payload={"to": to, "amount": str(amount)})
    return a.to_wire()


def openapi_doc() -> dict[str, Any]:
    return dict(json.loads(api.openapi_document()))


def _resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "integer": int,
    "number": (int, float),
}


def schema_errors(doc: dict[str, Any], schema: dict[str, Any], value: Any, where: str = "$") -> list[str]:
    """Where `value` breaks `schema` (the OpenAPI 3.0 subset openapi.json uses); [] when it conforms."""
    schema = _resolve(doc, schema)
    if value is None:
        return [] if schema.get("nullable") or not (set(schema) & {"type", "oneOf", "allOf"}) else [f"{where}: null"]
    errs: list[str] = []
    for sub in schema.get("allOf", []):
        errs += schema_errors(doc, sub, value, where)
    if "oneOf" in schema:
        matches = sum(not schema_errors(doc, s, value, where) for s in schema["oneOf"])
        if matches != 1:
            errs.append(f"{where}: matches {matches} of the oneOf alternatives")
    t = schema.get("type")
    if t is not None:
        py = _TYPES[t]
        if not isinstance(value, py) or (t in ("integer", "number") and isinstance(value, bool)):
            return [*errs, f"{where}: {type(value).__name__} is not {t}"]
    if "enum" in schema and value not in schema["enum"]:
        errs.append(f"{where}: {value!r} not in {schema['enum']}")
    if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
        errs.append(f"{where}: {value[:80]!r} does not match {schema['pattern']}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errs.append(f"{where}: {value} < {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errs.append(f"{where}: {value} > {schema['maximum']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            errs.append(f"{where}: {len(value)} items")
        if "items" in schema:
            for i, item in enumerate(value):
                errs += schema_errors(doc, schema["items"], item, f"{where}[{i}]")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        errs += [f"{where}: missing {k}" for k in schema.get("required", []) if k not in value]
        if schema.get("additionalProperties") is False:
            errs += [f"{where}: unexpected {k}" for k in value if k not in props]
        for k, sub in props.items():
            if k in value:
                errs += schema_errors(doc, sub, value[k], f"{where}.{k}")
    return errs


def check_response(doc: dict[str, Any], path: str, method: str, status: int, body: Any) -> None:
    """The status is documented for the operation and the body matches its schema (405: the error schema)."""
    if status == 405:
        schema: dict[str, Any] = {"$ref": "#/components/schemas/Error"}
    else:
        responses = doc["paths"][path][method.lower()]["responses"]
        assert str(status) in responses, f"{method} {path} answered {status}, which the OpenAPI document does not list"
        response = _resolve(doc, responses[str(status)])
        schema = next(iter(response["content"].values()))["schema"]
    errs = schema_errors(doc, schema, body)
    assert not errs, f"{method} {path} {status}: body does not match the OpenAPI document: {errs[:5]}\n{str(body)[:500]}"


def metric(node: Node, name: str, **labels: str) -> float:
    return node.metrics.registry.get_sample_value(name, labels) or 0.0


# --- fixtures --------------------------------------------------------------------------------------


@pytest.fixture
def net(tmp_path: Path) -> NetHomes:
    return make_testnet(tmp_path / "net")


@pytest.fixture
async def node(net: NetHomes) -> AsyncIterator[Node]:
    n = await start_node(net.homes[0], rate_limit_per_second=10_000.0, rate_limit_burst=10_000)
    try:
        yield n
    finally:
        await n.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as s:
        yield s


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return openapi_doc()


class Client:
    """Requests against one node; every answer is checked against the OpenAPI document."""

    def __init__(self, http: aiohttp.ClientSession, node: Node, doc: dict[str, Any]) -> None:
        self.http, self.node, self.doc = http, node, doc

    async def call(
        self, method: str, path: str, template: str | None = None, *, body: Any = None, data: Any = None, **kw: Any
    ) -> tuple[int, Any]:
        if body is not None:
            data = json.dumps(body).encode()
            kw.setdefault("headers", JSON)
        async with self.http.request(method, self.node.api_url + path, data=data, **kw) as resp:
            raw = await resp.read()
            status = resp.status
            if resp.content_type == "application/json":
                parsed: Any = json.loads(raw)
            else:
                parsed = raw.decode()
        if template is not None:
            check_response(self.doc, template, method, status, parsed)
        if status >= 400 and not (path == "/readyz" and status == 503):
            assert resp.content_type == "application/json", f"{status} answered as {resp.content_type}"
            assert not schema_errors(self.doc, {"$ref": "#/components/schemas/Error"}, parsed), parsed
        return status, parsed

    async def get(self, path: str, template: str | None = None, **kw: Any) -> tuple[int, Any]:
        return await self.call("GET", path, template or path.split("?")[0], **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        return await self.call("POST", path, path, body=body, **kw)

    async def wait_final(self, h: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status, body = await self.get(f"/v1/actions/{h}", "/v1/actions/{hash}")
            assert status == 200, body
            if body["status"] == "finalized":
                return dict(body)
            assert body["status"] == "pending", body
            assert time.monotonic() < deadline, f"action {h} not finalized after {timeout} s"
            await asyncio.sleep(0.05)


@pytest.fixture
def client(http: aiohttp.ClientSession, node: Node, doc: dict[str, Any]) -> Client:
    return Client(http, node, doc)


def assert_error(status: int, body: Any, want_status: int, code: str, field: str | None = None, mention: str = "") -> None:
    assert status == want_status, (status, body)
    err = body["error"]
    assert err["code"] == code, err
    if field is not None:
        assert err.get("field") == field, err
    if mention:
        assert mention in err["message"], err


# --- endpoints -------------------------------------------------------------------------------------


async def test_submit_action_is_pending_then_finalized_with_receipt(client: Client, net: NetHomes) -> None:
    a, b = net.accounts[0], net.accounts[1]
    _, before = await client.get(f"/v1/accounts/{b.address}", "/v1/accounts/{address}")
    status, body = await client.post("/v1/actions", transfer(a, b.address, 1, amount=12345, fee=FEE + 7))
    assert status == 202, body
    assert body["status"] == "pending"
    assert re.fullmatch(r"[0-9a-f]{64}", body["hash"])
    status, first = await client.get(f"/v1/actions/{body['hash']}", "/v1/actions/{hash}")
    assert status == 200 and first["status"] in ("pending", "finalized")
    final = await client.wait_final(body["hash"])
    assert final["receipt"]["status"] == "success"
    assert final["receipt"]["height"] >= 1
    _, after = await client.get(f"/v1/accounts/{b.address}", "/v1/accounts/{address}")
    assert int(after["balance"]) == int(before["balance"]) + 12345
    _, sender = await client.get(f"/v1/accounts/{a.address}", "/v1/accounts/{address}")
    assert sender["nonce"] == 1 and sender["pending_nonce"] == 2
    # the block that holds it carries it
    _, blk = await client.get(f"/v1/blocks/{final['receipt']['height']}", "/v1/blocks/{ref}")
    assert body["hash"] in [actions.parse(w).hash_hex for w in blk["actions"]]


async def test_batch_reports_each_action_in_order(client: Client, net: NetHomes) -> None:
    a, b = net.accounts[0], net.accounts[1]
    wires = [transfer(a, b.address, n) for n in (1, 2, 3)]
    bad = dict(wires[0], nonce=9)  # its signature no longer matches
    status, body = await client.post("/v1/actions/batch", {"actions": [*wires, wires[0], bad]})
    assert status == 200, body
    assert body["accepted"] == 3
    results = body["results"]
    assert [r.get("status") for r in results[:3]] == ["pending"] * 3
    assert results[3]["error"]["code"] == "duplicate"
    assert results[4]["error"]["code"] == "invalid_action" and results[4]["error"]["field"] == "signature"
    for r in results[:3]:
        await client.wait_final(r["hash"])
    _, acct = await client.get(f"/v1/accounts/{a.address}", "/v1/accounts/{address}")
    assert acct["nonce"] == 3


async def test_account(client: Client, net: NetHomes) -> None:
    a = net.accounts[2]
    status, body = await client.get(f"/v1/accounts/{a.address}", "/v1/accounts/{address}")
    assert status == 200
    assert body["address"] == a.address
    assert int(body["balance"]) == testnet.TestnetSpec.account_balance
    assert (body["nonce"], body["pending_nonce"], body["unclaimed_rewards"]) == (0, 1, "0")
    fresh = PrivateKey().address  # a valid address never seen: an empty account, not a 404
    status, body = await client.get(f"/v1/accounts/{fresh}", "/v1/accounts/{address}")
    assert status == 200 and body["balance"] == "0" and body["nonce"] == 0


async def test_blocks_by_height_hash_latest_and_genesis(client: Client, node: Node) -> None:
    await wait_height(node, 3)
    t = "/v1/blocks/{ref}"
    status, b2 = await client.get("/v1/blocks/2", t)
    assert status == 200
    assert b2["height"] == b2["header"]["height"] == 2
    assert b2["certificate"]["signatures"], "a final block carries its commit certificate"
    _, b1 = await client.get("/v1/blocks/1", t)
    assert b2["header"]["prev_hash"] == b1["hash"]
    status, by_hash = await client.get(f"/v1/blocks/{b2['hash']}", t)
    assert status == 200 and by_hash == b2
    status, upper = await client.get(f"/v1/blocks/{b2['hash'].upper()}", t)
    assert status == 200 and upper["hash"] == b2["hash"]
    status, latest = await client.get("/v1/blocks/latest", t)
    assert status == 200 and latest["height"] >= 3
    status, g = await client.get("/v1/blocks/0", t)
    assert status == 200
    assert g["height"] == 0 and g["hash"] == node.genesis.hash.hex() and g["genesis"]["chain_id"] == CHAIN_ID
    assert b1["header"]["prev_hash"] == g["hash"]
    status, g2 = await client.get(f"/v1/blocks/{g['hash']}", t)
    assert status == 200 and g2 == g
    status, body = await client.get("/v1/blocks/999999", t)
    assert_error(status, body, 404, "not_found", mention="999999")
    status, body = await client.get("/v1/blocks/" + "ab" * 32, t)
    assert_error(status, body, 404, "not_found")


async def test_block_range_read_lists_headers_of_a_span_in_one_request(
    client: Client, net: NetHomes, node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = net.accounts[0], net.accounts[1]
    _, sent = await client.post("/v1/actions", transfer(a, b.address, 1))
    final = await client.wait_final(sent["hash"])
    with_action = final["receipt"]["height"]
    await wait_height(node, with_action + 2)
    t = "/v1/blocks"
    status, doc = await client.get(f"/v1/blocks?from=1&to={with_action + 1}", t)
    assert status == 200, doc
    assert (doc["from"], doc["to"]) == (1, with_action + 1) and doc["tip"] >= with_action + 2
    assert [x["height"] for x in doc["blocks"]] == list(range(1, with_action + 2))
    # each entry is what /v1/blocks/{height} says of that block
    for x in doc["blocks"]:
        _, full = await client.get(f"/v1/blocks/{x['height']}", "/v1/blocks/{ref}")
        hdr = full["header"]
        assert x["hash"] == full["hash"]
        assert (x["round"], x["timestamp_ms"], x["proposer"]) == (hdr["round"], hdr["timestamp_ms"], hdr["proposer"])
        assert (x["epoch"], x["protocol"]) == (hdr["epoch"], hdr["protocol"])
        assert x["action_count"] == len(full["actions"])
        assert x["voters"] == [s["voter"] for s in full["certificate"]["signatures"]]
    assert doc["blocks"][with_action - 1]["action_count"] >= 1
    # without `to`: up to the tip; past the tip: stops there; an empty span is no error
    status, doc = await client.get("/v1/blocks?from=2", t)
    assert status == 200 and doc["to"] == doc["tip"] and doc["blocks"][-1]["height"] == doc["tip"]
    status, doc = await client.get("/v1/blocks?from=2&to=999999999999999999", t)
    assert status == 200 and doc["blocks"][-1]["height"] == doc["tip"] == doc["to"]
    status, doc = await client.get("/v1/blocks?from=3&to=2", t)
    assert status == 200 and doc["blocks"] == [] and doc["to"] == 2
    status, doc = await client.get("/v1/blocks?from=999999", t)
    assert status == 200 and doc["blocks"] == [] and doc["to"] == 999998
    # at most MAX_RANGE heights, and fewer once RANGE_READ_BUDGET bytes of blocks are read: `to` says where it stopped
    monkeypatch.setattr(api, "MAX_RANGE", 2)
    status, doc = await client.get("/v1/blocks?from=1", t)
    assert status == 200 and doc["to"] == 2 and len(doc["blocks"]) == 2
    monkeypatch.setattr(api, "MAX_RANGE", 1000)
    monkeypatch.setattr(api, "RANGE_READ_BUDGET", 1)
    status, doc = await client.get("/v1/blocks?from=1&to=3", t)
    assert status == 200 and doc["to"] == 1 and [x["height"] for x in doc["blocks"]] == [1]


async def test_block_range_read_refuses_bad_heights_naming_the_field(client: Client) -> None:
    t = "/v1/blocks"
    status, body = await client.get("/v1/blocks", t)
    assert_error(status, body, 400, "invalid_height", field="from", mention="required")
    for bad in ("0", "-1", "1.5", "one", "", "%C2%B2", "1" * 19, "0x1", "1e3"):
        status, body = await client.get(f"/v1/blocks?from={bad}", t)
        assert_error(status, body, 400, "invalid_height", field="from")
        status, body = await client.get(f"/v1/blocks?from=1&to={bad}", t)
        assert_error(status, body, 400, "invalid_height", field="to")
    status, body = await client.get("/v1/blocks?from=1&count=5", t)
    assert_error(status, body, 400, "unknown_parameter", field="count", mention="from, to")
    status, body = await client.get("/v1/blocks?from=1&from=2", t)
    assert_error(status, body, 400, "duplicate_parameter", field="from")


async def test_chain_info(client: Client, node: Node) -> None:
    await wait_height(node, 2)
    status, c = await client.get("/v1/chain")
    assert status == 200
    for k in ("height", "finalized_height", "finalized_hash", "epoch", "active_delegates", "node_version", "protocol_version"):
        assert k in c, k
    assert c["finalized_height"] >= 2 and c["height"] >= c["finalized_height"]
    assert c["chain_id"] == CHAIN_ID and c["epoch"] == 1
    assert c["active_delegates"] == [node.key.address]
    assert c["protocol_version"] == 1 and c["node_version"]
    _, blk = await client.get(f"/v1/blocks/{c['finalized_height']}", "/v1/blocks/{ref}")
    assert blk["hash"] == c["finalized_hash"]


async def test_delegates_with_votes_and_productivity(client: Client, node: Node) -> None:
    await wait_height(node, 3)
    status, d = await client.get("/v1/delegates")
    assert status == 200
    assert d["epoch"] == 1 and d["active"] == [node.key.address]
    (cand,) = d["candidates"]
    assert cand["operator"] == node.key.address and cand["active"] is True and cand["name"] == "delegate0"
    assert int(cand["votes"]) > 0
    assert cand["productivity"]["produced"] >= 2 and cand["productivity"]["missed"] == 0
    status, d1 = await client.get("/v1/delegates?epoch=1", "/v1/delegates")
    assert status == 200 and d1["epoch"] == 1
    status, far = await client.get("/v1/delegates?epoch=9999", "/v1/delegates")
    assert status == 200 and far["active"] == [] and far["candidates"][0]["productivity"]["expected"] == 0


async def test_buckets_and_bucket_by_id(client: Client, net: NetHomes, node: Node) -> None:
    status, body = await client.get("/v1/buckets")
    assert status == 200 and not body["truncated"]
    (self_stake,) = body["buckets"]  # the genesis candidate's self-stake
    assert self_stake["id"] == 0 and int(self_stake["votes"]) >= int(self_stake["amount"])
    owner = self_stake["owner"]
    status, one = await client.get("/v1/buckets/0", "/v1/buckets/{id}")
    assert status == 200 and one == self_stake

    a = net.accounts[0]
    stake = actions.sign(
        a, chain_id=CHAIN_ID, nonce=1, fee=FEE, type="stake_create",
        payload={"candidate": "delegate0", "amount": str(10**18), "duration_days": 7},
    )  # fmt: skip
    status, sub = await client.post("/v1/actions", stake.to_wire())
    assert status == 202, sub
    final = await client.wait_final(sub["hash"])
    bid = final["receipt"]["bucket"]
    status, b = await client.get(f"/v1/buckets/{bid}", "/v1/buckets/{id}")
    assert status == 200
    assert (b["owner"], b["candidate"], b["amount"], b["days"]) == (a.address, owner, str(10**18), 7)
    _, mine = await client.get(f"/v1/buckets?owner={a.address}", "/v1/buckets")
    assert [x["id"] for x in mine["buckets"]] == [bid]
    _, voting = await client.get(f"/v1/buckets?candidate={owner}", "/v1/buckets")
    assert [x["id"] for x in voting["buckets"]] == [0, bid]
    _, both = await client.get(f"/v1/buckets?candidate={owner}&owner={owner}", "/v1/buckets")
    assert [x["id"] for x in both["buckets"]] == [0]
    status, body = await client.get("/v1/buckets/424242", "/v1/buckets/{id}")
    assert_error(status, body, 404, "not_found", mention="424242")


async def test_rewards(client: Client, net: NetHomes, node: Node) -> None:
    await wait_height(node, 2)
    _, d = await client.get("/v1/delegates")
    owner = d["candidates"][0]["owner"]
    status, r = await client.get(f"/v1/rewards/{owner}", "/v1/rewards/{address}")
    assert status == 200 and r["address"] == owner
    assert int(r["unclaimed"]) >= 2 * node.genesis.block_reward, "the proposer's owner earns block rewards"
    status, r = await client.get(f"/v1/rewards/{net.accounts[0].address}", "/v1/rewards/{address}")
    assert status == 200 and r["unclaimed"] == "0"


async def test_healthz_and_readyz(client: Client) -> None:
    status, body = await client.get("/healthz")
    assert (status, body) == (200, {"status": "alive"})
    status, body = await client.get("/readyz")
    assert status == 200 and body["status"] == "ready" and body["participating"] is True


async def test_readyz_is_503_without_a_quorum_of_peers(tmp_path: Path, http: aiohttp.ClientSession, doc: dict[str, Any]) -> None:
    net4 = make_testnet(tmp_path / "net4", delegates=4, accounts=0)
    lone = await start_node(net4.homes[0])  # 1 of 4 delegates: cannot reach a quorum
    try:
        c = Client(http, lone, doc)
        status, body = await c.get("/readyz")
        assert status == 503 and body["status"] == "not ready"
        assert any("quorum" in p for p in body["problems"]), body
        status, _ = await c.get("/healthz")
        assert status == 200, "liveness does not depend on peers"
        lone.fatal = "storage failed: disk full"
        _, body = await c.get("/readyz")
        assert "storage failed: disk full" in body["problems"]
    finally:
        await lone.stop()


async def test_metrics_exposition(client: Client, node: Node) -> None:
    await client.get("/v1/chain")
    await client.post("/v1/actions", data=b"{", headers=JSON)
    await client.call("GET", "/v1/nope")
    async with client.http.get(node.api_url + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert all(name.startswith("iotex_") for name in families if not name.startswith(("python_", "process_"))), families
    for name in ("iotex_block_height", "iotex_finalized_height", "iotex_peers", "iotex_api_requests",
                 "iotex_api_rejections", "iotex_mempool_actions", "iotex_p2p_violations"):  # fmt: skip
        assert name in families, f"{name} missing from /metrics"
    samples = [s for f in families.values() for s in f.samples]
    requests = {
        (s.labels["method"], s.labels["route"], s.labels["code"]): s.value
        for s in samples
        if s.name == "iotex_api_requests_total"
    }
    assert requests[("GET", "/v1/chain", "200")] >= 1
    assert requests[("GET", "unmatched", "404")] >= 1
    rejections = {s.labels["reason"]: s.value for s in samples if s.name == "iotex_api_rejections_total"}
    assert rejections["malformed_json"] >= 1


async def test_openapi_document_is_served_and_describes_exactly_the_app_routes(client: Client, node: Node) -> None:
    status, served = await client.get("/v1/openapi.json")
    assert status == 200
    assert served == client.doc
    assert served["openapi"].startswith("3.0")
    app_routes = {
        (r.method.lower(), r.resource.canonical)
        for r in node.api_runner.app.router.routes()
        if r.resource is not None and r.method != "HEAD"
    }
    documented = {(m, p) for p, ops in served["paths"].items() for m in ops if m in ("get", "post", "put", "delete", "patch")}
    assert app_routes == documented, f"only in the app: {app_routes - documented}; only documented: {documented - app_routes}"
    for (method, path), op in ((k, served["paths"][k[1]][k[0]]) for k in documented):
        assert "default" in op["responses"], f"{method} {path} has no default (error) response"
        params = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        assert params == set(re.findall(r"{(\w+)}", path)), f"{method} {path}: path parameters {params}"
        if method == "post":
            assert op["requestBody"]["content"]["application/json"]["schema"]
    # every $ref resolves
    for ref in re.findall(r'"\$ref": ?"([^"]+)"', json.dumps(served)):
        _resolve(served, {"$ref": ref})


# --- client mistakes -------------------------------------------------------------------------------


async def test_malformed_json_and_empty_body(client: Client) -> None:
    for path in ("/v1/actions", "/v1/actions/batch"):
        for data in (b"{", b'{"chain_id": 1,}', b"\xff\xfe", b"NaN", b"[" * 5000):
            status, body = await client.post(path, data=data, headers=JSON)
            assert_error(status, body, 400, "malformed_json", mention="not valid JSON")
        status, body = await client.post(path, data=b"", headers=JSON)
        assert_error(status, body, 400, "malformed_json", mention="empty")


async def test_body_over_the_size_limit_is_413(client: Client, node: Node) -> None:
    limit = node.cfg.max_body_bytes
    status, body = await client.post("/v1/actions", data=io.BytesIO(b" " * (limit + 1)), headers=JSON)
    assert_error(status, body, 413, "body_too_large", mention=str(limit))
    status, body = await client.post("/v1/actions/batch", data=io.BytesIO(b"[" + b"1," * limit + b"1]"), headers=JSON)
    assert_error(status, body, 413, "body_too_large")

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the cap holds while streaming too
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    status, body = await client.post("/v1/actions", data=chunked(), headers=JSON)
    assert_error(status, body, 413, "body_too_large")
    assert metric(node, "iotex_api_rejections_total", reason="body_too_large") == 3


async def test_content_encoding(client: Client, net: NetHomes, node: Node) -> None:
    a, b = net.accounts[0], net.accounts[1].address
    gz = gzip.compress(json.dumps(transfer(a, b, 1)).encode())
    status, body = await client.post("/v1/actions", data=gz, headers={**JSON, "Content-Encoding": "gzip"})
    assert status == 202, body
    batch = zlib.compress(json.dumps({"actions": [transfer(a, b, 2), transfer(a, b, 3)]}).encode())
    status, body = await client.post("/v1/actions/batch", data=batch, headers={**JSON, "Content-Encoding": "deflate"})
    assert status == 200 and body["accepted"] == 2, body
    for enc in ("gzip", "deflate"):
        # not compressed at all; a truncated stream (aiohttp's own inflater used to hang on b"x"); trailing bytes
        for data in (b'{"not": "compressed"}', b"x", b"", zlib.compress(b"{}")[:-3], gzip.compress(b"{}") + b"junk"):
            status, body = await client.post("/v1/actions", data=data, headers={**JSON, "Content-Encoding": enc})
            assert_error(status, body, 400, "malformed_body", mention=enc)
    for enc in ("br", "zstd", "compress", "gzip, gzip"):
        status, body = await client.post("/v1/actions", data=gz, headers={**JSON, "Content-Encoding": enc})
        assert_error(status, body, 415, "bad_content_encoding", mention="gzip")
    bomb = gzip.compress(b" " * (node.cfg.max_body_bytes + 1))  # small on the wire, too large once inflated
    status, body = await client.post("/v1/actions", data=bomb, headers={**JSON, "Content-Encoding": "gzip"})
    assert_error(status, body, 413, "body_too_large", mention="decompressed")
    status, _ = await client.get("/healthz")
    assert status == 200


async def test_bad_signatures(client: Client, net: NetHomes) -> None:
    a, b = net.accounts[0], net.accounts[1]
    wire = transfer(a, b.address, 1)
    other = transfer(PrivateKey(), b.address, 1)
    cases = {
        "someone else's signature": dict(wire, signature=other["signature"]),
        "a signature of other content": dict(wire, payload={"to": b.address, "amount": "2"}),
        "all zero": dict(wire, signature="00" * 65),
        "not hex": dict(wire, signature="zz" * 65),
        "hex with spaces": dict(wire, signature=" " + wire["signature"][1:]),
        "too short": dict(wire, signature=wire["signature"][:-2]),
        "not a string": dict(wire, signature=12),
    }
    for why, w in cases.items():
        status, body = await client.post("/v1/actions", w)
        assert status == 400, (why, body)
        assert body["error"]["code"] == "invalid_action" and body["error"]["field"] == "signature", (why, body)


async def test_wrong_chain_id_is_refused(client: Client, net: NetHomes, node: Node) -> None:
    wire = transfer(net.accounts[0], net.accounts[1].address, 1, chain_id=CHAIN_ID + 1)
    status, body = await client.post("/v1/actions", wire)
    assert_error(status, body, 422, "wrong_chain_id", field="chain_id", mention=str(CHAIN_ID))
    assert metric(node, "iotex_api_rejections_total", reason="wrong_chain_id") == 1


async def test_nonce_replay_and_gap(client: Client, net: NetHomes, node: Node) -> None:
    a, b = net.accounts[0], net.accounts[1]
    status, body = await client.post("/v1/actions", transfer(a, b.address, 3))
    assert_error(status, body, 409, "nonce_gap", field="nonce", mention="next nonce is 1")
    first = transfer(a, b.address, 1, amount=5)
    status, body = await client.post("/v1/actions", first)
    assert status == 202
    status, again = await client.post("/v1/actions", first)  # the same action while pending
    assert_error(status, again, 409, "duplicate")
    await client.wait_final(body["hash"])
    status, again = await client.post("/v1/actions", first)  # the same action once final
    assert_error(status, again, 409, "duplicate")
    status, reuse = await client.post("/v1/actions", transfer(a, b.address, 1, amount=6))  # a new action, used nonce
    assert_error(status, reuse, 409, "nonce_too_low", field="nonce", mention="already used")
    assert metric(node, "iotex_api_rejections_total", reason="nonce_gap") == 1
    assert metric(node, "iotex_api_rejections_total", reason="duplicate") == 2


async def test_insufficient_balance(client: Client, net: NetHomes) -> None:
    poor = PrivateKey()
    status, body = await client.post("/v1/actions", transfer(poor, net.accounts[0].address, 1))
    assert_error(status, body, 422, "insufficient_balance", field="fee")


async def test_amounts_negative_overflowing_or_malformed(client: Client, net: NetHomes) -> None:
    wire = transfer(net.accounts[0], net.accounts[1].address, 1)
    cases: list[tuple[Any, str]] = [
        ("-1", "negative"),
        (-1, "negative"),
        (str(2**128), "maximum"),
        (2**128, ""),  # a JSON number this large cannot be an exact integer: refused as a number
        ("1" * 5000, ""),
        ("1.5", "decimal integer"),
        ("0x10", "decimal integer"),
        ("007", "decimal integer"),
        ("12\n", "decimal integer"),
        (str(2**128 - 1) + "0", "maximum amount 2^128-1"),  # more digits than any amount can have
        (str(2**256), "maximum amount 2^128-1"),
        (1.5, "decimal string"),
        (True, "decimal string"),
        (None, "decimal string"),
        ("0", "greater than zero"),
    ]
    for amount, mention in cases:
        w = dict(wire, payload={"to": net.accounts[1].address, "amount": amount})
        status, body = await client.post("/v1/actions", w)
        assert_error(status, body, 400, "invalid_action", field="payload.amount", mention=mention)
    for fee in ("-5", str(2**128), 1e3):
        status, body = await client.post("/v1/actions", dict(wire, fee=fee))
        assert_error(status, body, 400, "invalid_action", field="fee")


async def test_unknown_and_missing_fields(client: Client, net: NetHomes) -> None:
    wire = transfer(net.accounts[0], net.accounts[1].address, 1)
    status, body = await client.post("/v1/actions", dict(wire, memo="hi"))
    assert_error(status, body, 400, "invalid_action", mention="memo")
    status, body = await client.post("/v1/actions", dict(wire, payload={**wire["payload"], "note": "x"}))
    assert_error(status, body, 400, "invalid_action", mention="note")
    missing = {k: v for k, v in wire.items() if k != "nonce"}
    status, body = await client.post("/v1/actions", missing)
    assert_error(status, body, 400, "invalid_action", mention="nonce")
    status, body = await client.post("/v1/actions", dict(wire, payload={"to": wire["payload"]["to"]}))
    assert_error(status, body, 400, "invalid_action", field="payload.amount", mention="missing")


async def test_wrong_types(client: Client, net: NetHomes) -> None:
    wire = transfer(net.accounts[0], net.accounts[1].address, 1)
    cases: list[tuple[str, Any, str]] = [
        ("nonce", "1", "nonce"),
        ("nonce", 1.0, "nonce"),
        ("nonce", 0, "nonce"),
        ("nonce", -1, "nonce"),
        ("nonce", 2**63, "nonce"),
        ("chain_id", True, "chain_id"),
        ("chain_id", [CHAIN_ID], "chain_id"),
        ("chain_id", 2**32, "chain_id"),
        ("type", "mint", "type"),
        ("type", ["transfer"], "type"),
        ("payload", [], "payload"),
        ("payload", "to=me", "payload"),
        ("sender", 42, "sender"),
    ]
    for key, value, field in cases:
        status, body = await client.post("/v1/actions", dict(wire, **{key: value}))
        assert_error(status, body, 400, "invalid_action", field=field)
    for doc in ([wire], "transfer", 7, None, True):
        status, body = await client.post("/v1/actions", data=json.dumps(doc).encode(), headers=JSON)
        assert_error(status, body, 400, "invalid_action", mention="JSON object")


async def test_bad_addresses(client: Client, net: NetHomes) -> None:
    good = net.accounts[0].address
    bad = [
        "io1bad",
        good[:-1] + ("q" if good[-1] != "q" else "p"),  # checksum broken
        good.upper(),
        "0x" + "ab" * 20,
        "io1" + "b" * 38,  # 'b' is not in the bech32 alphabet
        "x" * 200,
        "%E2%82%AC",
    ]
    for addr in bad:
        for path, t in ((f"/v1/accounts/{addr}", "/v1/accounts/{address}"), (f"/v1/rewards/{addr}", "/v1/rewards/{address}")):
            status, body = await client.get(path, t)
            assert_error(status, body, 400, "invalid_address", field="address")
        status, body = await client.get(f"/v1/buckets?owner={addr}", "/v1/buckets")
        assert_error(status, body, 400, "invalid_address", field="owner")
        status, body = await client.get(f"/v1/buckets?candidate={addr}", "/v1/buckets")
        assert_error(status, body, 400, "invalid_address", field="candidate")
    wire = transfer(net.accounts[0], good, 1)
    status, body = await client.post("/v1/actions", dict(wire, payload={"to": "io1bad", "amount": "1"}))
    assert_error(status, body, 400, "invalid_action", field="payload.to")
    status, body = await client.post("/v1/actions", dict(wire, sender="io1bad"))
    assert_error(status, body, 400, "invalid_action", field="sender")


async def test_bad_hashes_and_references(client: Client) -> None:
    for h in ("zz", "ab" * 31, "ab" * 33, "g" * 64, " " + "a" * 63, "a" * 62 + "%20a", "%C2%B2" * 32, "-1"):
        status, body = await client.get(f"/v1/actions/{h}", "/v1/actions/{hash}")
        assert_error(status, body, 400, "invalid_hash", field="hash")
    status, body = await client.get("/v1/actions/" + "cd" * 32, "/v1/actions/{hash}")
    assert_error(status, body, 404, "not_found")
    for ref in ("-1", "1.0", "%C2%B2", "%D9%A1", "1" * 19, "LATEST", "tip", "0x01", "a" * 63, "1e3", "%20"):
        status, body = await client.get(f"/v1/blocks/{ref}", "/v1/blocks/{ref}")
        assert_error(status, body, 400, "invalid_block_ref", field="ref")
    for bid in ("-1", "%C2%B2", "1" * 19, "one", "0x1"):
        status, body = await client.get(f"/v1/buckets/{bid}", "/v1/buckets/{id}")
        assert_error(status, body, 400, "invalid_bucket", field="id")
    for epoch in ("0", "-1", "%C2%B2", "1" * 13, "", "one", "1.5"):
        status, body = await client.get(f"/v1/delegates?epoch={epoch}", "/v1/delegates")
        assert_error(status, body, 400, "invalid_epoch", field="epoch")


async def test_unknown_and_repeated_query_parameters(client: Client) -> None:
    status, body = await client.get("/v1/buckets?ownr=io1x", "/v1/buckets")
    assert_error(status, body, 400, "unknown_parameter", field="ownr", mention="owner")
    status, body = await client.get("/v1/chain?verbose=1", "/v1/chain")
    assert_error(status, body, 400, "unknown_parameter", field="verbose")
    status, body = await client.get("/v1/delegates?epoch=1&epoch=2", "/v1/delegates")
    assert_error(status, body, 400, "duplicate_parameter", field="epoch")
    status, _ = await client.get("/healthz?probe=k8s", "/healthz")  # probes outside /v1 may add their own
    assert status == 200


async def test_unknown_route_and_wrong_method_are_json(client: Client) -> None:
    for path in ("/v2/chain", "/v1/chain/", "/v1", "/", "/v1/actions/batch/x", "/%ff"):
        status, body = await client.call("GET", path)
        assert_error(status, body, 404, "not_found")
    status, body = await client.call("DELETE", "/v1/chain")
    assert_error(status, body, 405, "method_not_allowed", mention="GET")
    async with client.http.put(client.node.api_url + "/v1/actions", data=b"{}", headers=JSON) as resp:
        assert resp.status == 405 and resp.headers["Allow"] == "POST"
        assert (await resp.json())["error"]["code"] == "method_not_allowed"
    status, body = await client.call("GET", "/v1/actions")
    assert_error(status, body, 405, "method_not_allowed")
    status, body = await client.call("POST", "/v1/chain", body={})
    assert_error(status, body, 405, "method_not_allowed")
    odd = ("PROPFIND", "MKCOL", "LOCK", "SEARCH", "PURGE")  # WebDAV and friends: each must not become a metric series
    for method in odd:
        status, body = await client.call(method, "/v1/chain")
        assert_error(status, body, 405, "method_not_allowed")
    assert metric(client.node, "iotex_api_requests_total", method="other", route="unmatched", code="405") == len(odd)
    methods = {s.labels["method"] for s in client.node.metrics.api_requests.collect()[0].samples}
    assert not methods & set(odd), methods


async def test_wrong_content_type_is_415(client: Client, net: NetHomes) -> None:
    wire = json.dumps(transfer(net.accounts[0], net.accounts[1].address, 1)).encode()
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml",
                  "application/json; charset=latin-1", None):  # fmt: skip
        headers = {"Content-Type": ctype} if ctype else {}
        for path in ("/v1/actions", "/v1/actions/batch"):
            status, body = await client.post(path, data=wire, headers=headers)
            assert_error(status, body, 415, "bad_content_type", mention="application/json")
    status, body = await client.post("/v1/actions", data=wire, headers={"Content-Type": "application/json; charset=utf-8"})
    assert status == 202, body


async def test_batch_envelope_mistakes(client: Client, net: NetHomes) -> None:
    wire = transfer(net.accounts[0], net.accounts[1].address, 1)
    cases: list[tuple[Any, str, str]] = [
        ([wire], "actions", "{"),
        ({"action": [wire]}, "actions", "{"),
        ({"actions": wire}, "actions", "list"),
        ({"actions": []}, "actions", "1 to 2000"),
        ({"actions": [wire], "mode": "atomic"}, "mode", "mode"),
    ]
    for doc, field, mention in cases:
        status, body = await client.post("/v1/actions/batch", doc)
        assert_error(status, body, 400, "invalid_batch", field=field, mention=mention)
    status, body = await client.post("/v1/actions/batch", {"actions": [1] * (api.MAX_BATCH + 1)})
    assert_error(status, body, 400, "invalid_batch", field="actions", mention="2001")
    status, body = await client.post("/v1/actions/batch", {"actions": [7, None, "x", {}]})
    assert_error(status, body, 400, "invalid_action", field="actions[0]", mention="JSON object")


async def test_request_body_that_never_arrives_is_408(client: Client, node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(node.cfg, "body_timeout_s", 0.3)
    host, port = node.api_url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(b"POST /v1/actions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 408"), head
        length = int(re.search(rb"Content-Length: (\d+)", head, re.I).group(1))  # type: ignore[union-attr]
        body = json.loads(await reader.readexactly(length))
        assert body["error"]["code"] == "request_timeout"
    finally:
        writer.close()
        await writer.wait_closed()
    status, _ = await client.get("/healthz")
    assert status == 200


async def test_rate_limit_per_client_is_429(tmp_path: Path, http: aiohttp.ClientSession, doc: dict[str, Any]) -> None:
    net = make_testnet(tmp_path / "rl", accounts=0)
    n = await start_node(net.homes[0], rate_limit_per_second=1.0, rate_limit_burst=5)
    try:
        c = Client(http, n, doc)
        statuses = []
        for _ in range(12):
            status, body = await c.get("/v1/chain")
            statuses.append(status)
            if status == 429:
                assert_error(status, body, 429, "rate_limited", mention="too many")
        assert statuses[:5] == [200] * 5, statuses
        assert statuses.count(429) >= 5, statuses  # (a token may refill while the loop runs)
        async with http.get(n.api_url + "/v1/chain") as resp:
            assert resp.status == 429 and resp.headers["Retry-After"] == "1"
        for _ in range(10):  # probes and scrapes are not rate limited
            assert (await c.get("/healthz"))[0] == 200
            assert (await c.call("GET", "/metrics"))[0] == 200
        assert metric(n, "iotex_api_rejections_total", reason="rate_limited") >= 6
        assert metric(n, "iotex_api_requests_total", method="GET", route="/v1/chain", code="429") >= 6
        await asyncio.sleep(1.1)  # the bucket refills
        assert (await c.get("/v1/chain"))[0] == 200
    finally:
        await n.stop()


async def test_node_stays_responsive_under_a_burst_of_bad_requests(client: Client, node: Node) -> None:
    h0 = node.chain.height

    async def one(i: int) -> int:
        kinds = [
            ("POST", "/v1/actions", b"{" * (i % 50)),
            ("POST", "/v1/actions/batch", json.dumps({"actions": [{"nonce": i}] * 50}).encode()),
            ("GET", f"/v1/blocks/{'9' * (i % 25)}", None),
            ("GET", f"/v1/actions/{'z' * i}", None),
        ]
        method, path, data = kinds[i % len(kinds)]
        async with client.http.request(method, node.api_url + path, data=data, headers=JSON) as resp:
            await resp.read()
            return resp.status

    statuses = await asyncio.gather(*(one(i) for i in range(400)))
    assert max(statuses) < 500, sorted(set(statuses))
    t0 = time.monotonic()
    assert (await client.get("/healthz"))[0] == 200
    assert time.monotonic() - t0 < 1.0
    await wait_height(node, h0 + 2)


async def test_amount_too_large_says_so_whole(client: Client, net: NetHomes) -> None:
    wire = transfer(net.accounts[0], net.accounts[1].address, 1)
    for amount in (str(2**256), "9" * 5000):
        status, body = await client.post("/v1/actions", dict(wire, payload={"to": net.accounts[1].address, "amount": amount}))
        assert_error(status, body, 400, "invalid_action", field="payload.amount")
        message = body["error"]["message"]
        assert f"exceeds the maximum amount 2^128-1 ({actions.MAX_AMOUNT})" in message, message
        assert f"{len(amount)} digits" in message and "decimal integer" not in message and amount[:40] not in message
    big = json.dumps(dict(wire, payload={"to": net.accounts[1].address, "amount": 0}))
    big = big.replace('"amount": 0', f'"amount": {2**256}')  # a JSON number, which orjson reads as an inexact float
    status, body = await client.post("/v1/actions", data=big.encode(), headers=JSON)
    assert_error(status, body, 400, "invalid_action", field="payload.amount", mention="too large")


# --- malformed HTTP: what aiohttp's parser refuses gets the API's answer ---------------------------


async def raw_request(node: Node, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `data` as is on a fresh connection; the status, headers and body of the answer."""
    host, port = node.api_url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(data)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)  # the node closes the connection after such an answer
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return int(lines[0].split()[1]), headers, body


MALFORMED = [
    (b"GET /v1/chain HTTP/1.1\r\nHost: x\r\nX-Probe: a\x00b\r\n\r\n", "headers"),
    (b"GET /v1/chain HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n", "headers"),
    (b"GET /v1/chain HTTP/1.1\r\nHost: x\r\n folded: y\r\n\r\n", "headers"),
    (b"GARBAGE\r\n\r\n", "request_line"),
    (b"G\x00T /v1/chain HTTP/1.1\r\n\r\n", "request_line"),
    (b"GET /v1/chain HTTP/9.9\r\nHost: x\r\n\r\n", "request_line"),
    (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", "request_line"),  # TLS on the HTTP port
    (b"GET /v1/ch\x00ain HTTP/1.1\r\nHost: x\r\n\r\n", "path"),
    (b"POST /v1/actions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", "headers"),
    (b"POST /v1/actions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "body"),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", "request_line"),
    (b"GET /v1/chain HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", "headers"),
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "request_line"),
]


async def test_malformed_http_is_a_json_400_naming_the_part_without_a_traceback(
    node: Node, doc: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for data, field in MALFORMED:
        status, headers, body = await raw_request(node, data)
        assert status == 400, (data, status, body)
        assert headers["content-type"].startswith("application/json"), (data, headers)
        err = json.loads(body)
        assert not schema_errors(doc, {"$ref": "#/components/schemas/Error"}, err), err
        assert err["error"]["code"] == "malformed_http" and err["error"]["field"] == field, (data, err)
        assert "\n" not in err["error"]["message"] and len(err["error"]["message"]) < 300, err
    # the flood: 300 requests with a NUL byte in a header, at once
    # (past api.max_connections_per_client open at once, a connection is refused with a 429 before it is read)
    flood = await asyncio.gather(*(raw_request(node, MALFORMED[0][0]) for _ in range(300)))
    codes = [s for s, _, _ in flood]
    assert set(codes) <= {400, 429} and codes.count(400) >= node.cfg.max_connections_per_client, set(codes)
    assert all(h.get("retry-after") == "1" for s, h, _ in flood if s == 429)
    total = len(MALFORMED) + codes.count(400)
    assert metric(node, "iotex_api_rejections_total", reason="malformed_http") == total
    assert metric(node, "iotex_api_requests_total", method="other", route="malformed", code="400") == total
    noisy = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not noisy, [r.getMessage()[:200] for r in noisy[:3]]
    lines = [r for r in caplog.records if r.name == "iotex_node.api"]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING, [r.getMessage() for r in lines[:5]]
    assert "\n" not in lines[0].getMessage()
    async with aiohttp.ClientSession() as s, s.get(node.api_url + "/v1/chain") as resp:
        assert resp.status == 200  # the node still serves


async def test_malformed_http_spends_the_clients_rate_limit(tmp_path: Path) -> None:
    net = make_testnet(tmp_path / "rl", accounts=0)
    n = await start_node(net.homes[0], rate_limit_per_second=0.5, rate_limit_burst=5)
    try:
        statuses = [(await raw_request(n, MALFORMED[0][0]))[0] for _ in range(12)]
        assert statuses[:5] == [400] * 5 and statuses[5:] == [429] * 7, statuses
        status, headers, body = await raw_request(n, MALFORMED[0][0])
        assert status == 429 and headers["retry-after"] == "1" and json.loads(body)["error"]["code"] == "rate_limited"
        status, _, _ = await raw_request(n, b"GET /v1/chain HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status == 429  # the same bucket as well-formed requests
        assert metric(n, "iotex_api_rejections_total", reason="malformed_http") == 5
        assert metric(n, "iotex_api_rejections_total", reason="rate_limited") == 9
    finally:
        await n.stop()


# --- the OpenAPI document and the code agree -------------------------------------------------------


def _ecma(pattern: str) -> re.Pattern[str]:
    # JSON Schema patterns are ECMA 262, whose `$` (unlike Python's) never matches before a trailing newline.
    return re.compile(pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern)


def test_openapi_amount_patterns_are_exactly_the_amounts_the_node_accepts(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    fee, positive = schemas["Fee"]["oneOf"], schemas["PositiveAmount"]["oneOf"]
    fee_re, positive_re = _ecma(fee[0]["pattern"]), _ecma(positive[0]["pattern"])

    def accepted(value: object, *, is_positive: bool) -> bool:
        try:
            actions.parse_amount(value, "f", positive=is_positive)
        except actions.InvalidAction:
            return False
        return True

    top = actions.MAX_AMOUNT
    numbers = [0, 1, 9, 10, top, top - 1, top + 1, 10**38 - 1, 10**38, 10**39 - 1, 10**39, 2**256]
    numbers += [top - 10**k for k in range(38)] + [top + 10**k for k in range(38)]
    rnd = random.Random(7)
    numbers += [rnd.randrange(2**129) for _ in range(3000)] + [rnd.randrange(10**k) for k in range(1, 40) for _ in range(20)]
    for n in numbers:
        text = str(n)
        assert bool(fee_re.search(text)) == accepted(text, is_positive=False), text
        assert bool(positive_re.search(text)) == accepted(text, is_positive=True), text
    for text in ("", "00", "01", "-1", "+1", "1.0", "1e3", " 1", "1\n", "\u0661"):
        assert not fee_re.search(text) and not accepted(text, is_positive=False), repr(text)
    # JSON integers: 0 (1 for a positive amount) to 2^64-1; larger ones reach the node as inexact floats
    assert (fee[1]["minimum"], fee[1]["maximum"], positive[1]["minimum"]) == (0, 2**64 - 1, 1)
    assert accepted(2**64 - 1, is_positive=True) and not accepted(0, is_positive=True)
    assert not accepted(float(2**64), is_positive=False)


def test_openapi_names_and_actions_follow_the_node_rules(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    name_re = _ecma(schemas["CandidateName"]["pattern"])
    rnd = random.Random(3)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789_A"
    names = ["i", "io", "io1", "io1a", "io2", "ioa", "a" * 12, "a" * 13, ""]
    names += ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 14))) for _ in range(5000)]
    names += ["io" + "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 11))) for _ in range(2000)]
    for name in names:
        assert bool(name_re.search(name)) == actions.valid_candidate_name(name), name
    # one schema per action type, with exactly the payload fields the node requires
    action = schemas["Action"]
    assert action["discriminator"]["propertyName"] == "type"
    assert set(action["discriminator"]["mapping"]) == set(actions.PAYLOADS)
    for type_, ref in action["discriminator"]["mapping"].items():
        alt = _resolve(doc, {"$ref": ref})
        assert {"$ref": ref} in action["oneOf"]
        assert alt["properties"]["type"]["enum"] == [type_]
        assert set(alt["required"]) == set(alt["properties"]) == actions._TOP_FIELDS
        payload = _resolve(doc, alt["properties"]["payload"])
        assert set(payload["required"]) == set(actions.PAYLOADS[type_]), type_
        assert set(payload["properties"]) == set(actions.PAYLOADS[type_]) | set(actions.OPTIONAL_PAYLOADS.get(type_, {}))
    assert schemas["Address"]["format"] == "iotex-address"  # the checksum, which a pattern cannot say


async def test_a_bad_checksum_address_is_a_documented_400(client: Client, net: NetHomes) -> None:
    good = net.accounts[0].address
    bad = good[:-1] + ("q" if good[-1] != "q" else "p")
    assert re.fullmatch(client.doc["components"]["schemas"]["Address"]["pattern"], bad)
    for path, template, field in ((f"/v1/accounts/{bad}", "/v1/accounts/{address}", "address"),
                                  (f"/v1/rewards/{bad}", "/v1/rewards/{address}", "address"),
                                  (f"/v1/buckets?owner={bad}", "/v1/buckets", "owner")):  # fmt: skip
        status, body = await client.get(path, template)  # check_response: 400 is listed for the operation
        assert_error(status, body, 400, "invalid_address", field=field, mention="io1")


async def test_batch_refuses_a_malformed_action_before_admitting_any(client: Client, net: NetHomes, node: Node) -> None:
    a, b = net.accounts[0], net.accounts[1]
    good = transfer(a, b.address, 1)
    cases: list[tuple[Any, str]] = [
        (dict(transfer(a, b.address, 2), chain_id=-1), "actions[1].chain_id"),
        (dict(transfer(a, b.address, 2), payload={"amount": "1"}), "actions[1].payload.to"),
        (dict(transfer(a, b.address, 2), sender=b.address[:-1] + ("q" if b.address[-1] != "q" else "p")), "actions[1].sender"),
        (dict(transfer(a, b.address, 2), fee=str(2**256)), "actions[1].fee"),
    ]
    for bad, field in cases:
        status, body = await client.post("/v1/actions/batch", {"actions": [good, bad]})
        assert_error(status, body, 400, "invalid_action", field=field, mention=field)
    status, _ = await client.get(f"/v1/actions/{actions.parse(good).hash_hex}", "/v1/actions/{hash}")
    assert status == 404  # the well-formed action before it was not admitted either
    # the single endpoint refuses the same things the same way
    status, body = await client.post("/v1/actions", dict(good, chain_id=-1))
    assert_error(status, body, 400, "invalid_action", field="chain_id")
    status, body = await client.post("/v1/actions", dict(good, payload={"amount": "1"}))
    assert_error(status, body, 400, "invalid_action", field="payload.to", mention="missing")


async def test_batch_route_answers_405_allowing_only_post(client: Client) -> None:
    for method in ("GET", "OPTIONS", "PUT", "DELETE"):
        async with client.http.request(method, client.node.api_url + "/v1/actions/batch") as resp:
            assert resp.status == 405 and resp.headers["Allow"] == "POST", (method, resp.status, resp.headers.get("Allow"))
            assert (await resp.json())["error"] == {
                "code": "method_not_allowed",
                "message": f"{method} is not allowed on /v1/actions/batch (allowed: POST)",
                "field": "method",
            }


async def test_every_client_error_names_the_field(client: Client, net: NetHomes) -> None:
    wire = transfer(net.accounts[0], net.accounts[1].address, 1)
    post = client.node.api_url + "/v1/actions"
    requests: list[tuple[str, str, dict[str, Any], str]] = [
        ("POST", post, {"data": b"{", "headers": JSON}, "body"),
        ("POST", post, {"data": b"", "headers": JSON}, "body"),
        ("POST", post, {"data": json.dumps(wire).encode(), "headers": {"Content-Type": "text/plain"}}, "Content-Type"),
        ("POST", post, {"data": b"{}", "headers": {**JSON, "Content-Encoding": "br"}}, "Content-Encoding"),
        ("POST", post, {"data": b"\x1f\x8b\x00", "headers": {**JSON, "Content-Encoding": "gzip"}}, "body"),
        ("POST", post, {"data": b"[1]", "headers": JSON}, "body"),
        ("GET", client.node.api_url + "/v2/nothing", {}, "path"),
        ("DELETE", client.node.api_url + "/v1/chain", {}, "method"),
        ("GET", client.node.api_url + "/v1/actions/" + "ab" * 32, {}, "hash"),
        ("GET", client.node.api_url + "/v1/blocks/999999", {}, "ref"),
        ("GET", client.node.api_url + "/v1/blocks/" + "ab" * 32, {}, "ref"),
        ("GET", client.node.api_url + "/v1/buckets/99999", {}, "id"),
        ("GET", client.node.api_url + "/v1/delegates?epoch=0", {}, "epoch"),
        ("GET", client.node.api_url + "/v1/chain?x=1", {}, "x"),
    ]
    for method, url, kw, field in requests:
        async with client.http.request(method, url, **kw) as resp:
            body = await resp.json()
        assert 400 <= resp.status < 500 and body["error"].get("field") == field, (method, url, resp.status, body)
