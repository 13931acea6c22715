"""The traffic package's one way to a node's HTTP API (the seam a node client plugs into).

Every request the loads make goes through a `NodeApi` (JSON GET and POST under a node's API base URL,
failures as `Unavailable`) or, for the async sender, an `AsyncNodeApi`. `HttpNodeApi` and
`AiohttpNodeApi` are the implementations over plain HTTP; a load takes any object with these methods, so
that tests pass a fake. `HttpNodeApi` is the toolkit's `NodeClient` (one client per node, rate limits not
waited out: a load counts a refused request and moves on).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from iotex_ops.errors import OpsError
from iotex_ops.nodeapi import NodeApiError, NodeClient

if TYPE_CHECKING:
    import aiohttp


class Unavailable(OpsError):
    """A node did not answer, or answered with an HTTP error: the request may go to another node."""


class NodeApi(Protocol):
    def get(self, api: str, path: str, *, timeout: float) -> Any: ...

    def post(self, api: str, path: str, body: Any, *, timeout: float) -> Any: ...


class AsyncNodeApi(Protocol):
    async def post(self, api: str, path: str, body: Any) -> Any: ...


class HttpNodeApi:
    """JSON over HTTP through `iotex_ops.nodeapi.NodeClient`, one client per node API base URL."""

    def __init__(self) -> None:
        self._clients: dict[str, NodeClient] = {}

    def _client(self, api: str) -> NodeClient:
        client = self._clients.get(api)
        if client is None:
            client = self._clients[api] = NodeClient(api, max_retry_wait=0)
        return client

    def get(self, api: str, path: str, *, timeout: float) -> Any:
        try:
            return self._client(api).get_json(path, timeout=timeout)
        except NodeApiError as exc:
            raise Unavailable(str(exc)) from None

    def post(self, api: str, path: str, body: Any, *, timeout: float) -> Any:
        try:
            return self._client(api).post_json(path, body, timeout=timeout)
        except NodeApiError as exc:
            raise Unavailable(str(exc)) from None


class AiohttpNodeApi:
    """JSON GETs and POSTs through one aiohttp session (its timeout applies); any status but 200 is Unavailable."""

    async def get(self, api: str, path: str) -> Any:
        return await self._json("GET", api, path)

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def post(self, api: str, path: str, body: Any) -> Any:
        return await self._json("POST", api, path, body)

    async def _json(self, method: str, api: str, path: str, body: Any = None) -> Any:
        import aiohttp

        try:
            async with self.session.request(method, api + path, json=body) as resp:
                doc = await resp.json()
                if resp.status != 200:
                    raise Unavailable(f"{api}{path}: HTTP {resp.status}")
                return doc
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            raise Unavailable(f"{api}{path}: {type(exc).__name__}") from None
