"""PagerDuty change events (a drill's start and end): the builder and the contract, checked against the
reference OpenAPI document; the receiver's record of them and `pager events`; and end to end (slow): the Pager
queues a change event, the `pagerduty` client posts it to /v2/change/enqueue, the lab receiver validates it,
keeps it, and opens no incident."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from iotex_ops.cli.pager import pager as pager_cli
from iotex_ops.paging import InvalidEvent, Pager, Receiver, events
from iotex_ops.paging.events import MAX_SUMMARY_CHARS, validate, validate_change, validate_queued, wire_change
from iotex_ops.paging.receiver import ReceiverStore, read_state

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "pagerduty-events-v2.openapi.json"
KEY = "k" * 32


def drill_change(**kw: Any) -> dict[str, Any]:
    return events.change(
        "drill first-aid started (run 20261201T040000Z-first-aid-weekly)",
        "iotex-ops",
        custom_details={"run_id": "r1", "drill": "first-aid", "hosts": ["node0", "node1"], "silences": ["s1"]},
        links=[{"href": "file:///var/lib/iotex-ops/runs/r1/report.html", "text": "report"}],
        **kw,
    )


def test_the_builder_makes_a_valid_change_event_queued_with_its_mark() -> None:
    e = drill_change(timestamp="2026-12-01T04:00:00.000Z")
    assert e["event_action"] == "change" and "dedup_key" not in e
    assert validate_queued(e) == []
    wire = wire_change(e)
    assert "event_action" not in wire and validate_change({"routing_key": KEY, **wire}) == []
    assert wire["payload"]["custom_details"]["run_id"] == "r1"
    # a change event is not an alert event: /v2/enqueue refuses it
    assert any("'event_action' is invalid" in x for x in validate({"routing_key": KEY, **e}))
    long = events.change("x" * 5000)
    assert len(long["payload"]["summary"]) == MAX_SUMMARY_CHARS and "source" not in long["payload"]


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"payload": {"summary": "s"}}, "'routing_key'"),
        ({"routing_key": KEY}, "'payload' is missing"),
        ({"routing_key": KEY, "payload": "s"}, "'payload' must be an object"),
        ({"routing_key": KEY, "payload": {"source": "x"}}, "'payload.summary' is missing"),
        ({"routing_key": KEY, "payload": {"summary": "s" * 1025}}, "'payload.summary' is too long"),
        ({"routing_key": KEY, "payload": {"summary": "s", "source": 3}}, "'payload.source' must be a string"),
        ({"routing_key": KEY, "payload": {"summary": "s", "timestamp": "yesterday"}}, "'payload.timestamp'"),
        ({"routing_key": KEY, "payload": {"summary": "s", "custom_details": [1]}}, "'payload.custom_details'"),
        ({"routing_key": KEY, "payload": {"summary": "s"}, "links": [{"text": "no href"}]}, "'links[0].href'"),
        ({"routing_key": KEY, "payload": {"summary": "s"}, "images": {}}, "'images' must be an array"),
    ],
)
def test_every_change_contract_violation_names_the_field(doc: dict[str, Any], field: str) -> None:
    errors = validate_change(doc)
    assert any(field in e for e in errors), errors


def test_the_builder_refuses_a_bad_change_event() -> None:
    with pytest.raises(InvalidEvent, match=r"'payload.summary' is missing or blank"):
        events.change(" ")
    with pytest.raises(InvalidEvent, match=r"'links\[0\].href'"):
        events.change("s", links=[{"text": "x"}])


@pytest.mark.skipif(not REFERENCE.is_file(), reason="the shared reference documents are not beside the checkout")
def test_the_contract_follows_the_reference_document() -> None:
    doc = json.loads(REFERENCE.read_text())
    op = doc["paths"]["/change/enqueue"]["post"]
    body = op["requestBody"]["content"]["application/json"]
    schema, examples = body["schema"], body["examples"]
    # the documented examples are accepted
    for name, example in examples.items():
        assert validate_change(example["value"]) == [], name
    # each required field, removed, is named
    example = next(iter(examples.values()))["value"]
    for field in schema["required"]:
        errors = validate_change({k: v for k, v in example.items() if k != field})
        assert any(f"'{field}'" in e for e in errors), (field, errors)
    payload_schema = doc["components"]["schemas"]["ChangeEventPayload"]
    for field in payload_schema["required"]:
        bad = {**example, "payload": {k: v for k, v in example["payload"].items() if k != field}}
        assert any(f"'payload.{field}'" in e for e in validate_change(bad)), field
    # each payload property of a wrong type is named
    wrong = {"string": 12345, "object": ["not", "an", "object"]}
    for field, spec in payload_schema["properties"].items():
        bad = {**example, "payload": {**example["payload"], field: wrong[spec["type"]]}}
        assert any(f"'payload.{field}'" in e for e in validate_change(bad)), field
    # the receiver serves the path the document names, under its server's /v2
    assert doc["servers"][0]["url"].endswith("/v2")


def test_the_receiver_store_keeps_change_events_apart_from_incidents(tmp_path: Path) -> None:
    store = ReceiverStore(tmp_path / "receiver.db")
    try:
        seq = store.record_change(wire_change(drill_change()))
        store.apply(events.trigger("page", "d1", dedup_key="d1/x"))
        assert seq == 1 and [c["summary"] for c in store.changes()] == [drill_change()["payload"]["summary"]]
        assert len(store.incidents()) == 1 and len(store.events()) == 1  # the change opened nothing
    finally:
        store.close()
    pager_dir = tmp_path
    res = CliRunner().invoke(pager_cli, ["events", "--dir", str(pager_dir), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert sorted(r["event_action"] for r in rows) == ["change", "trigger"]
    change = next(r for r in rows if r["event_action"] == "change")
    assert change["dedup_key"] is None and change["event"]["payload"]["custom_details"]["run_id"] == "r1"
    text = CliRunner().invoke(pager_cli, ["events", "--dir", str(pager_dir)]).output
    assert "change events (1): announced, paging nobody" in text and "r1" in text
    readonly = read_state(pager_dir)
    try:
        assert len(readonly.changes()) == 1
    finally:
        readonly.close()


# -- end to end (slow: the HTTPS receiver on a socket) -----------------------------------------------------------


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    r = Receiver(tmp_path / "receiver").start()
    try:
        yield r
    finally:
        r.stop()


def _post(r: Receiver, path: str, doc: Any) -> tuple[int, Any]:
    conn = http.client.HTTPSConnection("127.0.0.1", r.port, context=r.ca.client_ssl_context(), timeout=5)
    try:
        conn.request("POST", path, body=json.dumps(doc).encode(), headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


@pytest.mark.slow
def test_the_receiver_accepts_validates_and_keeps_change_events(receiver: Receiver) -> None:
    key = receiver.routing_key().reveal()
    status, body = _post(receiver, "/v2/change/enqueue", {"routing_key": key, **wire_change(drill_change())})
    assert (status, body) == (202, {"status": "success", "message": "Change event processed"})
    status, body = _post(receiver, "/v2/change/enqueue", {"routing_key": key, "payload": {"source": "x"}})
    assert status == 400 and any("'payload.summary'" in e for e in body["errors"])
    status, body = _post(receiver, "/v2/change/enqueue", {"routing_key": "not-ours", "payload": {"summary": "s"}})
    assert status == 400 and body["errors"] == ["Invalid routing key"]
    assert [c["summary"] for c in receiver.store.changes()] == [drill_change()["payload"]["summary"]]
    assert receiver.store.incidents() == []
    assert receiver.stats()["by_status"] == {"202": 1, "400": 2}  # change requests are counted as the Events API's


@pytest.mark.slow
def test_the_pager_delivers_change_events_in_order_with_pages(receiver: Receiver, tmp_path: Path) -> None:
    with Pager(tmp_path / "q" / "pager.db", receiver.routing_key(), url=receiver.url, ca_file=receiver.ca_file) as pager:
        pager.enqueue(drill_change())
        pager.enqueue(events.trigger("unexpected: node3 down", "node3", dedup_key="node3/down"))
        pager.enqueue(events.change("drill first-aid ended: passed", "iotex-ops", custom_details={"run_id": "r1"}))
        assert pager.flush(15.0)
        assert pager.stats()["dead"] == 0
    changes = receiver.store.changes()
    assert [c["summary"] for c in changes] == [drill_change()["payload"]["summary"], "drill first-aid ended: passed"]
    assert [i["dedup_key"] for i in receiver.store.incidents()] == ["node3/down"]  # only the unexpected alert pages
    assert all("routing_key" not in c["event"] for c in changes)
