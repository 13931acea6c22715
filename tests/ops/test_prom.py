"""The Prometheus access point against a tiny fake: rows back, errors naming the server and the query."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from iotex_ops import prom
from iotex_ops.errors import OpsError
from iotex_ops.runbook.context import PrometheusUnavailable

# real HTTP servers on loopback (in-process): the slow tier, as the unit-tier guard requires
pytestmark = pytest.mark.slow


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        u = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        if u.path == "/-/ready":
            self._send(200, b"Prometheus Server is Ready.\n")
        elif u.path == "/api/v1/query" and q.get("query") == "up":
            rows = [{"metric": {"delegate": "d1"}, "value": [1.0, "1"]}]
            self._send(200, json.dumps({"status": "success", "data": {"resultType": "vector", "result": rows}}).encode())
        else:
            self._send(400, json.dumps({"status": "error", "errorType": "bad_data", "error": "parse error"}).encode())

    def _send(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def closed_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_query_rows_and_readiness(url: str) -> None:
    with prom.Prometheus(url + "/", retries=0) as p:
        assert p.url == url
        assert p.query("up") == [{"metric": {"delegate": "d1"}, "value": [1.0, "1"]}]
        assert p.ready()


def test_an_error_answer_names_the_server_and_the_query(url: str) -> None:
    with prom.Prometheus(url, retries=0) as p, pytest.raises(prom.PrometheusError) as e:
        p.query("up{")
    err = e.value
    assert isinstance(err, OpsError) and not err.unreachable
    assert str(err).startswith(f"Prometheus at {url}: query 'up{{' failed: ") and "400" in err.reason


def test_an_unreachable_server_says_so(closed_url: str) -> None:
    p = prom.Prometheus(closed_url, timeout=2, retries=0)
    with pytest.raises(prom.PrometheusError, match=r"ConnectionError") as e:
        p.query_range("up", 0.0, 60.0)
    assert e.value.unreachable and e.value.url == closed_url
    assert not p.ready() and not prom.ready(closed_url)
    assert issubclass(PrometheusUnavailable, prom.PrometheusError)  # the run context's error is one of these
