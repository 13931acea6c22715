"""The local-only admin channel: HTTP over a Unix socket in the node's home, with a bearer token.

A Unix socket is never reachable from the network; the socket is mode 0600 and the token (also 0600,
written by `init`) is checked on every request, so another local user cannot drive the node either.
"""

from __future__ import annotations

import hmac
import http.client
import json
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from iotex_node.config import NodeConfig, read_secret_file
from iotex_node.controls import ActivationRefused
from iotex_node.errors import InvalidInput, NodeError

if TYPE_CHECKING:
    from iotex_node.node import Node


# A stopping node waits at most this long for an admin request in flight (aiohttp's default is 60 s),
# as for the HTTP API (api.SHUTDOWN_GRACE_S).
SHUTDOWN_GRACE_S = 1.0


class AdminError(NodeError):
    """The admin channel could not be reached or refused the request."""


def _app(node: Node, token: str) -> web.Application:
    @web.middleware
    async def auth(request: web.Request, handler: Any) -> web.StreamResponse:

        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return web.json_response({"error": {"code": "unauthorized", "message": "wrong or missing admin token"}}, status=401)
        resp: web.StreamResponse = await handler(request)
        return resp

    async def status(request: web.Request) -> web.Response:
        return web.json_response(node.status())

    async def body(request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        try:
            doc = await request.json()
        except ValueError:
            raise InvalidInput("body is not JSON") from None
        if not isinstance(doc, dict):
            raise InvalidInput("body must be a JSON object")
        return doc

    def control(fn: Callable[[dict[str, Any]], object]) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            try:
                result = fn(await body(request))
            except (InvalidInput, ActivationRefused) as exc:
                return web.json_response({"error": {"code": "refused", "message": str(exc)}}, status=409)
            out = node.status()
            if result is not None:
                out["result"] = result
            return web.json_response(out)

        return handler

    def halt(doc: dict[str, Any]) -> object:
        """{"height": H}: halt at H; {"after": N}: at the finalized height + N, as this node sees it now;
        {"clear": true}: remove the scheduled halt."""
        unknown = set(doc) - {"height", "after", "clear"}
        if unknown:
            raise InvalidInput(f"unknown field(s): {', '.join(sorted(unknown))}")
        if doc.get("clear") is True:
            node.clear_halt()
            return None
        if ("height" in doc) == ("after" in doc):
            raise InvalidInput('give {"height": H}, {"after": N} or {"clear": true}')
        if "after" in doc:
            return node.set_halt_height(after=doc["after"])
        return node.set_halt_height(doc["height"])

    async def snapshot(request: web.Request) -> web.Response:
        """A consistent copy of the database while the node runs: read in a worker thread through a
        connection of its own, so the event loop keeps committing (see iotex_node.maintenance)."""
        import asyncio

        from iotex_node import maintenance

        try:
            doc = await body(request)
            if set(doc) != {"out"} or not isinstance(doc["out"], str) or not os.path.isabs(doc["out"]):
                raise InvalidInput('give {"out": "/absolute/path/of/the/new/snapshot"} and nothing else', "out")
            info = await asyncio.to_thread(
                maintenance.snapshot, node.store.path, Path(doc["out"]), chain_id=node.genesis.chain_id, online=True
            )
        except NodeError as exc:
            return web.json_response({"error": {"code": "refused", "message": str(exc)}}, status=409)
        return web.json_response(info.to_json())

    async def signed(request: web.Request) -> web.Response:
        """The signing history: ?from=A&to=B (heights; at most 10,000 rows): what this node signed."""
        try:
            first = int(request.query.get("from", "0"))
            last = int(request.query.get("to", str(2**62)))
            if first < 0 or last < first:
                raise ValueError
        except ValueError:
            msg = "give heights ?from=A&to=B with 0 <= A <= B"
            return web.json_response({"error": {"code": "refused", "message": msg}}, status=409)
        rows = node.store.signed_between(first, last)
        kinds = ("proposal", "prevote", "precommit")
        return web.json_response(
            {
                "address": node.key.address,
                "role": "standby" if node.controls.standby else "primary",
                "sign_fence": node.signlog.floor,
                "signed": [{"height": h, "round": r, "kind": kinds[s], "value": v, "at_ms": t} for h, r, s, v, t in rows],
            }
        )

    app = web.Application(middlewares=[auth])
    app.router.add_get("/status", status)
    app.router.add_post("/pause", control(lambda d: node.pause()))
    app.router.add_post("/resume", control(lambda d: node.resume()))
    app.router.add_post("/halt", control(halt))
    app.router.add_post("/standby", control(lambda d: node.to_standby("requested by the operator")))
    app.router.add_post("/activate", control(lambda d: node.activate(force=d.get("force") is True)))
    # the failover vocabulary (a standby is promoted to primary; a primary demoted to standby)
    app.router.add_post("/promote", control(lambda d: node.activate(force=d.get("force") is True)))
    app.router.add_post("/demote", control(lambda d: node.to_standby("demoted by the operator")))
    app.router.add_get("/signed", signed)
    app.router.add_post("/snapshot", snapshot)
    app.router.add_post("/protocols", control(node.schedule_protocol))
    return app


async def start(node: Node) -> web.AppRunner:
    token = read_secret_file(node.cfg.admin_token_file, "admin token")
    path = node.cfg.admin_socket
    if path.exists() or path.is_symlink():
        path.unlink()
    runner = web.AppRunner(_app(node, token), access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE_S)
    await runner.setup()
    old = os.umask(0o177)  # the socket is created 0600
    try:
        await web.UnixSite(runner, str(path)).start()
    finally:
        os.umask(old)
    return runner


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(str(self._path))
        self.sock = s


def call(cfg: NodeConfig, method: str, path: str, body: Any = None, timeout: float = 10.0, token: str | None = None) -> Any:
    """Call the admin channel of the node whose home is cfg.home."""
    if token is None:
        token = read_secret_file(cfg.admin_token_file, "admin token")
    sock = cfg.admin_socket
    if not sock.exists():
        raise AdminError(f"node at {cfg.home} is not running (no admin socket at {sock})")
    conn = _UnixHTTPConnection(sock, timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        resp = conn.getresponse()
        payload = resp.read()
    except (ConnectionRefusedError, FileNotFoundError):
        raise AdminError(f"node at {cfg.home} is not running (admin socket refuses connections)") from None
    except (OSError, http.client.HTTPException) as exc:
        raise AdminError(f"admin channel of {cfg.home} failed: {exc}") from None
    finally:
        conn.close()
    try:
        doc = json.loads(payload)
    except ValueError:
        raise AdminError(f"admin channel of {cfg.home} answered {resp.status} with non-JSON") from None
    if resp.status >= 400:
        err = doc.get("error", {}) if isinstance(doc, dict) else {}
        raise AdminError(f"admin {method} {path} refused ({resp.status}): {err.get('message', doc)}")
    return doc
