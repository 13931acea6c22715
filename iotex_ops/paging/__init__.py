"""Paging: PagerDuty Events API v2 events, a durable ordered Pager, and the lab's HTTPS receiver.

    from iotex_ops.paging import Pager, RoutingKey, events
    pager = Pager(db, RoutingKey.from_file(path), url, ca_file=...)
    pager.enqueue(events.trigger("node d1 stopped finalizing", "d1", dedup_key="d1/finality"))

See docs/paging.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from iotex_ops import lazy

if TYPE_CHECKING:
    from iotex_ops.paging import events
    from iotex_ops.paging.client import DEFAULT_URL, Outcome, deliver, make_client
    from iotex_ops.paging.errors import DeliveryError, InvalidEvent, PagingError, ReceiverError, RoutingKeyError
    from iotex_ops.paging.events import validate
    from iotex_ops.paging.pager import Pager
    from iotex_ops.paging.receiver import LabClient, Receiver, ReceiverStore, find, read_state
    from iotex_ops.paging.secret import RoutingKey
    from iotex_ops.paging.tls import LabCA

# Each name is imported when first used (PEP 562), so that a module of the package (events, errors, secret)
# and the command line's `pager` group come without the PagerDuty client (httpx) and the lab CA (cryptography).
_WHERE = {
    "DEFAULT_URL": "client",
    "Outcome": "client",
    "deliver": "client",
    "make_client": "client",
    "DeliveryError": "errors",
    "InvalidEvent": "errors",
    "PagingError": "errors",
    "ReceiverError": "errors",
    "RoutingKeyError": "errors",
    "validate": "events",
    "Pager": "pager",
    "LabClient": "receiver",
    "Receiver": "receiver",
    "ReceiverStore": "receiver",
    "find": "receiver",
    "read_state": "receiver",
    "RoutingKey": "secret",
    "LabCA": "tls",
}


__getattr__ = lazy.exports(__name__, _WHERE)


__all__ = [
    "DEFAULT_URL",
    "DeliveryError",
    "InvalidEvent",
    "LabCA",
    "LabClient",
    "Outcome",
    "Pager",
    "PagingError",
    "Receiver",
    "ReceiverError",
    "ReceiverStore",
    "RoutingKey",
    "RoutingKeyError",
    "deliver",
    "events",
    "find",
    "make_client",
    "read_state",
    "validate",
]
