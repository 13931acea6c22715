"""Paging: the Events API v2 contract, the lab receiver's incidents, and a Pager that loses no page.

Everything runs against the real HTTPS receiver on 127.0.0.1 through the real `pagerduty` client; timings
are shrunk (backoff in tens of milliseconds) so that each test takes a second or two.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import pickle
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from iotex_ops.cli.pager import pager as pager_cli
from iotex_ops.paging import (
    InvalidEvent,
    LabCA,
    LabClient,
    Pager,
    PagingError,
    Receiver,
    ReceiverError,
    RoutingKey,
    RoutingKeyError,
    deliver,
    events,
    make_client,
    validate,
)
from iotex_ops.paging.events import MAX_DEDUP_KEY_CHARS, MAX_SUMMARY_CHARS

FAST = {"backoff_initial_s": 0.02, "backoff_max_s": 0.1, "request_timeout_s": 5.0}


# --- fixtures -------------------------------------------------------------------------------------------------


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    r = Receiver(tmp_path / "receiver").start()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def make_pager(tmp_path: Path) -> Iterator[Callable[..., Pager]]:
    """Make Pagers (fast backoff unless told otherwise); every one is closed at the end, also on failure."""
    pagers: list[Pager] = []

    def make(receiver: Receiver | None = None, db: Path | None = None, **kw: Any) -> Pager:
        if receiver is not None:
            kw.setdefault("routing_key", receiver.routing_key())
            kw.setdefault("url", receiver.url)
            kw.setdefault("ca_file", receiver.ca_file)
        p = Pager(db or tmp_path / "queue" / "pager.db", **{**FAST, **kw})
        pagers.append(p)
        return p

    yield make
    for p in pagers:
        p.close()


def post_raw(r: Receiver, body: bytes, path: str = "/v2/enqueue", headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """POST bytes to the receiver (over TLS, trusting the lab CA); (status, decoded JSON)."""
    conn = http.client.HTTPSConnection("127.0.0.1", r.port, context=r.ca.client_ssl_context(), timeout=5)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def post_event(r: Receiver, event: dict[str, Any]) -> tuple[int, Any]:
    return post_raw(r, json.dumps(event).encode())


def good_trigger(r: Receiver, **kw: Any) -> dict[str, Any]:
    return {"routing_key": r.routing_key().reveal(), **events.trigger("disk full", "d1", dedup_key="d1/disk", **kw)}


def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


# --- the contract -----------------------------------------------------------------------------------------------

KEY = "0123456789abcdef0123456789abcdef"


def _base() -> dict[str, Any]:
    return {"routing_key": KEY, **events.trigger("disk full", "d1", dedup_key="k")}


def _without(path: str) -> dict[str, Any]:
    doc = _base()
    *parents, last = path.split(".")
    target = doc
    for p in parents:
        target = target[p]
    del target[last]
    return doc


@pytest.mark.slow  # the HTTPS receiver on a socket
@pytest.mark.parametrize(
    ("doc", "field"),
    [
        (_without("routing_key"), "'routing_key'"),
        (_without("event_action"), "'event_action'"),
        (_without("payload"), "'payload'"),
        (_without("payload.summary"), "'payload.summary'"),
        (_without("payload.source"), "'payload.source'"),
        (_without("payload.severity"), "'payload.severity'"),
        ({"routing_key": KEY, "event_action": "acknowledge"}, "'dedup_key'"),
        ({"routing_key": KEY, "event_action": "resolve"}, "'dedup_key'"),
        ({**_base(), "event_action": "escalate"}, "'event_action' is invalid"),
        ({**_base(), "payload": {**_base()["payload"], "severity": "fatal"}}, "'payload.severity' is invalid"),
        (
            {**_base(), "payload": {**_base()["payload"], "summary": "x" * (MAX_SUMMARY_CHARS + 1)}},
            "'payload.summary' is too long",
        ),
        ({**_base(), "dedup_key": "k" * (MAX_DEDUP_KEY_CHARS + 1)}, "'dedup_key' is too long"),
        ({**_base(), "payload": {**_base()["payload"], "timestamp": "yesterday"}}, "'payload.timestamp'"),
        ({**_base(), "payload": {**_base()["payload"], "timestamp": "2015-07-17"}}, "'payload.timestamp'"),
        ({**_base(), "payload": {**_base()["payload"], "custom_details": "text"}}, "'payload.custom_details'"),
        ({**_base(), "links": [{"text": "no href"}]}, "'links[0].href'"),
        ({**_base(), "links": {"href": "x"}}, "'links' must be an array"),
        ({**_base(), "images": [{"href": "https://x", "alt": "no src"}]}, "'images[0].src'"),
    ],
)
def test_every_contract_violation_is_a_400_naming_the_field(receiver: Receiver, doc: dict[str, Any], field: str) -> None:
    errors = validate(doc)
    assert any(field in e for e in errors), errors
    if "routing_key" in doc:
        doc = {**doc, "routing_key": receiver.routing_key().reveal()}
    status, body = post_event(receiver, doc)
    assert status == 400
    assert body["status"] == "invalid event" and body["message"] == "Event object is invalid"
    assert any(field in e for e in body["errors"]), body


def test_valid_events_pass_the_contract() -> None:
    assert validate(_base()) == []
    full = events.trigger(
        "disk full",
        "d1",
        severity="warning",
        dedup_key="d1/disk",
        component="node",
        group="delegates",
        event_class="disk",
        custom_details={"free": "1%"},
        runbook_url="https://runbooks.example/disk",
        prometheus_url="https://prometheus.example/graph",
        images=[{"src": "https://img.example/a.png", "alt": "a"}],
        client="alertd",
        client_url="https://alertd.example",
        timestamp="2015-07-17T08:42:58.315+0000",
    )
    assert validate({"routing_key": KEY, **full}) == []
    assert [link["text"] for link in full["links"]] == ["Runbook", "Prometheus"]
    for ts in ("2015-07-17T08:42:58Z", "2015-07-17T08:42:58.315+00:00", events.now_iso()):
        assert validate({**_base(), "payload": {**_base()["payload"], "timestamp": ts}}) == []
    assert validate({"routing_key": KEY, **events.acknowledge("k")}) == []
    assert validate({"routing_key": KEY, **events.resolve("k")}) == []


def test_builder_truncates_a_long_summary_and_refuses_other_mistakes() -> None:
    e = events.trigger("x" * 5000, "d1")
    assert len(e["payload"]["summary"]) == MAX_SUMMARY_CHARS
    assert e["dedup_key"]  # generated here, so the caller can ack and resolve it later
    with pytest.raises(InvalidEvent, match=r"'payload.severity' is invalid"):
        events.trigger("s", "d1", severity="fatal")
    with pytest.raises(InvalidEvent, match=r"'dedup_key' is too long"):
        events.acknowledge("k" * 300)


@pytest.mark.slow  # the HTTPS receiver on a socket
def test_bad_json_and_unknown_routing_key_are_400(receiver: Receiver) -> None:
    status, body = post_raw(receiver, b"{not json")
    assert status == 400 and body["errors"] == ["JSON parse error"]
    status, body = post_raw(receiver, b"[1, 2]")
    assert status == 400 and "unrecognized" in body["errors"][0]
    wrong = {**good_trigger(receiver), "routing_key": "not-the-lab-key-0000"}
    status, body = post_event(receiver, wrong)
    assert status == 400 and body["errors"] == ["Invalid routing key"]
    assert "not-the-lab-key-0000" not in json.dumps(body)
    assert receiver.store.events() == []  # nothing rejected was recorded


# --- incidents ------------------------------------------------------------------------------------------------


@pytest.mark.slow  # the HTTPS receiver on a socket
def test_dedup_lifecycle_one_page_per_incident(receiver: Receiver) -> None:
    client = make_client(receiver.routing_key(), receiver.url, str(receiver.ca_file))
    try:
        first = deliver(client, events.trigger("d1 stopped finalizing", "d1", dedup_key="d1/finality"))
        assert first.accepted and first.status == 202 and first.dedup_key == "d1/finality"
        [inc] = receiver.store.incidents()
        assert (inc["status"], inc["event_count"], inc["summary"]) == ("triggered", 1, "d1 stopped finalizing")

        again = events.trigger("d1 still not finalizing", "d1", dedup_key="d1/finality", custom_details={"height": 7})
        assert deliver(client, again).accepted
        [same] = receiver.store.incidents()  # appended: no second incident, no second page
        assert same["id"] == inc["id"] and same["event_count"] == 2 and same["status"] == "triggered"
        assert same["summary"] == "d1 still not finalizing" and same["custom_details"] == {"height": 7}

        assert deliver(client, events.acknowledge("d1/finality")).accepted
        [acked] = receiver.store.incidents()
        assert acked["status"] == "acknowledged" and acked["acknowledged_at"] and not acked["resolved_at"]
        assert deliver(client, events.trigger("d1 worse", "d1", dedup_key="d1/finality")).accepted
        assert receiver.store.incidents()[0]["status"] == "acknowledged"  # a trigger does not re-open an ack

        assert deliver(client, events.resolve("d1/finality")).accepted
        [resolved] = receiver.store.incidents()
        assert resolved["status"] == "resolved" and resolved["resolved_at"]

        # ack/resolve of a resolved or unknown key: 202, nothing changes
        for e in (events.acknowledge("d1/finality"), events.resolve("d1/finality"), events.acknowledge("nobody")):
            assert deliver(client, e).accepted
        assert receiver.store.incidents() == [resolved]

        assert deliver(client, events.trigger("d1 stopped again", "d1", dedup_key="d1/finality")).accepted
        old, new = receiver.store.incidents()
        assert old == resolved and new["id"] != old["id"] and new["status"] == "triggered" and new["event_count"] == 1
    finally:
        client.close()

    effects = [(e["event_action"], e["effect"]) for e in receiver.store.events()]
    assert effects == [
        ("trigger", "opened"),
        ("trigger", "appended"),
        ("acknowledge", "acknowledged"),
        ("trigger", "appended"),
        ("resolve", "resolved"),
        ("acknowledge", "ignored"),
        ("resolve", "ignored"),
        ("acknowledge", "ignored"),
        ("trigger", "opened"),
    ]


@pytest.mark.slow  # the HTTPS receiver on a socket
def test_trigger_without_dedup_key_gets_one_and_state_survives_a_restart(tmp_path: Path) -> None:
    r = Receiver(tmp_path / "receiver").start()
    try:
        doc = good_trigger(r)
        del doc["dedup_key"]
        status, body = post_event(r, doc)
        assert status == 202 and body["status"] == "success" and body["message"] == "Event processed"
        generated = body["dedup_key"]
        assert generated and r.store.incidents()[0]["dedup_key"] == generated
        status, _ = post_raw(r, json.dumps(good_trigger(r)).encode(), path="/enqueue")  # the short path works too
        assert status == 202
    finally:
        r.stop()
    assert not (tmp_path / "receiver" / "receiver.json").exists()
    r2 = Receiver(tmp_path / "receiver").start()
    try:
        assert [i["dedup_key"] for i in r2.store.incidents()] == [generated, "d1/disk"]
        assert len(r2.store.events()) == 2
    finally:
        r2.stop()


@pytest.mark.slow  # the HTTPS receiver on a socket
def test_lab_endpoints_need_the_admin_token(receiver: Receiver) -> None:
    conn = http.client.HTTPSConnection("127.0.0.1", receiver.port, context=receiver.ca.client_ssl_context(), timeout=5)
    try:
        for auth in (None, "Bearer wrong"):
            conn.request("GET", "/incidents", headers={"Authorization": auth} if auth else {})
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 401
            conn.close()
    finally:
        conn.close()
    status, _ = post_raw(receiver, b'{"status": 500, "count": 1}', path="/_lab/faults")
    assert status == 401
    lab = LabClient.for_dir(receiver.dir)
    assert lab.incidents() == [] and lab.events() == []
    assert lab.set_fault(503, seconds=5)["status"] == 503
    assert [f["status"] for f in lab.faults()] == [503]
    lab.clear_faults()
    assert lab.faults() == []
    with pytest.raises(ReceiverError, match="HTTP 400"):
        lab.set_fault(302, count=1)


@pytest.mark.slow  # the HTTPS receiver on a socket
def test_a_stalled_client_blocks_neither_others_nor_stop(tmp_path: Path) -> None:
    r = Receiver(tmp_path / "receiver").start()
    stalled = socket.create_connection(("127.0.0.1", r.port))  # connects, never says a word (no TLS handshake)
    try:
        t0 = time.monotonic()
        status, _ = post_event(r, good_trigger(r))
        assert status == 202 and time.monotonic() - t0 < 1.0
        status, _ = post_raw(r, b"x" * 10, headers={"Content-Length": str(2 * 1024 * 1024)})
        assert status == 413
        t0 = time.monotonic()
        r.stop()
        assert time.monotonic() - t0 < 2.0  # not the handler's 30 s read timeout
    finally:
        stalled.close()
        r.stop()


def test_receiver_binds_loopback_only(tmp_path: Path) -> None:
    with pytest.raises(ReceiverError, match="loopback"):
        Receiver(tmp_path, host="0.0.0.0")  # noqa: S104 - the point of the test


# --- HTTPS ----------------------------------------------------------------------------------------------------


@pytest.mark.slow  # the HTTPS receiver on a socket
def test_lab_ca_is_trusted_by_its_clients_only(receiver: Receiver, tmp_path: Path) -> None:
    key = receiver.routing_key()
    trusting = make_client(key, receiver.url, str(receiver.ca_file))
    untrusting = make_client(key, receiver.url, None)  # the system's CAs
    try:
        assert deliver(trusting, events.trigger("s", "d1", dedup_key="tls")).accepted
        refused = deliver(untrusting, events.trigger("s", "d1", dedup_key="tls2"))
        assert refused.kind == "retry" and refused.status is None
        assert "CERTIFICATE_VERIFY_FAILED" in refused.message
    finally:
        trusting.close()
        untrusting.close()
    with pytest.raises(ssl.SSLCertVerificationError):
        post_raw_with_context(receiver, ssl.create_default_context())
    assert [i["dedup_key"] for i in receiver.store.incidents()] == ["tls"]

    # idempotent: the same CA comes back; keys are the owner's only
    ca_pem = receiver.ca_file.read_bytes()
    again = LabCA.create(receiver.ca.dir)
    assert again.ca_file.read_bytes() == ca_pem
    for f in (again.ca_key_file, again.key_file):
        assert f.stat().st_mode & 0o777 == 0o600
    with pytest.raises(PagingError, match="http"):
        make_client(key, "http://127.0.0.1:1/v2/enqueue")


def post_raw_with_context(r: Receiver, ctx: ssl.SSLContext) -> None:
    conn = http.client.HTTPSConnection("127.0.0.1", r.port, context=ctx, timeout=5)
    try:
        conn.request("POST", "/v2/enqueue", body=b"{}")
    finally:
        conn.close()


# --- the client makes one request per call ----------------------------------------------------------------------


@pytest.mark.slow  # the HTTPS receiver on a socket
@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_client_makes_exactly_one_request_per_call(receiver: Receiver, status: int) -> None:
    # the library alone would retry 429 forever and 5xx several times, with sleeps
    receiver.set_fault(status, count=50, retry_after_s=7)
    client = make_client(receiver.routing_key(), receiver.url, str(receiver.ca_file))
    try:
        t0 = time.monotonic()
        outcome = deliver(client, events.trigger("s", "d1", dedup_key="one"))
        assert time.monotonic() - t0 < 1.0
    finally:
        client.close()
    assert outcome.kind == "retry" and outcome.status == status and outcome.retry_after_s == 7
    assert receiver.stats() == {"requests": 1, "by_status": {str(status): 1}}


@pytest.mark.slow  # the HTTPS receiver on a socket
def test_client_network_error_is_one_quick_attempt(receiver: Receiver) -> None:
    url, key = receiver.url, receiver.routing_key()
    receiver.stop()
    client = make_client(key, url, str(receiver.ca_file))
    try:
        t0 = time.monotonic()
        outcome = deliver(client, events.trigger("s", "d1", dedup_key="net"))
        assert time.monotonic() - t0 < 1.0  # no sleeps between library retries
    finally:
        client.close()
    assert outcome.kind == "retry" and outcome.status is None and "ConnectError" in outcome.message


# --- the Pager ------------------------------------------------------------------------------------------------


def _incident_events(n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(n):
        out.append(events.trigger(f"incident {i}", "d1", dedup_key=f"inc-{i}", custom_details={"i": i}))
        out.append(events.acknowledge(f"inc-{i}"))
        out.append(events.resolve(f"inc-{i}"))
    return out


def _received(r: Receiver) -> list[tuple[str, str]]:
    return [(e["event_action"], e["dedup_key"]) for e in r.store.events()]


@pytest.mark.slow  # the HTTPS receiver on a socket
def test_pager_rides_out_429_then_500_and_delivers_everything_in_order(
    receiver: Receiver, make_pager: Callable[..., Pager]
) -> None:
    receiver.set_fault(429, count=3)
    receiver.set_fault(500, seconds=0.6)  # from the first 500 on
    p = make_pager(receiver)
    sent = _incident_events(4)
    t0 = time.monotonic()
    for e in sent:
        p.enqueue(e)
    assert p.flush(10)
    elapsed = time.monotonic() - t0

    assert _received(receiver) == [(e["event_action"], e["dedup_key"]) for e in sent]
    assert {i["status"] for i in receiver.store.incidents()} == {"resolved"}
    stats, served = p.stats(), receiver.stats()
    failed = served["requests"] - served["by_status"]["202"]
    assert stats["sent"] == 12 and stats["dead"] == 0 and stats["pending"] == 0
    assert stats["retries"] == failed and stats["attempts"] == served["requests"]
    assert elapsed >= 0.6  # it waited the outage out...
    # ...backing off: waits of 0.05..0.1 s at the cap allow at most ~13 attempts in 0.6 s; a spin makes thousands
    assert served["by_status"]["429"] == 3 and 4 <= served["by_status"]["500"] <= 16


@pytest.mark.slow  # the HTTPS receiver on a socket
def test_enqueue_from_many_threads_keeps_commit_order(receiver: Receiver, make_pager: Callable[..., Pager]) -> None:
    p = make_pager(receiver)
    ids: list[tuple[int, int, int]] = []
    lock = threading.Lock()

    def work(t: int) -> None:
        for n in range(15):
            i = p.enqueue(events.trigger(f"t{t} n{n}", "d1", dedup_key=f"t{t}", custom_details={"t": t, "n": n}))
            with lock:
                ids.append((i, t, n))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert p.flush(15)
    expected = [(t, n) for _, t, n in sorted(ids)]
    details = [e["event"]["payload"]["custom_details"] for e in receiver.store.events()]
    got = [(d["t"], d["n"]) for d in details]
    assert got == expected and len(got) == 90
    assert [i["event_count"] for i in receiver.store.incidents()] == [15] * 6


@pytest.mark.slow  # the HTTPS receiver on a socket
def test_retry_after_is_honoured_within_its_cap(receiver: Receiver, make_pager: Callable[..., Pager]) -> None:
    receiver.set_fault(429, count=1, retry_after_s=0.4)
    p = make_pager(receiver)
    t0 = time.monotonic()
    p.enqueue(events.trigger("s", "d1", dedup_key="ra"))
    assert p.flush(5)
    assert time.monotonic() - t0 >= 0.38  # far above the 0.02 s backoff it would otherwise use

    receiver.set_fault(429, count=1, retry_after_s=3600)
    p2 = make_pager(receiver, db=p.db_path.with_name("capped.db"), max_retry_after_s=0.2)
    t0 = time.monotonic()
    p2.enqueue(events.trigger("s", "d1", dedup_key="ra2"))
    assert p2.flush(5) and time.monotonic() - t0 < 2


@pytest.mark.slow  # the HTTPS receiver on a socket
def test_permanently_failing_endpoint_gives_up_at_the_bound_without_spinning(
    receiver: Receiver, make_pager: Callable[..., Pager], caplog: pytest.LogCaptureFixture
) -> None:
    receiver.set_fault(503, seconds=60)
    p = make_pager(receiver, give_up_after_s=0.5)
    t0 = time.monotonic()
    for i in range(3):
        p.enqueue(events.trigger(f"s{i}", "d1", dedup_key=f"k{i}"))
    assert p.flush(10)
    elapsed = time.monotonic() - t0
    stats, served = p.stats(), receiver.stats()
    assert stats["sent"] == 0 and stats["dead"] == 3 and stats["dead_letters"] == 3 and stats["pending"] == 0
    assert elapsed >= 0.5
    # the first event is tried until its 0.5 s are up (backoff 0.02 s doubling to 0.1 s: 7 to 12 attempts);
    # the other two have waited as long by then and get one attempt each, still spaced by the backoff
    assert 3 <= served["requests"] <= 20, served
    assert served["requests"] == stats["attempts"]
    dead = p.dead_letters()
    assert [d["event"]["dedup_key"] for d in dead] == ["k2", "k1", "k0"]
    assert all(d["status"] == 503 and "gave up after" in d["reason"] for d in dead)
    assert any(r.levelno == logging.ERROR and "gave up on event" in r.getMessage() for r in caplog.records)


@pytest.mark.slow  # the HTTPS receiver on a socket
def test_max_attempts_bounds_each_event_exactly(receiver: Receiver, make_pager: Callable[..., Pager]) -> None:
    receiver.set_fault(500, seconds=60)
    p = make_pager(receiver, max_attempts=3)
    for i in range(3):
        p.enqueue(events.trigger(f"s{i}", "d1", dedup_key=f"k{i}"))
    assert p.flush(10)
    assert receiver.stats()["requests"] == 9 and p.stats()["dead"] == 3
    assert [d["attempts"] for d in p.dead_letters()] == [3, 3, 3]


@pytest.mark.slow  # the HTTPS receiver on a socket
def test_400_is_dead_lettered_and_the_line_moves_on(
    receiver: Receiver, make_pager: Callable[..., Pager], caplog: pytest.LogCaptureFixture
) -> None:
    receiver.set_fault(400, count=1)
    p = make_pager(receiver)
    sent = _incident_events(2)
    for e in sent:
        p.enqueue(e)
    assert p.flush(5)
    assert receiver.stats()["requests"] == 6  # the 400 was not retried
    assert _received(receiver) == [(e["event_action"], e["dedup_key"]) for e in sent[1:]]
    [dead] = p.dead_letters()
    assert dead["status"] == 400 and dead["attempts"] == 1 and "rejected by a lab fault" in dead["reason"]
    assert dead["event"] == sent[0]
    assert any(r.levelno == logging.ERROR and "rejected" in r.getMessage() for r in caplog.records)


@pytest.mark.slow  # the HTTPS receiver on a socket
def test_bad_events_are_refused_at_enqueue(receiver: Receiver, make_pager: Callable[..., Pager]) -> None:
    p = make_pager(receiver)
    with pytest.raises(InvalidEvent, match=r"'payload' is missing"):
        p.enqueue({"event_action": "trigger", "dedup_key": "k"})
    with pytest.raises(InvalidEvent, match=r"'dedup_key' is required"):
        p.enqueue({"event_action": "resolve"})
    with pytest.raises(InvalidEvent, match="routing_key"):
        p.enqueue({"routing_key": "x", **events.resolve("k")})
    assert p.pending() == 0 and receiver.stats()["requests"] == 0


CRASHING_PRODUCER = """
import os, sys
from iotex_ops.paging import Pager, RoutingKey, events
p = Pager(sys.argv[1], RoutingKey(sys.argv[2]), sys.argv[3], ca_file=sys.argv[4], backoff_initial_s=5, backoff_max_s=5)
for i in range(3):
    p.enqueue(events.trigger(f"crash {i}", "d1", dedup_key=f"crash-{i}"))
print(p.pending(), flush=True)
os._exit(0)  # a crash: no close(), no flush
"""


@pytest.mark.slow  # the HTTPS receiver on a socket
def test_events_left_by_a_crashed_process_are_delivered(
    tmp_path: Path, receiver: Receiver, make_pager: Callable[..., Pager]
) -> None:
    url, key = receiver.url, receiver.routing_key()
    receiver.stop()  # PagerDuty unreachable while the producer runs
    db = tmp_path / "crash" / "pager.db"
    out = subprocess.run(
        [sys.executable, "-c", CRASHING_PRODUCER, str(db), key.reveal(), url, str(receiver.ca_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "3"
    receiver.start()  # back on the same port
    p = make_pager(receiver, db=db)
    assert p.flush(5)
    assert _received(receiver) == [("trigger", f"crash-{i}") for i in range(3)]


@pytest.mark.slow  # the HTTPS receiver on a socket
def test_closed_pager_keeps_its_rows_and_one_db_has_one_pager(
    tmp_path: Path, receiver: Receiver, make_pager: Callable[..., Pager]
) -> None:
    receiver.set_fault(503, count=1000)
    p = make_pager(receiver)
    p.enqueue(events.trigger("s", "d1", dedup_key="kept"))
    with pytest.raises(PagingError, match="another Pager"):
        make_pager(receiver)
    wait_for(lambda: receiver.stats()["requests"] >= 1)
    p.close()
    with pytest.raises(PagingError, match="closed"):
        p.enqueue(events.resolve("kept"))
    receiver.clear_faults()
    p2 = make_pager(receiver)
    assert p2.pending() == 1 and p2.flush(5)
    assert _received(receiver) == [("trigger", "kept")]


@pytest.mark.slow  # the HTTPS receiver on a socket
def test_delivered_history_is_bounded(receiver: Receiver, make_pager: Callable[..., Pager]) -> None:
    p = make_pager(receiver, keep_delivered=5)
    for i in range(12):
        p.enqueue(events.trigger("s", "d1", dedup_key=f"h{i}"))
    assert p.flush(5)
    db = p.db_path
    p.close()
    p = make_pager(receiver, db=db, keep_delivered=5)  # prunes on open (and every 100 settlements)
    p.close()
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT dedup_key FROM delivered ORDER BY id").fetchall()
    conn.close()
    assert [r[0] for r in rows] == [f"h{i}" for i in range(7, 12)]


# --- the routing key stays secret -------------------------------------------------------------------------------


@pytest.mark.slow  # the HTTPS receiver on a socket
def test_routing_key_never_leaks(
    tmp_path: Path, receiver: Receiver, make_pager: Callable[..., Pager], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = receiver.routing_key()
    secret = key.reveal()
    assert secret not in repr(key) and str(key) == "***" and f"{key}" == "***" and secret not in f"{key!r}"

    receiver.set_fault(429, count=2)
    receiver.set_fault(400, count=1)
    p = make_pager(receiver)
    for e in _incident_events(2):
        p.enqueue(e)
    assert p.flush(5)
    wrong = RoutingKey("0000wrongkey0000wrongkey0000dead")
    pw = make_pager(receiver, db=tmp_path / "wrong.db", routing_key=wrong)
    pw.enqueue(events.trigger("s", "d1", dedup_key="w"))
    assert pw.flush(5) and "Invalid routing key" in pw.dead_letters()[0]["reason"]
    texts = [caplog.text, repr(p), repr(pw), json.dumps(p.stats()), json.dumps(p.dead_letters()), json.dumps(pw.dead_letters())]
    with pytest.raises(InvalidEvent) as exc_info:
        p.enqueue({"routing_key": secret, **events.resolve("k")})
    texts.append(str(exc_info.value))
    p.close()
    pw.close()
    for t in texts:
        assert secret not in t and wrong.reveal() not in t
    for f in tmp_path.rglob("*.db*"):  # the queues, their WAL, and the receiver's state
        data = f.read_bytes()
        assert secret.encode() not in data and wrong.reveal().encode() not in data, f

    runner = CliRunner()
    for args in (
        ["send", "trigger", "--dedup-key", "cli", "--dir", str(receiver.dir), "--json"],
        ["send", "resolve", "--dedup-key", "cli", "--dir", str(receiver.dir)],
        ["incidents", "--dir", str(receiver.dir), "--json"],
        ["events", "--dir", str(receiver.dir), "--json"],
    ):
        result = runner.invoke(pager_cli, args, env={"PAGERDUTY_ROUTING_KEY": None})
        assert result.exit_code == 0, result.output
        assert secret not in result.output
    receiver.set_fault(503, count=1)
    result = runner.invoke(pager_cli, ["send", "trigger", "--dir", str(receiver.dir)], env={"PAGERDUTY_ROUTING_KEY": None})
    assert result.exit_code == 2 and "503" in result.output and secret not in result.output


def test_routing_key_loading_names_the_source_never_the_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    value = "5ecret5ecret5ecret5ecret5ecret00"
    f = tmp_path / "key"
    f.write_text(value + "\n")
    f.chmod(0o644)
    with pytest.raises(RoutingKeyError, match="accessible by other users") as exc_info:
        RoutingKey.from_file(f)
    assert str(f) in str(exc_info.value) and value not in str(exc_info.value)
    f.chmod(0o640)
    assert RoutingKey.from_file(f).reveal() == value
    assert "accessible by its group" in caplog.text
    f.chmod(0o600)
    assert RoutingKey.from_file(f).origin == str(f)
    with pytest.raises(RoutingKeyError, match=str(tmp_path / "missing")):
        RoutingKey.from_file(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    empty.chmod(0o600)
    with pytest.raises(RoutingKeyError, match="empty"):
        RoutingKey.from_file(empty)

    monkeypatch.delenv("PAGERDUTY_ROUTING_KEY", raising=False)
    with pytest.raises(RoutingKeyError, match="PAGERDUTY_ROUTING_KEY"):
        RoutingKey.load()
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", value)
    key = RoutingKey.load()
    assert key.reveal() == value and key.origin == "$PAGERDUTY_ROUTING_KEY" and value not in repr(key)
    with pytest.raises(TypeError):
        pickle.dumps(key)


# --- the CLI --------------------------------------------------------------------------------------------------


@pytest.mark.slow  # the HTTPS receiver on a socket
def test_cli_incidents_json_shape_and_bad_dir(receiver: Receiver) -> None:
    client = make_client(receiver.routing_key(), receiver.url, str(receiver.ca_file))
    try:
        assert deliver(client, events.trigger("d1 down", "d1", dedup_key="d1")).accepted
        assert deliver(client, events.trigger("d2 down", "d2", dedup_key="d2")).accepted
        assert deliver(client, events.acknowledge("d2")).accepted
    finally:
        client.close()
    runner = CliRunner()
    result = runner.invoke(pager_cli, ["incidents", "--dir", str(receiver.dir), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [i["dedup_key"] for i in doc] == ["d1", "d2"]
    for i in doc:
        assert {"id", "dedup_key", "status", "summary", "severity", "source", "created_at", "acknowledged_at",
                "resolved_at", "updated_at", "event_count", "custom_details", "links"} <= set(i)  # fmt: skip
    result = runner.invoke(pager_cli, ["incidents", "--dir", str(receiver.dir), "--status", "acknowledged", "--json"])
    assert [i["dedup_key"] for i in json.loads(result.stdout)] == ["d2"]
    result = runner.invoke(pager_cli, ["incidents", "--dir", str(receiver.dir)])
    assert result.exit_code == 0 and "d1 down" in result.stdout

    # over HTTPS, with the admin token
    args = ["--url", receiver.base_url, "--ca-file", str(receiver.ca_file), "--token-file", str(receiver.admin_token_file)]
    result = runner.invoke(pager_cli, ["incidents", *args, "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout) == doc

    for bad in (receiver.dir / "nope", receiver.ca.dir):
        result = runner.invoke(pager_cli, ["incidents", "--dir", str(bad)])
        assert result.exit_code == 2 and result.stderr.startswith("error: "), result.output
        assert "Traceback" not in result.output


@pytest.mark.slow  # the HTTPS receiver on a socket
def test_cli_faults_and_send(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PAGERDUTY_ROUTING_KEY", raising=False)
    runner = CliRunner()
    d = ["--dir", str(receiver.dir)]
    result = runner.invoke(pager_cli, ["faults", *d, "--status", "429", "--count", "1", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)[0]["status"] == 429
    result = runner.invoke(pager_cli, ["send", "trigger", "--dedup-key", "c1", *d])
    assert result.exit_code == 2 and "429" in result.stderr
    result = runner.invoke(pager_cli, ["send", "trigger", "--dedup-key", "c1", "--detail", "host=d1", *d, "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["dedup_key"] == "c1"
    result = runner.invoke(pager_cli, ["send", "acknowledge", *d])
    assert result.exit_code == 2 and "needs --dedup-key" in result.stderr
    result = runner.invoke(pager_cli, ["faults", *d, "--status", "302", "--count", "1"])
    assert result.exit_code == 2 and "error:" in result.stderr
    result = runner.invoke(pager_cli, ["faults", *d, "--clear"])
    assert result.exit_code == 0 and "no faults" in result.stdout
    result = runner.invoke(pager_cli, ["send", "trigger", "--dir", str(receiver.dir / "none")])
    assert result.exit_code == 2 and "no receiver is running" in result.stderr
    [inc] = receiver.store.incidents()
    assert inc["custom_details"] == {"host": "d1"}


@pytest.mark.slow  # the HTTPS receiver on a socket
def test_cli_receiver_runs_until_sigterm(tmp_path: Path) -> None:
    d = tmp_path / "pager"
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "iotex_ops.cli", "pager", "receiver", "--dir", str(d)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        wait_for(lambda: (d / "receiver.json").exists() or proc.poll() is not None, timeout=20)
        info = json.loads((d / "receiver.json").read_text())
        assert info["pid"] == proc.pid and info["url"].startswith("https://127.0.0.1:")
        token = (d / "admin_token").read_text().strip()
        assert info["admin_token_file"] == str(d / "admin_token") and token not in json.dumps(info)
        lab = LabClient.for_dir(d)
        assert lab.incidents() == []
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "receiver stopped" in out and not (d / "receiver.json").exists()
