"""HTTP JSON API under /v1, plus /healthz, /readyz, /metrics and the OpenAPI document.

Every client mistake, down to a request line or header that aiohttp's HTTP parser refuses, is a 4xx with
{"error": {"code", "message", "field"?}}, `field` naming the part of the request at fault; nothing a client
sends may produce a 5xx (a 5xx is a bug of the node, answered in the same JSON shape and logged). Each client
address has a token bucket (rate; a batch costs a token per `batch_actions_per_token` actions), every request a
body size cap and a body read deadline (api.body_timeout_s), every connection a deadline for its request line
and headers (api.header_timeout_s, idle keep-alive included), and the open connections a cap, overall
(api.max_connections: 503) and per client address (api.max_connections_per_client: 429). Every 429 and 503
carries Retry-After.
The OpenAPI document served at /v1/openapi.json (node/iotex_node/openapi.json) describes every route.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import sqlite3
import time
import zlib
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import http_exceptions, web, web_protocol
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from iotex_node import actions
from iotex_node import execution as ex
from iotex_node.crypto.keys import valid_address
from iotex_node.errors import InvalidInput, Rejected

if TYPE_CHECKING:
    from iotex_node.node import Node

log = logging.getLogger("iotex_node.api")

MAX_BATCH = 2000
# GET /v1/blocks answers at most MAX_RANGE heights, and stops early once it has read RANGE_READ_BUDGET bytes of
# stored blocks: a full block (thousands of actions) is about a megabyte, and parsing a thousand of them
# would stall the event loop that runs consensus. The answer's `to` says where it stopped.
MAX_RANGE = 1000
RANGE_READ_BUDGET = 4 * 1024 * 1024
# On SIGTERM, in-flight requests get this long; idle keep-alive connections (a Prometheus scraping
# /metrics) must not hold a stopping node for aiohttp's default 60 s.
SHUTDOWN_GRACE_S = 1.0
# A batch costs one rate-limit token per this many actions (at least one): each action is a signature to check.
BATCH_ACTIONS_PER_TOKEN = 10
# A batch's actions are checked in slices of this many, the event loop served between them; after this many
# bad signatures in one batch the rest is not checked (answered `not_checked`): a client that signs honestly
# never sends one, and each costs the node a public-key recovery.
BATCH_YIELD_EVERY = 100
BATCH_MAX_BAD_SIGNATURES = 16
RETRY_AFTER = {"Retry-After": "1"}
_REJECT_STATUS = {
    "duplicate": 409,
    "nonce_too_low": 409,
    "nonce_gap": 409,
    "replacement_underpriced": 409,
    "insufficient_balance": 422,
    "fee_too_low": 422,
    "wrong_chain_id": 422,
    "mempool_full": 429,
    "sender_quota_exceeded": 429,
    "writes_paused": 503,
}
# The action field a mempool refusal is about, so that a client can point at it.
_REJECT_FIELD = {
    "nonce_too_low": "nonce",
    "nonce_gap": "nonce",
    "insufficient_balance": "fee",
    "fee_too_low": "fee",
    "replacement_underpriced": "fee",
    "wrong_chain_id": "chain_id",
    "sender_quota_exceeded": "sender",
}
# Query parameters each /v1 route accepts; any other is refused (a typo would otherwise be ignored silently).
_QUERY_PARAMS: dict[str, frozenset[str]] = {
    "/v1/delegates": frozenset({"epoch"}),
    "/v1/buckets": frozenset({"owner", "candidate"}),
    "/v1/blocks": frozenset({"from", "to"}),
    "/v1/epochs/{epoch}/books": frozenset({"candidate"}),
    "/v1/accounts/{address}/actions": frozenset({"start", "limit"}),
}
_NO_PARAMS: frozenset[str] = frozenset()
# ASCII only: str.isdigit() accepts characters such as "²" that int() refuses.
_HEIGHT_RE = re.compile(r"[0-9]{1,18}")
_EPOCH_RE = re.compile(r"[0-9]{1,12}")
_HASH_RE = re.compile(r"[0-9a-fA-F]{64}")
NODE_KEY: web.AppKey[Node] = web.AppKey("node")
LIMITER_KEY: web.AppKey[RateLimiter] = web.AppKey("limiter")
MAX_BODY_KEY: web.AppKey[int] = web.AppKey("max_body")
MALFORMED_LOG_KEY: web.AppKey[LogThrottle] = web.AppKey("malformed_log")
CONNS_KEY: web.AppKey[ConnectionLimits] = web.AppKey("connections")
# A flood of malformed requests gets at most one log line per this many seconds (the metric counts them all).
MALFORMED_LOG_INTERVAL_S = 10.0


class ApiError(Exception):
    """A refused request: becomes {"error": {...}} with `status`."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None, *, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        # The request body was not (fully) read: answer with Connection: close, for the connection cannot be reused.
        self.close = close


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json", headers=headers)


def _error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if field:
        err["field"] = field
    return {"error": err}


def error(status: int, code: str, message: str, field: str | None = None, headers: dict[str, str] | None = None) -> web.Response:
    return _json(_error_body(code, message, field), status, headers)


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


class ConnectionLimits:
    """Open connections, overall and per client address: what a new one is refused for, if anything."""

    def __init__(self, total: int, per_client: int) -> None:
        self.total = total
        self.per_client = per_client
        self.open = 0
        self._by_client: dict[str, int] = {}

    def admit(self, client: str) -> str | None:
        """None (counted: release it when it closes), or why not: "too_many_connections" (overall) or
        "client_connections" (this address)."""
        if self._by_client.get(client, 0) >= self.per_client:
            return "client_connections"
        if self.open >= self.total:
            return "too_many_connections"
        self.open += 1
        self._by_client[client] = self._by_client.get(client, 0) + 1
        return None

    def release(self, client: str) -> None:
        self.open -= 1
        left = self._by_client.get(client, 1) - 1
        if left > 0:
            self._by_client[client] = left
        else:
            self._by_client.pop(client, None)


# Refused connections are answered at once, before their request is read, and closed when the client closes
# or after this long, whichever comes first.
REFUSED_LINGER_S = 0.5
_REFUSED = {
    "client_connections": (429, "Too Many Requests", "too many open connections from this client; close some first"),
    "too_many_connections": (503, "Service Unavailable", "the node has too many open API connections; retry shortly"),
}


def refused_response(reason: str) -> bytes:
    """The whole HTTP answer to a connection refused for `reason` (ConnectionLimits.admit)."""
    status, phrase, message = _REFUSED[reason]
    body = orjson.dumps(_error_body(reason, message))
    head = (
        f"HTTP/1.1 {status} {phrase}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Retry-After: 1\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


class LogThrottle:
    """Lets one log line through per `interval` seconds and counts the ones it held back."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._next_at = 0.0
        self._held = 0

    def take(self) -> int | None:
        """None: stay quiet; else log now, mentioning this many lines held back since the last one."""
        now = time.monotonic()
        if now < self._next_at:
            self._held += 1
            return None
        held, self._held = self._held, 0
        self._next_at = now + self.interval
        return held


def _parser_error_field(exc: BaseException | None) -> str:
    """The part of a request that aiohttp's HTTP parser could not read."""
    if isinstance(exc, http_exceptions.BadStatusLine):  # BadHttpMethod included
        return "request_line"
    if isinstance(exc, http_exceptions.InvalidURLError):
        return "path"
    text = str(getattr(exc, "message", "")).lower()
    if isinstance(exc, http_exceptions.PayloadEncodingError) or "chunk" in text:
        return "body"
    if isinstance(exc, http_exceptions.LineTooLong):
        # The line is the request target (a path) when the request line was too long, else a header's.
        line = exc.args[0] if exc.args else ""
        start = line[:1] if isinstance(line, (bytes, bytearray)) else str(line).encode()[:1]
        return "request_line" if start == b"/" else "headers"
    headerish = ("header", "content-length", "transfer-encoding")
    if isinstance(exc, http_exceptions.InvalidHeader) or any(w in text for w in headerish):
        return "headers"
    if any(w in text for w in ("status line", "method", "version", "pri/upgrade")):
        return "request_line"
    return "request"


def _parser_error_reason(exc: BaseException | None, message: str | None) -> str:
    text = str(getattr(exc, "message", "") or message or "unreadable")
    if "PRI/Upgrade" in text:
        return "HTTP/2 is not served here: use HTTP/1.1"
    return _one_line(text)


def _one_line(text: str, limit: int = 200) -> str:
    # aiohttp's parser messages span lines, with a caret line pointing at the bad byte: keep the words only.
    lines = (ln.strip() for ln in text.splitlines())
    flat = " ".join(ln for ln in lines if ln and set(ln) != {"^"})
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class _ApiRequestHandler(web_protocol.RequestHandler):
    """aiohttp's HTTP/1 protocol handler, answering what its parser refuses in this API's error shape.

    A request whose request line or headers cannot be parsed (a NUL byte in a header, a bad method token,
    an over-long line) never reaches the middlewares: aiohttp answers it from `handle_error`, in plain
    text, after logging a traceback at ERROR. Here it gets a JSON 400 naming the broken part, costs the
    client a rate-limit token like any request (429 once they are spent), is counted in the API metrics,
    and is logged as one line at most every MALFORMED_LOG_INTERVAL_S.
    """

    api_app: web.Application | None = None
    _client: str | None = None  # the address counted in ConnectionLimits while this connection is open
    _refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        app = self.api_app
        if app is not None:
            peer = transport.get_extra_info("peername")
            client = str(peer[0]) if peer else "?"
            why = app[CONNS_KEY].admit(client)
            if why is not None:
                self._refused = True
                app[NODE_KEY].metrics.api_rejections.labels(why).inc()
                app[NODE_KEY].metrics.api_requests.labels("other", "refused", str(_REFUSED[why][0])).inc()
                assert isinstance(transport, asyncio.Transport)
                # Half-close after the answer, and keep reading (and dropping) what the client sends: closing now
                # would reset a connection whose request is still arriving, and the reset can destroy the answer.
                # The transport closes itself when the client does; one that does not is cut after the linger.
                transport.write(refused_response(why))
                if transport.can_write_eof():
                    transport.write_eof()
                asyncio.get_running_loop().call_later(REFUSED_LINGER_S, transport.abort)
                return
            self._client = client
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self._refused:  # a refused connection's request is not read
            super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._refused:
            return
        if self._client is not None and self.api_app is not None:
            self.api_app[CONNS_KEY].release(self._client)
            self._client = None
        super().connection_lost(exc)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        app = self.api_app
        if app is None or request.writer.output_size > 0:
            return super().handle_error(request, status, exc, message)
        node = app[NODE_KEY]
        remote = request.remote or "?"
        if status >= 500:
            # Not a client mistake: the middleware answers every handler failure, so this is an aiohttp-level bug.
            log.error("API bug: a request from %s failed outside the handlers", remote, exc_info=exc)
            resp = error(500, "internal", "the node failed to handle this request; this is a bug, see the node log")
        elif not app[LIMITER_KEY].allow(remote):
            node.metrics.api_rejections.labels("rate_limited").inc()
            resp = error(429, "rate_limited", "too many requests from this client; slow down", headers=RETRY_AFTER)
        else:
            node.metrics.api_rejections.labels("malformed_http").inc()
            field = _parser_error_field(exc)
            why = _parser_error_reason(exc, message)
            resp = error(status, "malformed_http", f"the HTTP request cannot be parsed ({field}): {why}", field)
            held = app[MALFORMED_LOG_KEY].take()
            if held is not None:
                more = f" (and {held} more since the last such line)" if held else ""
                log.warning("malformed HTTP request from %s: %s%s", remote, why, more)
        node.metrics.api_requests.labels("other", "malformed", str(resp.status)).inc()
        resp.force_close()
        return resp


class _ApiServer(web.Server):
    """aiohttp's low-level server, making connections with _ApiRequestHandler."""

    api_app: web.Application

    def __call__(self) -> web_protocol.RequestHandler:
        handler = _ApiRequestHandler(self, loop=self._loop, **self._kwargs)
        handler.api_app = self.api_app
        return handler


class _ApiRunner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        # aiohttp has no public hook for the protocol handler (aio-libs/aiohttp#3287): keep everything
        # AppRunner sets up and swap in the subclass that makes connections (Server has no __slots__).
        server = await super()._make_server()
        server.__class__ = _ApiServer
        assert isinstance(server, _ApiServer)
        server.api_app = self.app
        return server


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"})


def _route_label(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


def _method_label(request: web.Request) -> str:
    # A client may send any token as its method: never let it mint new metric series.
    return request.method if request.method in _METHODS else "other"


def _check_query(request: web.Request) -> None:
    resource = request.match_info.route.resource
    if resource is None or not resource.canonical.startswith("/v1/"):
        return
    allowed = _QUERY_PARAMS.get(resource.canonical, _NO_PARAMS)
    for name in request.query:
        if name not in allowed:
            hint = f"; this route accepts {', '.join(sorted(allowed))}" if allowed else "; this route takes none"
            raise ApiError(400, "unknown_parameter", f"unknown query parameter {name[:64]!r}{hint}", name[:64])
        if len(request.query.getall(name)) > 1:
            raise ApiError(400, "duplicate_parameter", f"query parameter {name[:64]!r} is given more than once", name[:64])


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    node = request.app[NODE_KEY]
    limiter = request.app[LIMITER_KEY]
    status = 500
    try:
        try:
            if request.path.startswith("/v1") and not limiter.allow(request.remote or "?"):
                node.metrics.api_rejections.labels("rate_limited").inc()
                raise ApiError(429, "rate_limited", "too many requests from this client; slow down")
            _check_query(request)
            resp = await handler(request)
        except ApiError as exc:
            headers = RETRY_AFTER if exc.status in (429, 503) else None
            resp = error(exc.status, exc.code, exc.message, exc.field, headers)
            if exc.close:
                resp.force_close()
        except web.HTTPRequestEntityTooLarge:
            node.metrics.api_rejections.labels("body_too_large").inc()
            resp = error(413, "body_too_large", f"request body exceeds {request.app[MAX_BODY_KEY]} bytes", "body")
            resp.force_close()  # rather than read (and discard) the rest of a body we refused
        except web.HTTPException as exc:
            if exc.status == 404:
                resp = error(404, "not_found", f"no such resource: {request.method} {request.path[:200]}", "path")
            elif exc.status == 405:
                allow = exc.headers.get("Allow", "")
                resp = error(
                    405,
                    "method_not_allowed",
                    f"{request.method[:20]} is not allowed on {request.path[:200]} (allowed: {allow or 'none'})",
                    "method",
                    headers={"Allow": allow} if allow else None,
                )
            else:
                resp = error(exc.status, "http_error", exc.reason, headers=RETRY_AFTER if exc.status in (429, 503) else None)
        except asyncio.CancelledError:
            status = 499  # the client went away (nginx's code): nothing to answer, and not the node's fault
            raise
        except Exception:
            log.exception("API bug: %s %s failed", request.method, request.path[:200])
            resp = error(500, "internal", "the node failed to handle this request; this is a bug, see the node log")
        status = resp.status
        return resp
    finally:
        node.metrics.api_requests.labels(_method_label(request), _route_label(request), str(status)).inc()


_ENCODINGS = {"": "identity", "identity": "identity", "gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate"}


def _decode_body(request: web.Request, body: bytes) -> bytes:
    """Undo a gzip or deflate Content-Encoding, never inflating past the body size limit.

    aiohttp's own decompression is switched off (see start()): it hangs on some truncated deflate bodies
    and answers others outside this API's error format.
    """
    raw = request.headers.get("Content-Encoding", "").strip().lower()
    encoding = _ENCODINGS.get(raw)
    if encoding is None:
        raise ApiError(
            415,
            "bad_content_encoding",
            f"content encoding {raw[:60]!r} is not supported: use gzip, deflate or none",
            "Content-Encoding",
            close=True,
        )
    if encoding == "identity":
        return body
    limit = request.app[MAX_BODY_KEY]
    d = zlib.decompressobj(wbits=47)  # 32 + 15: a zlib or a gzip header, detected
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as exc:
        raise ApiError(400, "malformed_body", f"the body is not valid {encoding} data: {exc}", "body") from None
    if len(out) > limit or d.unconsumed_tail:
        raise ApiError(413, "body_too_large", f"request body exceeds {limit} bytes once decompressed", "body")
    if not d.eof or d.unused_data:
        raise ApiError(400, "malformed_body", f"the body is not one complete {encoding} stream", "body")
    return out


async def _read_json(request: web.Request) -> Any:
    if request.content_type != "application/json" or (request.charset or "utf-8").lower() not in ("utf-8", "utf8"):
        raise ApiError(
            415,
            "bad_content_type",
            f"content type {request.headers.get('Content-Type', '(none)')[:100]!r} is not supported: "
            "send the body as application/json (UTF-8)",
            "Content-Type",
        )
    limit = request.app[NODE_KEY].cfg.body_timeout_s
    try:
        async with asyncio.timeout(limit):
            body = await request.read()
    except TimeoutError:
        raise ApiError(
            408, "request_timeout", f"the request body did not arrive within {limit:g} s", "body", close=True
        ) from None
    except web.RequestPayloadError as exc:
        cause = exc.__cause__ or exc
        why = str(getattr(cause, "message", cause)).strip()[:200]
        raise ApiError(400, "malformed_body", f"the request body cannot be read: {why}", "body", close=True) from None
    except ConnectionError:
        # The client hung up mid-body: nobody will read this answer, but it keeps the log free of tracebacks.
        raise ApiError(
            400, "incomplete_body", "the connection closed before the request body was complete", "body", close=True
        ) from None
    body = _decode_body(request, body)
    if not body:
        raise ApiError(400, "malformed_json", "request body is empty", "body")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "malformed_json", f"body is not valid JSON: {exc.msg} at position {exc.pos}", "body") from None


def _submit_one(node: Node, wire: object) -> tuple[int, dict[str, Any]]:
    try:
        action = node.submit(wire)
    except Rejected as exc:
        node.metrics.api_rejections.labels(exc.code).inc()
        return _REJECT_STATUS.get(exc.code, 409), _error_body(exc.code, exc.reason, _REJECT_FIELD.get(exc.code))
    except InvalidInput as exc:
        code = exc.code if exc.code != "invalid" else "invalid_action"
        node.metrics.api_rejections.labels(code).inc()
        return 400, _error_body(code, str(exc), exc.field or "body")
    return 202, {"hash": action.hash_hex, "status": "pending"}


async def _read_counted(request: web.Request) -> Any:
    """The JSON body of a submission; a refused body counts as a rejection."""
    try:
        return await _read_json(request)
    except ApiError as exc:
        request.app[NODE_KEY].metrics.api_rejections.labels(exc.code).inc()
        raise


async def _durable(node: Node) -> None:
    """Answer 2xx for an admitted action only once it is in the node's mempool journal (mempool_store.py)."""
    wait = node.durable()
    if wait is None:
        return
    try:
        await wait
    except sqlite3.Error as exc:
        raise ApiError(
            503,
            "not_durable",
            f"admitted, but the node could not write it to its mempool journal ({exc}): it may still become final, "
            "but would not survive a restart of this node; check GET /v1/actions/{hash} before sending it again",
        ) from None


async def post_action(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    wire = await _read_counted(request)
    status, body = _submit_one(node, wire)
    if status == 202:
        await _durable(node)
    return _json(body, status, RETRY_AFTER if status in (429, 503) else None)


async def post_actions_batch(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    doc = await _read_counted(request)
    problem = None
    if not isinstance(doc, dict) or "actions" not in doc:
        problem = ApiError(400, "invalid_batch", 'body must be {"actions": [...]}', "actions")
    elif set(doc) != {"actions"}:
        extra = ", ".join(sorted(k for k in doc if k != "actions"))[:200]
        problem = ApiError(400, "invalid_batch", f"unknown field(s): {extra}", extra.split(", ")[0])
    elif not isinstance(doc["actions"], list):
        problem = ApiError(400, "invalid_batch", "must be a list of actions", "actions")
    elif not doc["actions"] or len(doc["actions"]) > MAX_BATCH:
        problem = ApiError(400, "invalid_batch", f"must hold 1 to {MAX_BATCH} actions, not {len(doc['actions'])}", "actions")
    else:
        # A malformed action (a wrong type, range or pattern: what the OpenAPI schema of an action says) is a
        # client bug, refused like POST /v1/actions refuses it, and before any action of the batch is admitted.
        # What only the node can tell (a signature, the mempool's rules) is answered per action.
        # The batch's cost beyond the request's one token is paid first: the checks below cost per action too.
        n = len(doc["actions"])
        owed = n / BATCH_ACTIONS_PER_TOKEN - 1
        if owed > 0 and not request.app[LIMITER_KEY].allow(request.remote or "?", owed):
            problem = ApiError(429, "rate_limited", f"a batch of {n} actions costs more than this client has left; slow down")
        for i, wire in enumerate(doc["actions"] if problem is None else ()):
            if i and i % BATCH_YIELD_EVERY == 0:
                await asyncio.sleep(0)  # a big batch must not hold the event loop that runs consensus
            try:
                actions.check(wire)
            except InvalidInput as exc:
                where = f"actions[{i}].{exc.field}" if exc.field else f"actions[{i}]"
                problem = ApiError(400, "invalid_action", f"{where}: {exc.reason}", where)
                break
    if problem is not None:
        node.metrics.api_rejections.labels(problem.code).inc()
        raise problem
    results = []
    accepted = 0
    bad_signatures = 0
    for i, wire in enumerate(doc["actions"]):
        if i and i % BATCH_YIELD_EVERY == 0:
            await asyncio.sleep(0)  # a big batch must not hold the event loop that runs consensus
        if bad_signatures >= BATCH_MAX_BAD_SIGNATURES:
            node.metrics.api_rejections.labels("not_checked").inc()
            results.append(
                _error_body("not_checked", f"not checked: this batch had {bad_signatures} bad signatures", "signature")
            )
            continue
        status, body = _submit_one(node, wire)
        accepted += status == 202
        bad_signatures += body.get("error", {}).get("field") == "signature"
        results.append(body)
    if accepted:
        await _durable(node)  # one group commit for the whole batch
    return _json({"accepted": accepted, "results": results}, 200)


def _hash_param(request: web.Request, name: str = "hash") -> bytes:
    text = request.match_info[name]
    if not _HASH_RE.fullmatch(text):
        raise ApiError(400, "invalid_hash", f"{name} must be 64 hex characters (32 bytes)", name)
    return bytes.fromhex(text)


def _address_param(value: str, name: str) -> str:
    if not valid_address(value):
        raise ApiError(400, "invalid_address", f"{name} is not a valid io1... address", name)
    return value


async def get_action(request: web.Request) -> web.Response:
    h = _hash_param(request)
    node = request.app[NODE_KEY]
    found = node.action_status(h)
    if found is None:
        raise ApiError(404, "not_found", f"action {h.hex()} is not known to this node", "hash")
    if found["status"] == "finalized":
        found["action"] = _stored_action(node, found["receipt"]["height"], found["receipt"]["index"], {})
    return _json(found)


async def get_account(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    addr = _address_param(request.match_info["address"], "address")
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


def _genesis_json(node: Node) -> web.Response:
    return _json({"height": 0, "hash": node.genesis.hash.hex(), "genesis": node.genesis.to_json()})


def _block_json(node: Node, height: int) -> web.Response:
    if height == 0:
        return _genesis_json(node)
    data = node.store.block_data(height)
    if data is None:
        raise ApiError(404, "not_found", f"block {height} does not exist (tip is {node.chain.height})", "ref")
    b = orjson.loads(data)
    b["hash"] = _block_hash(b)
    b["height"] = b["header"]["height"]
    return _json(b)


def _block_hash(b: dict[str, Any]) -> str:
    from iotex_node.block import Header

    return Header.from_wire(b["header"]).hash.hex()


async def get_block(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    ref = request.match_info["ref"]
    if _HEIGHT_RE.fullmatch(ref):
        return _block_json(node, int(ref))
    if ref == "latest":
        return _block_json(node, node.chain.height)
    if _HASH_RE.fullmatch(ref):
        h = bytes.fromhex(ref)
        if h == node.genesis.hash:
            return _genesis_json(node)
        found = node.store.block_height_by_hash(h)
        if found is None:
            raise ApiError(404, "not_found", f"no block with hash {h.hex()}", "ref")
        return _block_json(node, found)
    raise ApiError(400, "invalid_block_ref", "block reference must be a height, 'latest' or a 64-hex hash", "ref")


def _height_query(request: web.Request, name: str, *, required: bool) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        if not required:
            return None
        raise ApiError(400, "invalid_height", f"query parameter {name!r} is required: a height of at least 1", name)
    if not _HEIGHT_RE.fullmatch(raw) or int(raw) < 1:
        raise ApiError(400, "invalid_height", f"{name} must be a height: a positive integer of at most 18 digits", name)
    return int(raw)


async def get_blocks(request: web.Request) -> web.Response:
    """The headers of the finalized blocks from..to in one answer (at most MAX_RANGE; fewer when the blocks are
    large): what a client reading a span of the chain (gaps between blocks, proposers, signers) needs, without
    one request per block. `to` in the answer is the last height it covers; a client continues from there."""
    node = request.app[NODE_KEY]
    start = _height_query(request, "from", required=True)
    end = _height_query(request, "to", required=False)
    assert start is not None
    tip = node.chain.height
    last = min(tip, start + MAX_RANGE - 1, tip if end is None else end)
    covered = max(start - 1, last)
    out = []
    read = 0
    for height, block_hash, data in node.store.iter_blocks(start, last):
        b = orjson.loads(data)
        h = b["header"]
        out.append(
            {
                "height": height,
                "hash": block_hash.hex(),
                "round": h["round"],
                "timestamp_ms": h["timestamp_ms"],
                "proposer": h["proposer"],
                "epoch": h["epoch"],
                "protocol": h["protocol"],
                "action_count": len(b["actions"]),
                "voters": [s["voter"] for s in (b.get("certificate") or {}).get("signatures", [])],
            }
        )
        read += len(data)
        if read >= RANGE_READ_BUDGET and height < last:
            covered = height
            break
    return _json({"from": start, "to": covered, "tip": tip, "blocks": out})


async def get_chain(request: web.Request) -> web.Response:
    s = request.app[NODE_KEY].status()
    keys = ("name", "address", "chain_id", "height", "finalized_height", "finalized_hash", "state_root", "epoch",
            "active_delegates", "version", "protocol", "supported_protocols", "consensus", "peers", "synced",
            "participating", "paused", "standby", "halt_height", "halted", "writes_paused", "protocol_schedule")  # fmt: skip
    out = {k: s[k] for k in keys}
    node = request.app[NODE_KEY]
    out["node_version"] = out.pop("version")
    out["protocol_version"] = out.pop("protocol")
    out["block_interval_ms"] = node.genesis.block_interval_ms
    out["epoch_length"] = node.genesis.epoch_length
    out["genesis_hash"] = node.genesis.hash.hex()
    out["min_fee"] = str(node.chain.mempool.limits.min_fee)
    out["finalized_timestamp_ms"] = node.chain.tip_timestamp_ms
    return _json(out)


def _epoch_param(request: web.Request, node: Node) -> int:
    raw = request.query.get("epoch")
    if raw is None:
        return node.genesis.epoch_of(node.chain.height + 1)
    if not _EPOCH_RE.fullmatch(raw) or int(raw) < 1:
        raise ApiError(400, "invalid_epoch", "epoch must be a positive integer of at most 12 digits", "epoch")
    return int(raw)


async def get_delegates(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    epoch = _epoch_param(request, node)
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


def _bucket_json(node: Node, bid: int, b: dict[str, Any]) -> dict[str, Any]:
    return {"id": bid, **b, "votes": str(ex.weighted_votes(node.genesis, int(b["amount"]), b["days"]))}


async def get_buckets(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    owner = request.query.get("owner")
    candidate = request.query.get("candidate")
    for name, v in (("owner", owner), ("candidate", candidate)):
        if v is not None:
            _address_param(v, name)
    st = node.chain.state
    out = []
    for k in st.keys_with_prefix("b/"):
        b = st.get(k)
        if (owner and b["owner"] != owner) or (candidate and b["candidate"] != candidate):
            continue
        out.append(_bucket_json(node, int(k[2:]), b))
    out.sort(key=lambda b: b["id"])
    return _json({"buckets": out[:1000], "truncated": len(out) > 1000})


async def get_bucket(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    raw = request.match_info["id"]
    if not _HEIGHT_RE.fullmatch(raw):
        raise ApiError(400, "invalid_bucket", "bucket id must be a non-negative integer of at most 18 digits", "id")
    bid = int(raw)
    b = node.chain.state.get(f"b/{bid}")
    if b is None:
        raise ApiError(404, "not_found", f"bucket {bid} does not exist", "id")
    return _json(_bucket_json(node, bid, b))


async def get_rewards(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    addr = _address_param(request.match_info["address"], "address")
    return _json({"address": addr, "unclaimed": str(ex.unclaimed(node.chain.state, addr)), "height": node.chain.height})


# --- the books: what rewards bookkeeping and payout reconciliation read (store.py, "The books") ---------

MAX_ACCOUNT_ACTIONS = 1000


def _stored_action(node: Node, height: int, index: int, cache: dict[int, list[Any]]) -> dict[str, Any]:
    """The wire form of the `index`-th action of finalized block `height` (blocks read once per request)."""
    if height not in cache:
        data = node.store.block_data(height)
        cache[height] = orjson.loads(data)["actions"] if data is not None else []
    acts = cache[height]
    return acts[index] if index < len(acts) else {}


async def get_epoch_books(request: web.Request) -> web.Response:
    """An epoch's books: its delegates, every candidate's votes and the buckets behind them at the epoch's end
    (the votes that split its epoch reward), and the rewards (block, fee, epoch) granted to each owner in it."""
    node = request.app[NODE_KEY]
    raw = request.match_info["epoch"]
    if not _EPOCH_RE.fullmatch(raw) or int(raw) < 1:
        raise ApiError(400, "invalid_epoch", "epoch must be a positive integer of at most 12 digits", "epoch")
    epoch = int(raw)
    candidate = request.query.get("candidate")
    if candidate is not None:
        _address_param(candidate, "candidate")
    g = node.genesis
    first = (epoch - 1) * g.epoch_length + 1
    last = epoch * g.epoch_length
    if last > node.chain.height:
        raise ApiError(
            409, "epoch_not_over", f"epoch {epoch} ends at height {last}; the chain is at {node.chain.height}", "epoch"
        )
    found = node.store.epoch_votes(epoch)
    if found is None:
        start = node.store.books_start()
        since = f"from height {start} on" if start is not None else "for no block yet"
        raise ApiError(404, "not_recorded", f"this node's books have no record of epoch {epoch} (they hold {since})", "epoch")
    _height, snap = found
    active = ex.delegates_of_epoch(node.chain.state, epoch)
    names = {c["owner"]: c["name"] for c in snap["candidates"]}
    ops = set(active)
    sums: dict[str, dict[str, int]] = {}
    for _h, owner, kind, amount in node.store.granted(epoch):
        entry = sums.setdefault(owner, {"block": 0, "fee": 0, "epoch": 0})
        entry[kind] = entry.get(kind, 0) + amount
    rewards = [
        {"owner": o, "name": names.get(o), **{k: str(v) for k, v in e.items()}, "total": str(sum(e.values()))}
        for o, e in sorted(sums.items())
    ]
    buckets = [b for b in snap["buckets"] if candidate is None or b["candidate"] == candidate]
    candidates = [{**c, "active": c["operator"] in ops} for c in snap["candidates"]]
    return _json({"epoch": epoch, "first_height": first, "last_height": last, "delegates": active,
                  "candidates": candidates, "buckets": buckets, "rewards": rewards})  # fmt: skip


def _int_query(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not _HEIGHT_RE.fullmatch(raw) or not lo <= int(raw) <= hi:
        raise ApiError(400, f"invalid_{name}", f"{name} must be an integer from {lo} to {hi}", name)
    return int(raw)


async def get_account_actions(request: web.Request) -> web.Response:
    """The finalized actions an address sent, and the transfers it received, oldest first, a page at a time
    (`next`: the `start` of the following page, null at the end), each with its payload (a memo included)."""
    node = request.app[NODE_KEY]
    addr = _address_param(request.match_info["address"], "address")
    start = _int_query(request, "start", 0, 0, 10**15)
    limit = _int_query(request, "limit", 100, 1, MAX_ACCOUNT_ACTIONS)
    rows = node.store.account_actions(addr, start, limit + 1)
    cache: dict[int, list[Any]] = {}
    out = []
    for height, index, h in rows[:limit]:
        wire = _stored_action(node, height, index, cache)
        rec = node.chain.receipt(h) or {}
        item = {"hash": h.hex(), "height": height, "index": index, "type": wire.get("type"), "sender": wire.get("sender"),
                "nonce": wire.get("nonce"), "fee": wire.get("fee"), "payload": wire.get("payload"),
                "status": rec.get("status")}  # fmt: skip
        if rec.get("error"):
            item["error"] = rec["error"]
        out.append(item)
    nxt = start + limit if len(rows) > limit else None
    return _json({"address": addr, "start": start, "next": nxt, "actions": out, "height": node.chain.height})


async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    s = node.status()
    problems = []
    if not s["synced"]:
        # Judged by what most peers (the epoch's delegates among them, when connected) show, so that one
        # peer claiming a huge height cannot make a healthy node unready.
        problems.append(f"behind the network: at {s['height']}, most peers at {node.network_height()} or above")
    if s["is_delegate"] and s["peers"] + 1 < len(s["active_delegates"]) * 2 // 3 + 1:
        problems.append(f"connected to {s['peers']} peers: too few to reach a quorum")
    if node.fatal:
        problems.append(node.fatal)
    if node.writes_paused:
        problems.append(node.writes_paused)
    if problems:
        return _json({"status": "not ready", "problems": problems}, 503, RETRY_AFTER)
    return _json({"status": "ready", "height": s["height"], "participating": s["is_delegate"]})


async def metrics(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    node.metrics.mempool_size.set(len(node.chain.mempool))
    node.metrics.peers.set(len(node.net.peers))
    node.metrics.refresh_disk(node.cfg.path(node.cfg.database).parent)
    return web.Response(body=generate_latest(node.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


_OPENAPI: bytes | None = None


def openapi_document() -> bytes:
    global _OPENAPI
    if _OPENAPI is None:
        data = resources.files("iotex_node").joinpath("openapi.json").read_bytes()
        json.loads(data)  # shipped broken would be a packaging bug; fail loudly in tests
        _OPENAPI = data
    return _OPENAPI


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=openapi_document(), content_type="application/json")


def make_app(node: Node) -> web.Application:
    app = web.Application(middlewares=[_guard], client_max_size=node.cfg.max_body_bytes)
    app[NODE_KEY] = node
    app[LIMITER_KEY] = RateLimiter(node.cfg.rate_limit_per_second, node.cfg.rate_limit_burst)
    app[MAX_BODY_KEY] = node.cfg.max_body_bytes
    app[MALFORMED_LOG_KEY] = LogThrottle(MALFORMED_LOG_INTERVAL_S)
    app[CONNS_KEY] = ConnectionLimits(node.cfg.max_connections, node.cfg.max_connections_per_client)
    r = app.router
    r.add_post("/v1/actions", post_action)
    r.add_post("/v1/actions/batch", post_actions_batch)
    # Not "batch": GET or OPTIONS /v1/actions/batch must be a 405 that allows POST only, not an invalid hash.
    r.add_get("/v1/actions/{hash:(?!batch$)[^/]+}", get_action)
    r.add_get("/v1/accounts/{address}", get_account)
    r.add_get("/v1/blocks", get_blocks)
    r.add_get("/v1/blocks/{ref}", get_block)
    r.add_get("/v1/chain", get_chain)
    r.add_get("/v1/delegates", get_delegates)
    r.add_get("/v1/buckets", get_buckets)
    r.add_get("/v1/buckets/{id}", get_bucket)
    r.add_get("/v1/rewards/{address}", get_rewards)
    r.add_get("/v1/epochs/{epoch}/books", get_epoch_books)
    r.add_get("/v1/accounts/{address}/actions", get_account_actions)
    r.add_get("/v1/openapi.json", openapi)
    r.add_get("/healthz", healthz)
    r.add_get("/readyz", readyz)
    r.add_get("/metrics", metrics)
    return app


async def start(node: Node, sock: socket.socket) -> tuple[web.AppRunner, str]:
    """Serve the API on `sock`, a listening socket the node bound before it joined the network (node.start):
    connections that arrived meanwhile wait in its backlog and are answered now."""
    # auto_decompress=False: _decode_body undoes Content-Encoding itself, bounded and with this API's errors.
    # keepalive_timeout: aiohttp closes a connection still waiting for a complete request (its headers, or a
    # next request on a kept-alive one) this long after it opened or was last answered (3630 s by default).
    runner = _ApiRunner(
        make_app(node),
        access_log=None,
        handle_signals=False,
        auto_decompress=False,
        shutdown_timeout=SHUTDOWN_GRACE_S,
        keepalive_timeout=node.cfg.header_timeout_s,
    )
    await runner.setup()
    site = web.SockSite(runner, sock)
    await site.start()
    bound = sock.getsockname()
    return runner, f"http://{bound[0]}:{bound[1]}"
