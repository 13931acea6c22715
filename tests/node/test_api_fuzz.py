"""Fuzzing the HTTP API with hypothesis: no request may get a 5xx, and the node keeps answering and finalizing.

One node runs for the whole module on its own event loop in a background thread (it keeps producing
blocks between examples, as in production); hypothesis drives a plain blocking HTTP client at it. Paths,
methods, query strings, headers and bodies are generated, partly at random and partly from the OpenAPI
document the node serves, whose response schemas every answer must then match.
"""

from __future__ import annotations

import asyncio
import gzip
import http.client
import json
import threading
import time
import urllib.parse
import zlib
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iotex_node import actions
from iotex_node.node import Node
from tests.node.test_api import CHAIN_ID, FEE, NetHomes, check_response, make_testnet, openapi_doc, schema_errors, start_node

pytestmark = pytest.mark.slow  # a node in this process, fuzzed over HTTP

T = TypeVar("T")
DOC = openapi_doc()
ERROR = {"$ref": "#/components/schemas/Error"}
# Every status the API may answer with; 5xx only as /readyz's "not ready".
DOCUMENTED = {200, 202, 400, 404, 405, 408, 409, 413, 415, 422, 429}
FUZZ = settings(
    max_examples=1500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)


class NodeThread:
    """A node on its own event loop in a daemon thread, for blocking (hypothesis-driven) clients."""

    def __init__(self, home: Path, **overrides: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="node-under-fuzz", daemon=True)
        self.thread.start()
        self.node: Node = self.call(start_node(home, **overrides))
        host, port = self.node.api_url.removeprefix("http://").rsplit(":", 1)
        self.host, self.port = host, int(port)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def height(self) -> int:
        async def h() -> int:
            return self.node.chain.height

        return self.call(h())

    def stop(self) -> None:
        async def shutdown() -> None:
            await self.node.stop()
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in rest:
                t.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        try:
            self.call(shutdown())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


class Http:
    """One keep-alive connection; reconnects when the server closed it (as it may after an error)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.conn = http.client.HTTPConnection(host, port, timeout=10)

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, str, bytes]:
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                return resp.status, resp.getheader("Content-Type", ""), data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, http.client.CannotSendRequest):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


@pytest.fixture(scope="module")
def fuzz_net(tmp_path_factory: pytest.TempPathFactory) -> NetHomes:
    return make_testnet(tmp_path_factory.mktemp("fuzz") / "net", accounts=3)


@pytest.fixture(scope="module")
def server(fuzz_net: NetHomes) -> Iterator[NodeThread]:
    # A generous rate limit: the fuzzer is one client and must reach the handlers, not the limiter.
    nt = NodeThread(fuzz_net.homes[0], rate_limit_per_second=1_000_000.0, rate_limit_burst=1_000_000)
    try:
        yield nt
    finally:
        nt.stop()


@pytest.fixture(scope="module")
def client(server: NodeThread) -> Iterator[Http]:
    c = Http(server.host, server.port)
    yield c
    c.close()


@pytest.fixture(autouse=True)
def stays_responsive(server: NodeThread, client: Http) -> Iterator[None]:
    """After each fuzz test the node still answers promptly and still finalizes blocks."""
    h0 = server.height()
    yield
    t0 = time.monotonic()
    status, _, body = client.request("GET", "/healthz")
    assert status == 200 and json.loads(body) == {"status": "alive"}
    assert time.monotonic() - t0 < 2.0, "the node became slow to answer"
    deadline = time.monotonic() + 10
    while server.height() < h0 + 2:
        assert time.monotonic() < deadline, f"the node stopped finalizing at height {server.height()}"
        time.sleep(0.05)


def check(method: str, path: str, status: int, ctype: str, body: bytes) -> Any:
    """No 5xx (but /readyz's 503); an error is always the JSON error shape."""
    assert status < 500 or (path.startswith("/readyz") and status == 503), f"{method} {path[:300]} -> {status}: {body[:500]!r}"
    assert status in DOCUMENTED or status == 503, f"{method} {path[:300]} -> undocumented {status}"
    if status >= 400 and method != "HEAD" and not path.startswith("/readyz"):
        assert ctype.startswith("application/json"), f"{method} {path[:300]} -> {status} as {ctype}"
        doc = json.loads(body)
        errs = schema_errors(DOC, ERROR, doc)
        assert not errs, f"{method} {path[:300]} -> {status}: {errs} {doc}"
        return doc
    return None


# --- strategies ------------------------------------------------------------------------------------

TEMPLATES = sorted(DOC["paths"])
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "PROPFIND"]
# Printable and not: anything but lone surrogates (which cannot be UTF-8 percent-encoded at all).
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=80)
INTERESTING = st.sampled_from(
    ["", "0", "1", "latest", "-1", "\u00b2", "\u0661", "1e3", "9" * 18, "9" * 19, "9" * 40, "a" * 64, "A" * 64, "g" * 64,
     "00" * 32, " " * 64, "%", "%zz", "%00", "%ff", "%2F", "..", ".", "io1", "io1" + "q" * 38, "\x00", "null", "[]", "{}"]
)  # fmt: skip
PARAM = st.one_of(INTERESTING, TEXT)
# Keep "%" unescaped so that invalid percent-escapes reach the server too.
SAFE = "/%?&=+;:@!$'()*,-._~"


def quote(text: str) -> str:
    return urllib.parse.quote(text, safe=SAFE)


@st.composite
def paths(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 3))
    if kind == 0:  # anything at all
        return "/" + quote(draw(TEXT))
    template = draw(st.sampled_from(TEMPLATES))
    path = template
    while "{" in path:
        start, end = path.index("{"), path.index("}")
        path = path[:start] + quote(draw(PARAM)) + path[end + 1 :]
    if kind == 2:  # a query string of arbitrary names and values
        pairs = draw(st.lists(st.tuples(st.one_of(st.sampled_from(["epoch", "owner", "candidate"]), TEXT), PARAM), max_size=3))
        path += "?" + "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs)
    elif kind == 3:  # a raw suffix
        path += quote(draw(TEXT))
    return path


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**200), max_value=2**200)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(TEXT, children, max_size=5),
    max_leaves=20,
)
CONTENT_TYPES = st.sampled_from(
    ["application/json", "application/json", "application/json; charset=utf-8", "text/plain", "application/octet-stream",
     "application/json; charset=latin-1", "", "application/x-www-form-urlencoded", "application/json;;", "*/*"]
)  # fmt: skip


def _signed_pool(net: NetHomes) -> list[dict[str, Any]]:
    a, b = net.accounts[0], net.accounts[1]
    out = []
    for n in range(1, 40):
        out.append(
            actions.sign(
                a, chain_id=CHAIN_ID, nonce=n, fee=FEE + n % 3, type="transfer", payload={"to": b.address, "amount": str(n)}
            ).to_wire()
        )
    out.append(
        actions.sign(
            b, chain_id=CHAIN_ID, nonce=1, fee=FEE, type="stake_create",
            payload={"candidate": "delegate0", "amount": "1000", "duration_days": 7},
        ).to_wire()
    )  # fmt: skip
    return out


@st.composite
def mutated_actions(draw: st.DrawFn, pool: list[dict[str, Any]]) -> Any:
    """A valid signed action with one part changed: a field set to any JSON value, dropped or added."""
    wire: dict[str, Any] = json.loads(json.dumps(draw(st.sampled_from(pool))))
    target = wire if draw(st.booleans()) else wire["payload"]
    op = draw(st.sampled_from(["set", "drop", "add", "none"]))
    keys = sorted(target)
    if op == "set":
        target[draw(st.sampled_from(keys))] = draw(st.one_of(JSON_VALUES, INTERESTING))
    elif op == "drop":
        del target[draw(st.sampled_from(keys))]
    elif op == "add":
        target[draw(TEXT)] = draw(JSON_VALUES)
    return wire


# --- tests -----------------------------------------------------------------------------------------


@FUZZ
@given(method=st.sampled_from(METHODS), path=paths(), body=st.one_of(st.none(), st.binary(max_size=300)))
def test_fuzz_paths_and_methods(client: Http, method: str, path: str, body: bytes | None) -> None:
    status, ctype, data = client.request(method, path, body, {"Content-Type": "application/json"} if body is not None else {})
    check(method, path, status, ctype, data)


@FUZZ
@given(
    path=st.sampled_from(["/v1/actions", "/v1/actions/batch"]),
    body=st.one_of(
        st.binary(max_size=500),
        JSON_VALUES.map(lambda v: json.dumps(v).encode()),
        st.dictionaries(st.sampled_from(["actions", "action", ""]), JSON_VALUES, max_size=2).map(
            lambda v: json.dumps(v).encode()
        ),
    ),
    ctype=CONTENT_TYPES,
    encoding=st.one_of(st.sampled_from([None, None, "identity", "gzip", "deflate", "x-gzip", "br", "GZIP"]), TEXT),
    compress=st.booleans(),
)
def test_fuzz_submission_bodies(client: Http, path: str, body: bytes, ctype: str, encoding: str | None, compress: bool) -> None:
    headers = {"Content-Type": ctype} if ctype else {}
    if encoding is not None and encoding.isascii() and encoding.isprintable():
        headers["Content-Encoding"] = encoding
        if compress and encoding == "gzip":
            body = gzip.compress(body)
        elif compress and encoding == "deflate":
            body = zlib.compress(body)
    status, rtype, data = client.request("POST", path, body, headers)
    err = check("POST", path, status, rtype, data)
    assert status in (200, 400, 409, 415, 422), (status, data[:300])
    if status == 415:
        supported = headers.get("Content-Encoding", "").strip().lower() in ("", "identity", "gzip", "x-gzip", "deflate")
        if err["error"]["code"] == "bad_content_encoding":
            assert not supported, (headers, err)
        else:
            assert err["error"]["code"] == "bad_content_type", err
            assert ctype not in ("application/json", "application/json; charset=utf-8"), (headers, err)


def test_fuzz_mutated_signed_actions(client: Http, fuzz_net: NetHomes) -> None:
    pool = _signed_pool(fuzz_net)
    seen: set[int] = set()

    @FUZZ
    @given(wire=mutated_actions(pool), batch=st.booleans())
    def run(wire: Any, batch: bool) -> None:
        path = "/v1/actions/batch" if batch else "/v1/actions"
        body = json.dumps({"actions": [wire]} if batch else wire).encode()
        status, rtype, data = client.request("POST", path, body, {"Content-Type": "application/json"})
        doc = check("POST", path, status, rtype, data)
        seen.add(status)
        check_response(DOC, path, "POST", status, json.loads(data))
        if doc is not None and status == 400:
            assert doc["error"]["code"] == "invalid_action"
            assert doc["error"].get("field") or "field" in doc["error"]["message"] or "object" in doc["error"]["message"]

    run()
    assert 400 in seen, "the mutations never produced an invalid action"


# A value for each OpenAPI parameter: mostly valid for its schema, sometimes not.
def _param_values(schema: dict[str, Any], fuzz_net: NetHomes) -> st.SearchStrategy[str]:
    s = schema
    if "$ref" in s:
        name = s["$ref"].rsplit("/", 1)[1]
        if name == "Address":
            return st.sampled_from([a.address for a in fuzz_net.accounts])
    if s.get("type") == "integer":
        return st.integers(min_value=s.get("minimum", 0), max_value=min(s.get("maximum", 10**6), 10**6)).map(str)
    pattern = s.get("pattern")
    if pattern:
        return st.from_regex(pattern, fullmatch=True)
    return TEXT


def test_fuzz_operations_match_the_openapi_document(client: Http, fuzz_net: NetHomes) -> None:
    """Schemathesis-style: requests built from each operation's parameters; answers must match its schemas."""
    ops = [(p, m, op) for p, item in DOC["paths"].items() for m, op in item.items() if m != "post"]

    @st.composite
    def requests(draw: st.DrawFn) -> tuple[str, str, str, bool]:
        template, method, op = draw(st.sampled_from(ops))
        path, query, wild = template, [], False
        for param in op.get("parameters", []):
            if draw(st.integers(0, 4)) == 0:  # now and then a value outside the parameter's schema
                value, wild = draw(PARAM), True
            else:
                value = draw(_param_values(param["schema"], fuzz_net))
            if param["in"] == "path":
                path = path.replace("{" + param["name"] + "}", quote(value))
            elif param.get("required") or draw(st.booleans()):  # a required query parameter is always sent
                query.append(f"{param['name']}={quote(value)}")
        if query:
            path += "?" + "&".join(query)
        return template, method.upper(), path, wild

    @FUZZ
    @given(req=requests())
    def run(req: tuple[str, str, str, bool]) -> None:
        template, method, path, wild = req
        status, rtype, data = client.request(method, path)
        check(method, path, status, rtype, data)
        if template == "/metrics":
            assert status == 200 and rtype.startswith("text/plain")
            return
        body = json.loads(data)
        if wild and status == 404 and body["error"]["message"].startswith("no such resource"):
            return  # the wild value (empty, "/", "..") made the path another route's or none's
        check_response(DOC, template, method, status, body)
        if not wild:
            # 409: an epoch's books asked for before its last block is final (a well-formed "not yet")
            not_yet = status == 409 and body["error"]["code"] == "epoch_not_over"
            assert status in (200, 404, 503) or not_yet, f"{method} {path}: a schema-valid request got {status} {body}"

    run()
