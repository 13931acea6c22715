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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from iotex_node.config import NodeConfig, read_secret_file
from iotex_node.errors import NodeError

if TYPE_CHECKING:
    from iotex_node.node import Node


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

    app = web.Application(middlewares=[auth])
    app.router.add_get("/status", status)
    return app


async def start(node: Node) -> web.AppRunner:
    token = read_secret_file(node.cfg.admin_token_file, "admin token")
    path = node.cfg.admin_socket
    if path.exists() or path.is_symlink():
        path.unlink()
    runner = web.AppRunner(_app(node, token), access_log=None, handle_signals=False)
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
