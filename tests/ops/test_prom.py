"""The Prometheus access point against a tiny fake: rows back, errors naming the server and the query."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from iotex_ops import prom
from iotex_ops.errors import OpsError
from iotex_ops.runbook.context import PrometheusUnavailable
from iotex_ops.testing import FakePrometheus

# real HTTP servers on loopback (in-process): the slow tier, as the unit-tier guard requires
pytestmark = pytest.mark.slow


def _series(query: str, t: float, start: float) -> float:
    if query == "up":
        return 1
    raise AssertionError(f"unexpected query {query!r}")


@pytest.fixture
def fake() -> Iterator[FakePrometheus]:
    with FakePrometheus(_series) as server:
        server.labels = {"delegate": "d1"}
        yield server


@pytest.fixture
def url(fake: FakePrometheus) -> str:
    return fake.url


@pytest.fixture
def closed_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_query_rows_and_readiness(url: str) -> None:
    with prom.Prometheus(url + "/", retries=0) as p:
        assert p.url == url
        rows = p.query("up")
        assert [(r["metric"], r["value"][1]) for r in rows] == [({"delegate": "d1"}, "1")]
        assert p.ready()


def test_an_error_answer_names_the_server_and_the_query(fake: FakePrometheus, url: str) -> None:
    fake.status = 400
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
