"""The node client against a tiny local fake of the node's API: typed records, one error type naming the
node and the URL, 429 with Retry-After waited out within a bound, the range read and its paging."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from iotex_ops import nodeapi
from iotex_ops.errors import OpsError
from iotex_ops.nodeapi import NodeApiError, NodeClient

# real HTTP servers on loopback (in-process): the slow tier, as the unit-tier guard requires
pytestmark = pytest.mark.slow

ADDR = "io1" + "q" * 38
HASH = "ab" * 32

CHAIN = {
    "name": "d1", "address": ADDR, "chain_id": 4690, "height": 12, "finalized_height": 12, "finalized_hash": HASH,
    "state_root": HASH, "epoch": 2, "active_delegates": [ADDR], "node_version": "1.0.1", "protocol_version": 1,
    "supported_protocols": [1], "consensus": {"height": 13, "round": 0, "step": "propose"}, "peers": 3, "synced": True,
    "participating": True, "paused": False, "standby": False, "halt_height": None, "halted": None,
    "protocol_schedule": [], "block_interval_ms": 1000, "epoch_length": 20, "genesis_hash": HASH, "min_fee": "10",
    "finalized_timestamp_ms": 1_700_000_012_000, "some_future_field": 1,
}  # fmt: skip


def header(h: int) -> dict[str, Any]:
    return {"height": h, "hash": f"{h:064x}", "round": h % 2, "timestamp_ms": 1_700_000_000_000 + 1000 * h,
            "proposer": ADDR, "epoch": 1, "protocol": 1, "action_count": h % 3, "voters": [ADDR]}  # fmt: skip


def full_block(h: int) -> dict[str, Any]:
    hdr = {"chain_id": 4690, "height": h, "round": 0, "prev_hash": f"{h - 1:064x}", "proposer": ADDR, "epoch": 1,
           "timestamp_ms": 1_700_000_000_000 + 1000 * h, "protocol": 1, "actions_root": HASH, "receipts_root": HASH,
           "state_root": HASH}  # fmt: skip
    return {"height": h, "hash": f"{h:064x}", "header": hdr, "actions": [{"type": "transfer"}],
            "certificate": {"round": 0, "signatures": [{"voter": ADDR, "signature": "00"}]}}  # fmt: skip


Reply = tuple[int, Any, dict[str, str]]


class FakeNode(ThreadingHTTPServer):
    """Answers by path: a scripted list of replies (the last one repeats), or the default routes below."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.scripts: dict[str, list[Reply]] = {}
        self.requests: list[tuple[str, str, Any]] = []
        self.range_limit = 1000
        self.tip = 12
        self.lock = threading.Lock()
        self.limit_for = 0.0  # > 0: a rate limiter that refuses everything for this long after a first refusal
        self.limited_until = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def script(self, path: str, *replies: Reply) -> None:
        self.scripts[path] = list(replies)

    def reply(self, method: str, path: str, body: Any) -> Reply:
        with self.lock:
            self.requests.append((method, path, body))
            now = time.monotonic()
            if self.limit_for and (not self.limited_until or now < self.limited_until):
                self.limited_until = self.limited_until or now + self.limit_for
                return 429, RATE_LIMITED, {"Retry-After": f"{self.limited_until - now:.3f}"}
            script = self.scripts.get(urlsplit(path).path)
            if script:
                return script.pop(0) if len(script) > 1 else script[0]
        u = urlsplit(path)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        if u.path == "/v1/chain":
            return 200, CHAIN, {}
        if u.path == "/v1/blocks":
            start = int(q["from"])
            last = min(self.tip, int(q.get("to", self.tip)), start + self.range_limit - 1)
            blocks = [header(h) for h in range(start, last + 1)]
            return 200, {"from": start, "to": max(start - 1, last), "tip": self.tip, "blocks": blocks}, {}
        if u.path.startswith("/v1/blocks/"):
            h = int(u.path.rsplit("/", 1)[1])
            if h > self.tip:
                return 404, {"error": {"code": "not_found", "message": f"block {h} does not exist", "field": "ref"}}, {}
            return 200, full_block(h), {}
        return 404, {"error": {"code": "not_found", "message": f"no such resource: {method} {u.path}", "field": "path"}}, {}


class _Handler(BaseHTTPRequestHandler):
    server: FakeNode

    def _answer(self, method: str) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(n)) if n else None
        status, doc, headers = self.server.reply(method, self.path, body)
        raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def fake() -> Iterator[FakeNode]:
    server = FakeNode()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def client(fake: FakeNode) -> NodeClient:
    return NodeClient(fake.url, name="delegate-1", timeout=3.0, max_retry_wait=3.0)


RATE_LIMITED = {"error": {"code": "rate_limited", "message": "too many requests from this client; slow down"}}


# -- records ----------------------------------------------------------------------------------------------


def test_chain_info_is_typed_and_keeps_the_whole_document(client: NodeClient) -> None:
    c = client.chain()
    assert (c.finalized_height, c.node_version, c.protocol_version, c.address) == (12, "1.0.1", 1, ADDR)
    assert c.participating and not c.paused and c.halted is None and c.min_fee == 10 and c.active_delegates == (ADDR,)
    assert c.finalized_timestamp_ms == 1_700_000_012_000
    assert c.to_json()["some_future_field"] == 1
    with pytest.raises(AttributeError):
        c.height = 1  # type: ignore[misc]


def test_full_block_and_range_read_give_one_block_record(client: NodeClient, fake: FakeNode) -> None:
    b = client.block(5)
    assert (b.height, b.hash, b.proposer, b.action_count, b.voters) == (5, f"{5:064x}", ADDR, 1, (ADDR,))
    assert b.state_root == HASH and b.actions == ({"type": "transfer"},) and b.timestamp == 1_700_000_005.0
    bs = client.blocks(3, 7)
    assert [x.height for x in bs] == [3, 4, 5, 6, 7]
    assert bs[0] == nodeapi.Block.from_json(header(3)) and bs[0].actions is None
    assert [p for m, p, _ in fake.requests if p.startswith("/v1/blocks?")] == ["/v1/blocks?from=3&to=7"]


def test_range_read_pages_until_the_tip_and_stops_there(client: NodeClient, fake: FakeNode) -> None:
    fake.range_limit = 4
    bs = client.blocks(2)
    assert [x.height for x in bs] == list(range(2, 13))
    assert [p for _, p, _ in fake.requests] == ["/v1/blocks?from=2", "/v1/blocks?from=6&to=12", "/v1/blocks?from=10&to=12"]
    assert [x.height for x in client.blocks(10, 99)] == [10, 11, 12]
    assert client.blocks(13) == [] and client.blocks(5, 4) == []
    with pytest.raises(ValueError, match="genesis"):
        client.blocks(0)


def test_range_read_falls_back_to_one_by_one_on_a_node_without_it(client: NodeClient, fake: FakeNode) -> None:
    fake.script("/v1/blocks", (404, {"error": {"code": "not_found", "message": "no such resource", "field": "path"}}, {}))
    assert [b.height for b in client.blocks(10)] == [10, 11, 12]
    assert [b.height for b in client.blocks(11, 20)] == [11, 12]


def test_accounts_delegates_buckets_actions_and_submissions(client: NodeClient, fake: FakeNode) -> None:
    fake.script("/v1/accounts/" + ADDR, (200, {"address": ADDR, "balance": "1000000000000000000000", "nonce": 3,
                                               "pending_nonce": 5, "unclaimed_rewards": "0", "height": 12}, {}))  # fmt: skip
    a = client.account(ADDR)
    assert a.balance == 10**21 and (a.nonce, a.pending_nonce, a.height) == (3, 5, 12)
    cand = {"name": "d1", "owner": ADDR, "operator": ADDR, "votes": "7", "active": True, "unclaimed_rewards": "2",
            "productivity": {"expected": 4, "produced": 3, "missed": 1}}  # fmt: skip
    fake.script("/v1/delegates", (200, {"epoch": 2, "active": [ADDR], "candidates": [cand]}, {}))
    ds = client.delegates(2)
    assert ds.epoch == 2 and ds.active == (ADDR,) and ds.candidates[0].votes == 7 and ds.candidates[0].missed == 1
    bucket = {
        "id": 4,
        "owner": ADDR,
        "candidate": ADDR,
        "amount": "100",
        "days": 7,
        "created_ms": 1,
        "unlock_ms": 2,
        "votes": "120",
    }
    fake.script("/v1/buckets", (200, {"buckets": [bucket], "truncated": False}, {}))
    assert client.buckets(owner=ADDR)[0].votes == 120
    assert fake.requests[-1][1] == f"/v1/buckets?owner={ADDR}"
    fake.script("/v1/buckets/4", (200, bucket, {}))
    assert client.bucket(4) == nodeapi.Bucket.from_json(bucket)
    assert client.bucket(5) is None  # 404
    receipt = {"status": "failed", "height": 9, "index": 0, "error": "x"}
    fake.script("/v1/actions/" + HASH, (200, {"hash": HASH, "status": "finalized", "receipt": receipt}, {}))
    st = client.action(HASH)
    assert st is not None and st.final and st.receipt is not None and not st.receipt.ok and st.receipt.error == "x"
    assert client.action("cd" * 32) is None  # the fake's 404 not_found
    fake.script("/v1/actions", (202, {"hash": HASH, "status": "pending"}, {}))
    assert client.submit({"type": "transfer"}) == HASH
    refused = {"error": {"code": "nonce_too_low", "message": "nonce 1 is used", "field": "nonce"}}
    fake.script("/v1/actions/batch", (200, {"accepted": 1, "results": [{"hash": HASH, "status": "pending"}, refused]}, {}))

    class Signed:
        def to_wire(self) -> dict[str, Any]:
            return {"signed": True}

    r = client.submit_batch([{"type": "transfer"}, Signed()])
    assert r.accepted == 1 and r.results[0].accepted and r.results[1].code == "nonce_too_low" and r.results[1].field == "nonce"
    assert fake.requests[-1] == ("POST", "/v1/actions/batch", {"actions": [{"type": "transfer"}, {"signed": True}]})


# -- errors -----------------------------------------------------------------------------------------------


def test_an_error_answer_names_the_node_the_url_and_the_nodes_code(client: NodeClient, fake: FakeNode) -> None:
    with pytest.raises(NodeApiError) as e:
        client.block(99)
    err = e.value
    assert isinstance(err, OpsError) and isinstance(err, OSError)  # `except OSError` (the node is down) still catches it
    assert (err.node, err.status, err.code, err.field) == ("delegate-1", 404, "not_found", "ref")
    assert err.url == fake.url + "/v1/blocks/99"
    assert str(err) == f"delegate-1: GET {fake.url}/v1/blocks/99: HTTP 404 not_found: block 99 does not exist"
    fake.script("/v1/actions", (422, {"error": {"code": "fee_too_low", "message": "fee below 10", "field": "fee"}}, {}))
    with pytest.raises(NodeApiError, match=r"delegate-1: POST .*/v1/actions: HTTP 422 fee_too_low: fee below 10") as e:
        client.submit({"type": "transfer"})
    assert e.value.field == "fee"


def test_a_node_that_is_not_there_is_a_node_api_error(fake: FakeNode) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = NodeClient(f"http://127.0.0.1:{port}")
    with pytest.raises(
        NodeApiError, match=rf"^127\.0\.0\.1:{port}: GET http://127\.0\.0\.1:{port}/v1/chain: not answering: .*refused"
    ):
        c.chain()
    assert c.try_chain() is None and not c.alive()


def test_a_node_that_never_answers_times_out_naming_it() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)  # accepts the connection, never answers: a frozen node
        port = s.getsockname()[1]
        c = NodeClient(f"http://127.0.0.1:{port}", name="frozen")
        t0 = time.monotonic()
        with pytest.raises(NodeApiError, match=r"^frozen: GET .*/v1/chain: no answer within 0\.3s"):
            c.chain(timeout=0.3)
        assert time.monotonic() - t0 < 3


def test_answers_that_are_not_json_or_not_the_documented_shape(client: NodeClient, fake: FakeNode) -> None:
    fake.script("/v1/chain", (200, b"<html>", {}))
    with pytest.raises(NodeApiError, match="not JSON"):
        client.chain()
    fake.script("/v1/chain", (200, {"height": 1}, {}))
    with pytest.raises(NodeApiError, match=r"delegate-1: GET .*/v1/chain: unexpected answer \(KeyError"):
        client.chain()


def test_metrics_are_the_exposition_text_and_errors_name_the_node(client: NodeClient, fake: FakeNode) -> None:
    text = b"# TYPE iotex_node_height gauge\niotex_node_height 12\n"
    fake.script("/metrics", (200, text, {}), (503, {"error": {"code": "unavailable", "message": "busy"}}, {}))
    assert client.metrics() == text.decode()
    with pytest.raises(NodeApiError, match=r"delegate-1: GET .*/metrics: HTTP 503 unavailable: busy") as e:
        client.metrics()
    assert e.value.status == 503


# -- rate limits ------------------------------------------------------------------------------------------


def test_429_with_retry_after_is_waited_out(client: NodeClient, fake: FakeNode) -> None:
    wait = (429, RATE_LIMITED, {"Retry-After": "0.2"})
    fake.script("/v1/chain", wait, wait, (200, CHAIN, {}))
    t0 = time.monotonic()
    assert client.chain().finalized_height == 12
    assert time.monotonic() - t0 >= 0.4
    assert client.rate_limited == 2 and len(fake.requests) == 3


def test_429_without_retry_after_backs_off(client: NodeClient, fake: FakeNode) -> None:
    fake.script("/v1/chain", (429, RATE_LIMITED, {}), (200, CHAIN, {}))
    assert client.chain().finalized_height == 12 and client.rate_limited == 1


def test_429_that_lasts_gives_a_clear_error_within_the_bound(fake: FakeNode) -> None:
    c = NodeClient(fake.url, name="delegate-1", max_retry_wait=1.0)
    fake.script("/v1/blocks", (429, RATE_LIMITED, {"Retry-After": "0.3"}))
    t0 = time.monotonic()
    with pytest.raises(
        NodeApiError, match=r"delegate-1: GET .*/v1/blocks\?from=1: rate limited \(HTTP 429.*gave up after \d tries"
    ) as e:
        c.blocks(1)
    assert time.monotonic() - t0 < 1.0 + 2  # the bound, and the requests' own time
    assert e.value.status == 429 and e.value.code == "rate_limited" and 2 <= len(fake.requests) <= 4


def test_a_retry_after_beyond_the_bound_is_not_slept(client: NodeClient, fake: FakeNode) -> None:
    fake.script("/v1/chain", (429, RATE_LIMITED, {"Retry-After": "3600"}))
    t0 = time.monotonic()
    with pytest.raises(NodeApiError, match=r"it asks to wait 3600\.0s more"):
        client.chain()
    assert time.monotonic() - t0 < 1.5 and len(fake.requests) == 1


def test_a_full_mempool_is_an_answer_not_a_pace_and_is_not_retried(client: NodeClient, fake: FakeNode) -> None:
    full = {"error": {"code": "mempool_full", "message": "the mempool is full"}}
    fake.script("/v1/actions", (429, full, {}))
    with pytest.raises(NodeApiError, match="HTTP 429 mempool_full") as e:
        client.submit({"type": "transfer"})
    assert e.value.code == "mempool_full" and len(fake.requests) == 1 and client.rate_limited == 0


def test_threads_sharing_a_client_wait_together(fake: FakeNode) -> None:
    c = NodeClient(fake.url, max_retry_wait=5.0)
    fake.limit_for = 0.6
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(c.chain)
        time.sleep(0.2)  # the first call got its 429 and waits: this one waits with it instead of asking
        assert c.chain().finalized_height == 12
        assert first.result().finalized_height == 12
    assert c.rate_limited == 1 and len(fake.requests) == 3
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(lambda _: c.chain().finalized_height, range(16))) == [12] * 16


def test_retry_after_as_an_http_date() -> None:
    from email.utils import formatdate

    assert nodeapi._retry_after(formatdate(time.time() + 30, usegmt=True)) == pytest.approx(30, abs=2)
    assert nodeapi._retry_after("1") == 1.0
    assert nodeapi._retry_after("soon") is None and nodeapi._retry_after(None) is None


# -- against a real node ----------------------------------------------------------------------------------


@pytest.fixture
def tight_node(tmp_path: Any) -> Iterator[Any]:
    """A 1-delegate node (in this process, on its own thread) that allows a burst of 4 requests, then 2 a second."""
    from tests.node.test_api import make_testnet
    from tests.node.test_api_fuzz import NodeThread

    net = make_testnet(tmp_path / "net", block_interval_ms=100)
    nt = NodeThread(net.homes[0], rate_limit_per_second=2.0, rate_limit_burst=4)
    try:
        yield nt
    finally:
        nt.stop()


@pytest.mark.slow
def test_the_gap_check_reads_a_long_window_in_one_request_and_the_client_rides_out_429(tight_node: Any) -> None:
    from types import SimpleNamespace

    from iotex_ops.network import Delegate
    from iotex_ops.runbook import checks

    deadline = time.monotonic() + 60
    while tight_node.height() < 40:
        assert time.monotonic() < deadline, f"the node finalized only {tight_node.height()} blocks"
        time.sleep(0.2)
    d = Delegate("d1", None, None, tight_node.node.api_url, "", "", "", "", "", "", "")  # type: ignore[arg-type]
    # 40 blocks, 10 times the node's burst: block by block (as before) it refused with 429; now it is one range read
    gaps = checks.block_gaps(SimpleNamespace(delegates=[d]), 1)  # type: ignore[arg-type]
    assert len(gaps) >= 39 and all(0 < g < 5 for _, g in gaps)
    assert d.api.rate_limited == 0
    # past its burst, the client waits as the node's Retry-After says and gets its answers
    c = NodeClient(tight_node.node.api_url, name="d1", max_retry_wait=10.0)
    t0 = time.monotonic()
    assert [c.block(h).height for h in range(1, 9)] == list(range(1, 9))
    assert c.rate_limited >= 1 and time.monotonic() - t0 >= 1.0
    # and with no time to wait, it says so, naming the node
    impatient = NodeClient(tight_node.node.api_url, name="d1", max_retry_wait=0.0)
    with pytest.raises(NodeApiError, match=r"^d1: GET .*: rate limited \(HTTP 429 too many requests from this client\)"):
        for h in range(1, 20):
            impatient.block(h)
