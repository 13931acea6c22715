"""One delivery attempt through the `pagerduty` client, classified as the Events API v2 contract says.

`pagerduty.EventsApiV2Client` retries inside `request()`: on a 429 with no `retry[429]` entry it sleeps and
tries again without end, and it retries network errors `max_network_attempts` times with sleeps. A
thread stuck there would hold every later page behind it, so the client made here makes exactly ONE
request per call (tests/ops/test_paging.py counts the receiver's requests to check it) and the Pager's
queue owns retries, backoff and the bound.
"""

from __future__ import annotations

import email.utils
import ipaddress
import json
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pagerduty

from iotex_ops.paging.errors import PagingError
from iotex_ops.paging.events import CHANGE
from iotex_ops.paging.secret import MASK, RoutingKey
from iotex_ops.paging.tls import client_ssl_context

DEFAULT_URL = "https://events.pagerduty.com/v2/enqueue"
ENQUEUE_PATH = "/v2/enqueue"  # where EventsApiV2Client.send_event posts (send_change_event: /v2/change/enqueue)
DEFAULT_TIMEOUT_S = 10.0

# With one attempt per call the library logs every 429/5xx at ERROR as "exceeded maximum number of attempts
# (-1)", which misleads whoever reads it; the Pager logs each outcome itself with the receiver's message.
# Lower this logger's level to see the library's own lines.
_library_log = logging.getLogger(__name__ + ".library")
_library_log.setLevel(logging.CRITICAL)


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to. `kind`: "accepted" (2xx), "rejected" (400 and other 4xx: never retried),
    or "retry" (429, 408, 5xx, network or TLS error)."""

    kind: str
    status: int | None  # None for a network or TLS error
    message: str
    dedup_key: str | None = None
    retry_after_s: float | None = None

    @property
    def accepted(self) -> bool:
        return self.kind == "accepted"


def _base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise PagingError(f"Events API URL must be https://HOST[:PORT]{ENQUEUE_PATH}, not {url!r}")
    if parts.path.rstrip("/") != ENQUEUE_PATH or parts.query or parts.fragment:
        raise PagingError(f"Events API URL must end with {ENQUEUE_PATH}: {url!r}")
    return f"https://{parts.netloc}"


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_client(
    routing_key: RoutingKey, url: str = DEFAULT_URL, ca_file: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
) -> pagerduty.EventsApiV2Client:
    """An EventsApiV2Client that makes one request per call and trusts `ca_file` (else the system's CAs)."""
    base = _base_url(url)
    verify: Any = client_ssl_context(ca_file) if ca_file is not None else True
    # proxies from the environment must not capture the lab's loopback receiver
    client = pagerduty.EventsApiV2Client(routing_key.reveal(), base_url=base, verify=verify, trust_env=not _is_loopback(url))
    # A nonzero retry entry for 429 turns off the library's endless 429 loop; max_http_attempts = -1 makes
    # its "sum(attempts) > max_http_attempts" check true at the first failure, so no status is retried.
    client.retry = {429: 1, 408: 1, 500: 1, 502: 1, 503: 1, 504: 1}
    client.max_http_attempts = -1
    client.max_network_attempts = 0  # the first network error raises
    client.sleep_timer = 0.01  # should a future version retry anyway, it does so quickly
    client.log = _library_log
    client.timeout = timeout_s  # type: ignore[assignment] # typed int upstream; httpx takes seconds as float
    return client


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _describe(response: Any) -> str:
    """The receiver's own words (status, message, errors), short; never the request body."""
    try:
        body = response.json()
    except (ValueError, json.JSONDecodeError):
        text = (response.text or "").strip()
        return text[:300]
    if not isinstance(body, dict):
        return str(body)[:300]
    words = [str(body.get(k)) for k in ("status", "message") if body.get(k)]
    errors = body.get("errors")
    if isinstance(errors, list) and errors:
        words.append("errors: " + "; ".join(str(e) for e in errors))
    return ": ".join(words)[:1000]


def redact(text: str, routing_key: RoutingKey) -> str:
    """`text` with the routing key masked, for anything a server said that we log or store."""
    return text.replace(routing_key.reveal(), MASK)


def deliver(client: pagerduty.EventsApiV2Client, event: dict[str, Any]) -> Outcome:
    """Send `event` (without routing key: the client adds it) once and classify the answer."""
    props = {k: v for k, v in event.items() if k not in ("event_action", "dedup_key")}
    change = event.get("event_action") == CHANGE
    try:
        if change:  # POST /v2/change/enqueue: the same answers and errors, and no dedup_key
            client.send_change_event(payload=props.get("payload"), links=props.get("links"), images=props.get("images"))
            return Outcome("accepted", 202, "Change event processed")
        dedup_key = client.send_event(event["event_action"], dedup_key=event.get("dedup_key"), **props)
    except pagerduty.HttpError as exc:
        response: Any = exc.response
        status = response.status_code
        message = f"HTTP {status}: {_describe(response)}"
        if 200 <= status < 300:
            # accepted, but the body has no dedup_key: the event is in; say so and move on
            return Outcome("accepted", status, f"accepted with an unexpected body: {_describe(response)}")
        if status in (408, 429) or status >= 500:
            return Outcome("retry", status, message, retry_after_s=_retry_after(response.headers.get("Retry-After")))
        return Outcome("rejected", status, message)
    except (ValueError, TypeError) as exc:  # the library refusing the event's shape before sending it
        return Outcome("rejected", None, f"refused by the client library: {exc}")
    except pagerduty.Error as exc:
        cause = exc.__cause__
        reason = f"{type(cause).__name__}: {cause}" if cause is not None else "network error"
        return Outcome("retry", None, f"network error: {reason}"[:500])
    return Outcome("accepted", 202, "Event processed", dedup_key=dedup_key)
