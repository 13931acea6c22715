"""Paging: PagerDuty Events API v2 events, a durable ordered Pager, and the lab's HTTPS receiver.

    from iotex_ops.paging import Pager, RoutingKey, events
    pager = Pager(db, RoutingKey.from_file(path), url, ca_file=...)
    pager.enqueue(events.trigger("node d1 stopped finalizing", "d1", dedup_key="d1/finality"))

See docs/paging.md.
"""

from __future__ import annotations

from iotex_ops.paging import events
from iotex_ops.paging.client import DEFAULT_URL, Outcome, deliver, make_client
from iotex_ops.paging.errors import DeliveryError, InvalidEvent, PagingError, ReceiverError, RoutingKeyError
from iotex_ops.paging.events import validate
from iotex_ops.paging.pager import Pager
from iotex_ops.paging.receiver import LabClient, Receiver, ReceiverStore, find, read_state
from iotex_ops.paging.secret import RoutingKey
from iotex_ops.paging.tls import LabCA

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
