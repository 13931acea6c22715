"""HTTP JSON API under /v1, plus /healthz, /readyz, /metrics and the OpenAPI document.

Every client mistake is a 4xx with {"error": {"code", "message", "field"?}}; nothing a client sends may
produce a 5xx. Each client address has a token bucket (rate) and every request a body size cap.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from iotex_node import execution as ex
from iotex_node.crypto.keys import valid_address
from iotex_node.errors import InvalidInput, Rejected

if TYPE_CHECKING:
    from iotex_node.node import Node

MAX_BATCH = 2000
_REJECT_STATUS = {
    "duplicate": 409,
    "nonce_too_low": 409,
    "nonce_gap": 409,
    "insufficient_balance": 422,
    "fee_too_low": 422,
    "wrong_chain_id": 422,
    "mempool_full": 429,
    "sender_quota_exceeded": 429,
}
NODE_KEY: web.AppKey[Node] = web.AppKey("node")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def error(status: int, code: str, message: str, field: str | None = None) -> web.Response:
    err: dict[str, Any] = {"code": code, "message": message}
    if field:
        err["field"] = field
    return _json({"error": err}, status)


class RateLimiter:
    """Token bucket per client address."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, client: str, cost: float = 1.0) -> bool:
        now = time.monotonic()
        tokens, last = self._buckets.get(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens < cost:
            self._buckets[client] = (tokens, now)
            return False
        self._buckets[client] = (tokens - cost, now)
        if len(self._buckets) > 10_000:  # forget idle clients rather than grow without bound
            cutoff = now - 60
            self._buckets = {k: v for k, v in self._buckets.items() if v[1] > cutoff}
        return True


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _route_label(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    node = request.app[NODE_KEY]
    limiter: RateLimiter = request.app["limiter"]
    status = 500
    try:
        if request.path.startswith("/v1") and not limiter.allow(request.remote or "?"):
            resp: web.StreamResponse = error(429, "rate_limited", "too many requests from this client; slow down")
        else:
            resp = await handler(request)
        status = resp.status
        return resp
    except web.HTTPRequestEntityTooLarge:
        status = 413
        return error(413, "body_too_large", f"request body exceeds {request.app['max_body']} bytes")
    except web.HTTPException as exc:
        status = exc.status
        if exc.status == 404:
            return error(404, "not_found", f"no such resource: {request.method} {request.path[:200]}")
        if exc.status == 405:
            return error(405, "method_not_allowed", f"{request.method} is not allowed on {request.path[:200]}")
        return error(exc.status, "http_error", exc.reason)
    finally:
        node.metrics.api_requests.labels(request.method, _route_label(request), str(status)).inc()


async def _read_json(request: web.Request) -> Any:
    if request.content_type not in ("application/json", "application/octet-stream", "text/plain", ""):
        raise InvalidInput(f"content type {request.content_type} is not application/json", code="bad_content_type")
    body = await request.read()
    if not body:
        raise InvalidInput("request body is empty", code="malformed_json")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"body is not valid JSON: {exc.msg} at position {exc.pos}", code="malformed_json") from None


def _submit_one(node: Node, wire: object) -> tuple[int, dict[str, Any]]:
    try:
        action = node.submit(wire)
    except Rejected as exc:
        node.metrics.api_rejections.labels(exc.code).inc()
        return _REJECT_STATUS.get(exc.code, 409), {"error": {"code": exc.code, "message": exc.reason}}
    except InvalidInput as exc:
        node.metrics.api_rejections.labels(exc.code).inc()
        err: dict[str, Any] = {"code": exc.code if exc.code != "invalid" else "invalid_action", "message": str(exc)}
        if exc.field:
            err["field"] = exc.field
        return 400, {"error": err}
    return 202, {"hash": action.hash_hex, "status": "pending"}


async def post_action(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    try:
        wire = await _read_json(request)
    except InvalidInput as exc:
        node.metrics.api_rejections.labels(exc.code).inc()
        return error(400, exc.code, str(exc))
    status, body = _submit_one(node, wire)
    return _json(body, status)


async def post_actions_batch(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    try:
        doc = await _read_json(request)
        if not isinstance(doc, dict) or set(doc) != {"actions"} or not isinstance(doc["actions"], list):
            raise InvalidInput('body must be {"actions": [...]}', "actions")
        if not doc["actions"] or len(doc["actions"]) > MAX_BATCH:
            raise InvalidInput(f"must hold 1 to {MAX_BATCH} actions", "actions")
    except InvalidInput as exc:
        return error(400, exc.code if exc.code != "invalid" else "invalid_batch", str(exc), exc.field)
    results = []
    accepted = 0
    for wire in doc["actions"]:
        status, body = _submit_one(node, wire)
        accepted += status == 202
        results.append(body)
    return _json({"accepted": accepted, "results": results}, 200)


def _hash_param(request: web.Request, name: str = "hash") -> bytes | web.Response:
    text = request.match_info[name]
    if len(text) != 64:
        return error(400, "invalid_hash", f"{name} must be 64 hex characters", name)
    try:
        return bytes.fromhex(text)
    except ValueError:
        return error(400, "invalid_hash", f"{name} is not hex", name)


async def get_action(request: web.Request) -> web.Response:
    h = _hash_param(request)
    if isinstance(h, web.Response):
        return h
    found = request.app[NODE_KEY].action_status(h)
    if found is None:
        return error(404, "not_found", f"action {h.hex()} is not known to this node")
    return _json(found)


async def get_account(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    addr = request.match_info["address"]
    if not valid_address(addr):
        return error(400, "invalid_address", "address is not a valid io1... address", "address")
    bal, nonce = ex.account(node.chain.state, addr)
    return _json(
        {
            "address": addr,
            "balance": str(bal),
            "nonce": nonce,
            "pending_nonce": node.chain.mempool.pending_nonce(addr, nonce),
            "unclaimed_rewards": str(ex.unclaimed(node.chain.state, addr)),
            "height": node.chain.height,
        }
    )


def _block_json(node: Node, height: int) -> web.Response:
    data = node.store.block_data(height)
    if data is None:
        return error(404, "not_found", f"block {height} does not exist (tip is {node.chain.height})")
    b = orjson.loads(data)
    b["hash"] = _block_hash(b)
    return _json(b)


def _block_hash(b: dict[str, Any]) -> str:
    from iotex_node.block import Header

    return Header.from_wire(b["header"]).hash.hex()


async def get_block(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    ref = request.match_info["ref"]
    if ref.isdigit() and len(ref) < 19:
        height = int(ref)
    elif ref == "latest":
        height = node.chain.height
    elif len(ref) == 64:
        try:
            found = node.store.block_height_by_hash(bytes.fromhex(ref))
        except ValueError:
            return error(400, "invalid_block_ref", "block reference must be a height, 'latest' or a 64-hex hash", "ref")
        if found is None:
            return error(404, "not_found", f"no block with hash {ref}")
        height = found
    else:
        return error(400, "invalid_block_ref", "block reference must be a height, 'latest' or a 64-hex hash", "ref")
    if height == 0:
        return _json({"height": 0, "hash": node.genesis.hash.hex(), "genesis": node.genesis.to_json()})
    return _block_json(node, height)


async def get_chain(request: web.Request) -> web.Response:
    s = request.app[NODE_KEY].status()
    keys = ("chain_id", "height", "finalized_height", "finalized_hash", "state_root", "epoch", "active_delegates",
            "version", "protocol", "supported_protocols", "consensus", "peers", "synced")  # fmt: skip
    out = {k: s[k] for k in keys}
    node = request.app[NODE_KEY]
    out["node_version"] = out.pop("version")
    out["protocol_version"] = out.pop("protocol")
    out["block_interval_ms"] = node.genesis.block_interval_ms
    out["epoch_length"] = node.genesis.epoch_length
    out["genesis_hash"] = node.genesis.hash.hex()
    return _json(out)


def _epoch_param(request: web.Request, node: Node) -> int | web.Response:
    raw = request.query.get("epoch")
    current = node.genesis.epoch_of(node.chain.height + 1)
    if raw is None:
        return current
    if not raw.isdigit() or len(raw) > 12 or int(raw) < 1:
        return error(400, "invalid_epoch", "epoch must be a positive integer", "epoch")
    return int(raw)


async def get_delegates(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    epoch = _epoch_param(request, node)
    if isinstance(epoch, web.Response):
        return epoch
    st = node.chain.state
    active = ex.delegates_of_epoch(st, epoch)
    cands = [st.get(k) for k in st.keys_with_prefix("c/")]
    out = []
    for c in sorted(cands, key=lambda c: (-int(c["votes"]), c["owner"])):
        prod = st.get(f"p/{epoch}/{c['operator']}") or [0, 0, 0]
        out.append(
            {
                "name": c["name"],
                "owner": c["owner"],
                "operator": c["operator"],
                "votes": c["votes"],
                "active": c["operator"] in active,
                "unclaimed_rewards": str(ex.unclaimed(st, c["owner"])),
                "productivity": {"expected": prod[0], "produced": prod[1], "missed": prod[2]},
            }
        )
    return _json({"epoch": epoch, "active": active, "candidates": out})


async def get_buckets(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    owner = request.query.get("owner")
    candidate = request.query.get("candidate")
    for name, v in (("owner", owner), ("candidate", candidate)):
        if v is not None and not valid_address(v):
            return error(400, "invalid_address", f"{name} is not a valid io1... address", name)
    st = node.chain.state
    out = []
    for k in st.keys_with_prefix("b/"):
        b = st.get(k)
        if (owner and b["owner"] != owner) or (candidate and b["candidate"] != candidate):
            continue
        out.append({"id": int(k[2:]), **b, "votes": str(ex.weighted_votes(node.genesis, int(b["amount"]), b["days"]))})
    out.sort(key=lambda b: b["id"])
    return _json({"buckets": out[:1000], "truncated": len(out) > 1000})


async def get_bucket(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        return error(400, "invalid_bucket", "bucket id must be a non-negative integer", "id")
    b = node.chain.state.get(f"b/{int(raw)}")
    if b is None:
        return error(404, "not_found", f"bucket {raw} does not exist")
    return _json({"id": int(raw), **b, "votes": str(ex.weighted_votes(node.genesis, int(b["amount"]), b["days"]))})


async def get_rewards(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    addr = request.match_info["address"]
    if not valid_address(addr):
        return error(400, "invalid_address", "address is not a valid io1... address", "address")
    return _json({"address": addr, "unclaimed": str(ex.unclaimed(node.chain.state, addr)), "height": node.chain.height})


async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    s = node.status()
    problems = []
    if not s["synced"]:
        problems.append(f"behind peers: at {s['height']}, best peer at {node.best_peer_height()}")
    if s["is_delegate"] and s["peers"] + 1 < len(s["active_delegates"]) * 2 // 3 + 1:
        problems.append(f"connected to {s['peers']} peers: too few to reach a quorum")
    if node.fatal:
        problems.append(node.fatal)
    if problems:
        return _json({"status": "not ready", "problems": problems}, 503)
    return _json({"status": "ready", "height": s["height"], "participating": s["is_delegate"]})


async def metrics(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    node.metrics.mempool_size.set(len(node.chain.mempool))
    node.metrics.peers.set(len(node.net.peers))
    resp = web.Response(body=generate_latest(node.metrics.registry))
    resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return resp


_OPENAPI: bytes | None = None


async def openapi(request: web.Request) -> web.Response:
    global _OPENAPI
    if _OPENAPI is None:
        _OPENAPI = resources.files("iotex_node").joinpath("openapi.json").read_bytes()
        json.loads(_OPENAPI)  # shipped broken would be a packaging bug; fail loudly in tests
    return web.Response(body=_OPENAPI, content_type="application/json")


def make_app(node: Node) -> web.Application:
    app = web.Application(middlewares=[_guard], client_max_size=node.cfg.max_body_bytes)
    app[NODE_KEY] = node
    app["limiter"] = RateLimiter(node.cfg.rate_limit_per_second, node.cfg.rate_limit_burst)
    app["max_body"] = node.cfg.max_body_bytes
    r = app.router
    r.add_post("/v1/actions", post_action)
    r.add_post("/v1/actions/batch", post_actions_batch)
    r.add_get("/v1/actions/{hash}", get_action)
    r.add_get("/v1/accounts/{address}", get_account)
    r.add_get("/v1/blocks/{ref}", get_block)
    r.add_get("/v1/chain", get_chain)
    r.add_get("/v1/delegates", get_delegates)
    r.add_get("/v1/buckets", get_buckets)
    r.add_get("/v1/buckets/{id}", get_bucket)
    r.add_get("/v1/rewards/{address}", get_rewards)
    r.add_get("/v1/openapi.json", openapi)
    r.add_get("/healthz", healthz)
    r.add_get("/readyz", readyz)
    r.add_get("/metrics", metrics)
    return app


async def start(node: Node, host: str, port: int) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(make_app(node), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=512)
    await site.start()
    sock = site._server.sockets[0]  # type: ignore[union-attr]
    bound = sock.getsockname()
    return runner, f"http://{bound[0]}:{bound[1]}"
