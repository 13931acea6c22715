"""PagerDuty Events API v2 events: builders and the contract's validation (pure: no I/O).

The contract is ../shared/reference/pagerduty-events-v2.openapi.json (POST /v2/enqueue, and POST
/v2/change/enqueue for change events: `change` and `validate_change`) plus the limits
real PagerDuty enforces with a 400 ("'summary' is too long (maximum is 1024 characters)"). `validate` is
shared by the lab receiver (to answer 400 as PagerDuty does) and by the Pager (to refuse a bad event at
enqueue time, where the caller can still see the error, instead of dead-lettering it minutes later).

Events built here carry no routing key: the Pager adds it, from memory, only when it sends. A change event
is queued as `{"event_action": "change", "payload": ..., "links": ...}`: `event_action` marks it in the
Pager's queue and is not sent (the client posts the rest to /v2/change/enqueue); `validate_queued` checks
either kind.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from iotex_ops.paging.errors import InvalidEvent

ACTIONS = ("trigger", "acknowledge", "resolve")
CHANGE = "change"  # the queue's mark of a change event (never sent as such)
SEVERITIES = ("critical", "warning", "error", "info")
# The statuses of an incident (the lab's receiver keeps them as PagerDuty does).
STATUSES = ("triggered", "acknowledged", "resolved")
# PagerDuty's documented maximums; longer values are refused with a 400, so a page would be lost.
MAX_SUMMARY_CHARS = 1024
MAX_DEDUP_KEY_CHARS = 255
# PagerDuty refuses events larger than 512 KB.
MAX_EVENT_BYTES = 512 * 1024

_PAYLOAD_STRINGS = ("component", "group", "class")
_ELLIPSIS = "\u2026"

Event = dict[str, Any]


def now_iso() -> str:
    """The current UTC time as the RFC 3339 text PagerDuty accepts for `payload.timestamp`."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _truncate(text: str, limit: int) -> str:
    # a truncated summary still pages a person; an overlong one is refused and pages nobody
    return text if len(text) <= limit else text[: limit - 1] + _ELLIPSIS


def trigger(
    summary: str,
    source: str,
    *,
    severity: str = "critical",
    dedup_key: str | None = None,
    component: str | None = None,
    group: str | None = None,
    event_class: str | None = None,
    custom_details: Mapping[str, Any] | None = None,
    runbook_url: str | None = None,
    prometheus_url: str | None = None,
    links: Iterable[Mapping[str, str]] = (),
    images: Iterable[Mapping[str, str]] = (),
    client: str | None = None,
    client_url: str | None = None,
    timestamp: str | datetime | None = None,
) -> Event:
    """A trigger event. Without `dedup_key` one is generated here (not by the receiver), so that the caller
    knows the key it will acknowledge and resolve with even though delivery is asynchronous.

    The summary is cut to 1024 characters (PagerDuty refuses longer ones); anything else that breaks the
    contract raises InvalidEvent naming every bad field.
    """
    payload: dict[str, Any] = {
        "summary": _truncate(summary, MAX_SUMMARY_CHARS) if isinstance(summary, str) else summary,
        "source": source,
        "severity": severity,
        "timestamp": timestamp.isoformat() if isinstance(timestamp, datetime) else (timestamp or now_iso()),
    }
    for name, value in (("component", component), ("group", group), ("class", event_class)):
        if value is not None:
            payload[name] = value
    if custom_details is not None:
        payload["custom_details"] = dict(custom_details)
    all_links: list[dict[str, str]] = []
    if runbook_url:
        all_links.append({"href": runbook_url, "text": "Runbook"})
    if prometheus_url:
        all_links.append({"href": prometheus_url, "text": "Prometheus"})
    all_links.extend(dict(link) for link in links)
    event: Event = {
        "event_action": "trigger",
        "dedup_key": dedup_key if dedup_key is not None else uuid.uuid4().hex,
        "payload": payload,
    }
    if all_links:
        event["links"] = all_links
    image_list = [dict(image) for image in images]
    if image_list:
        event["images"] = image_list
    if client is not None:
        event["client"] = client
    if client_url is not None:
        event["client_url"] = client_url
    _check(event)
    return event


def acknowledge(dedup_key: str) -> Event:
    """An acknowledge event: the incident with this key stops escalating (a person or a runbook is on it)."""
    event: Event = {"event_action": "acknowledge", "dedup_key": dedup_key}
    _check(event)
    return event


def resolve(dedup_key: str) -> Event:
    """A resolve event: the incident with this key is closed; a later trigger with the key opens a new one."""
    event: Event = {"event_action": "resolve", "dedup_key": dedup_key}
    _check(event)
    return event


def change(
    summary: str,
    source: str | None = None,
    *,
    custom_details: Mapping[str, Any] | None = None,
    links: Iterable[Mapping[str, str]] = (),
    images: Iterable[Mapping[str, str]] = (),
    timestamp: str | datetime | None = None,
) -> Event:
    """A change event (a drill began or ended, a release rolled out): shown beside incidents, pages nobody.
    Queued with `event_action: "change"` (see the module's doc); the summary is cut to 1024 characters."""
    payload: dict[str, Any] = {
        "summary": _truncate(summary, MAX_SUMMARY_CHARS) if isinstance(summary, str) else summary,
        "timestamp": timestamp.isoformat() if isinstance(timestamp, datetime) else (timestamp or now_iso()),
    }
    if source is not None:
        payload["source"] = source
    if custom_details is not None:
        payload["custom_details"] = dict(custom_details)
    event: Event = {"event_action": CHANGE, "payload": payload}
    link_list = [dict(link) for link in links]
    if link_list:
        event["links"] = link_list
    image_list = [dict(image) for image in images]
    if image_list:
        event["images"] = image_list
    _check(event)
    return event


def wire_change(event: Mapping[str, Any]) -> Event:
    """The body of a queued change event as /v2/change/enqueue takes it (without the queue's mark)."""
    return {k: v for k, v in event.items() if k != "event_action"}


def validate_queued(doc: object) -> list[str]:
    """What `validate` or `validate_change` says of an event in the Pager's queue (no routing key)."""
    if isinstance(doc, dict) and doc.get("event_action") == CHANGE:
        return validate_change(wire_change(doc), require_routing_key=False)
    return validate(doc, require_routing_key=False)


def validate_change(doc: object, *, require_routing_key: bool = True) -> list[str]:
    """Every way `doc` breaks the Change Events contract (POST /v2/change/enqueue: `payload` with a `summary`,
    optional `source`, `timestamp`, `custom_details`; `links`, `images`), one message per problem."""
    if not isinstance(doc, dict):
        return ["Event object format is unrecognized: the body must be a JSON object"]
    errors: list[str] = []
    _check_routing_key(doc, require_routing_key, errors)
    payload = doc.get("payload")
    if payload is None:
        errors.append("'payload' is missing")
    elif not isinstance(payload, dict):
        errors.append("'payload' must be an object")
    else:
        summary = payload.get("summary")
        if _blank(summary):
            errors.append("'payload.summary' is missing or blank")
        elif isinstance(summary, str) and len(summary) > MAX_SUMMARY_CHARS:
            errors.append(f"'payload.summary' is too long (maximum is {MAX_SUMMARY_CHARS} characters)")
        if "source" in payload and not isinstance(payload["source"], str):
            errors.append("'payload.source' must be a string")
        _check_timestamp_and_details(payload, errors)
    _check_links_images_size(doc, errors)
    return errors


def _check(event: Event) -> None:
    errors = validate_queued(event)
    if errors:
        raise InvalidEvent(errors)


def _blank(value: object) -> bool:
    return not isinstance(value, str) or not value.strip()


def _is_datetime(text: str) -> bool:
    if len(text) < 16 or text[10] not in "Tt ":
        return False  # a date alone is not a date-time
    try:
        datetime.fromisoformat(text[:-1] + "+00:00" if text[-1] in "zZ" else text)
    except ValueError:
        return False
    return True


def _check_routing_key(doc: Mapping[str, Any], required: bool, errors: list[str]) -> None:
    if required and _blank(doc.get("routing_key")):
        errors.append("'routing_key' is missing or blank")
    elif "routing_key" in doc and not isinstance(doc["routing_key"], str):
        errors.append("'routing_key' must be a string")


def _check_timestamp_and_details(payload: Mapping[str, Any], errors: list[str]) -> None:
    timestamp = payload.get("timestamp")
    if timestamp is not None and not (isinstance(timestamp, str) and _is_datetime(timestamp)):
        errors.append("'payload.timestamp' is not a valid date-time (ISO 8601, e.g. 2015-07-17T08:42:58.315+0000)")
    if "custom_details" in payload and not isinstance(payload["custom_details"], dict):
        errors.append("'payload.custom_details' must be an object")


def _check_links_images_size(doc: Mapping[str, Any], errors: list[str]) -> None:
    """`links`, `images`, then (when nothing else is wrong) the whole event's size."""
    _check_refs(doc, "links", "href", ("text",), errors)
    _check_refs(doc, "images", "src", ("href", "alt"), errors)
    if not errors:
        try:
            size = len(json.dumps(doc).encode())
        except (TypeError, ValueError):
            errors.append("event is not JSON-serializable")
        else:
            if size > MAX_EVENT_BYTES:
                errors.append(f"event is too large ({size} bytes; maximum is {MAX_EVENT_BYTES})")


def _check_refs(doc: Mapping[str, Any], name: str, required: str, optional: tuple[str, ...], errors: list[str]) -> None:
    items = doc.get(name)
    if items is None:
        return
    if not isinstance(items, list):
        errors.append(f"'{name}' must be an array")
        return
    for i, item in enumerate(items):
        where = f"{name}[{i}]"
        if not isinstance(item, dict):
            errors.append(f"'{where}' must be an object")
            continue
        if _blank(item.get(required)):
            errors.append(f"'{where}.{required}' is missing or blank")
        for field in optional:
            if field in item and not isinstance(item[field], str):
                errors.append(f"'{where}.{field}' must be a string")


def validate(doc: object, *, require_routing_key: bool = True) -> list[str]:
    """Every way `doc` breaks the Events API v2 contract, one message per problem, each naming its field.

    An empty list means PagerDuty would accept it. The routing key's value never appears in a message.
    """
    if not isinstance(doc, dict):
        return ["Event object format is unrecognized: the body must be a JSON object"]
    errors: list[str] = []
    _check_routing_key(doc, require_routing_key, errors)

    action = doc.get("event_action")
    if action is None:
        errors.append("'event_action' is missing")
    elif action not in ACTIONS:
        errors.append(f"'event_action' is invalid: {action!r} (must be one of {', '.join(ACTIONS)})")

    dedup_key = doc.get("dedup_key")
    if dedup_key is not None:
        if not isinstance(dedup_key, str) or not dedup_key.strip():
            errors.append("'dedup_key' must be a non-blank string")
        elif len(dedup_key) > MAX_DEDUP_KEY_CHARS:
            errors.append(f"'dedup_key' is too long (maximum is {MAX_DEDUP_KEY_CHARS} characters)")
    elif action in ("acknowledge", "resolve"):
        errors.append(f"'dedup_key' is required for event_action '{action}'")

    payload = doc.get("payload")
    if action == "trigger" and payload is None:
        errors.append("'payload' is missing (required for event_action 'trigger')")
    elif payload is not None and not isinstance(payload, dict):
        errors.append("'payload' must be an object")
    elif isinstance(payload, dict):
        # the payload's own required fields matter only where a payload is used: on triggers
        if action == "trigger":
            for field in ("summary", "source"):
                if _blank(payload.get(field)):
                    errors.append(f"'payload.{field}' is missing or blank")
            if "severity" not in payload:
                errors.append("'payload.severity' is missing")
        summary = payload.get("summary")
        if isinstance(summary, str) and len(summary) > MAX_SUMMARY_CHARS:
            errors.append(f"'payload.summary' is too long (maximum is {MAX_SUMMARY_CHARS} characters)")
        severity = payload.get("severity")
        if severity is not None and severity not in SEVERITIES:
            errors.append(f"'payload.severity' is invalid: {severity!r} (must be one of {', '.join(SEVERITIES)})")
        _check_timestamp_and_details(payload, errors)
        for field in _PAYLOAD_STRINGS:
            if field in payload and not isinstance(payload[field], str):
                errors.append(f"'payload.{field}' must be a string")

    for field in ("client", "client_url"):
        if field in doc and not isinstance(doc[field], str):
            errors.append(f"'{field}' must be a string")
    _check_links_images_size(doc, errors)
    return errors
